import { useMemo, useState, type ChangeEvent } from 'react';
import { useQuery } from 'urql';
import { graphql } from '../gql';
import { apiError } from '../errors';
import { ErrorView } from '../components/ErrorView';
import { Chart, type ChartSeries } from '../components/Chart';
import { fromServer, parseRun, type Run } from '../runs';

const RunsQuery = graphql(`
  query LoadTestRuns {
    loadTestRuns {
      id mode startedAt summary maxSustainableRate sloP99Ms sloKind graphs
      steps { offeredRate achievedRate count p50Ms p99Ms }
    }
  }
`);

const COLORS = ['#0e7c66', '#0b3d5c', '#c2410c', '#7c3aed', '#b42318', '#0369a1', '#a16207', '#be185d'];

const rate = new Intl.NumberFormat('nl-NL', { maximumFractionDigits: 1 });

/** Union of the runs' offered rates, and each run's value at each (null where it has no step). */
function byRate(runs: Run[], value: (run: Run, i: number) => number | null): { x: number[]; ys: (number | null)[][] } {
  const x = [...new Set(runs.flatMap((r) => r.steps.map((s) => s.offered_rate)))].sort((a, b) => a - b);
  const ys = runs.map((run) =>
    x.map((rateX) => {
      const i = run.steps.findIndex((s) => s.offered_rate === rateX);
      return i < 0 ? null : value(run, i);
    }),
  );
  return { x, ys };
}

function LatencyChart({ runs }: { runs: Run[] }) {
  const { x, series } = useMemo(() => {
    const p50 = byRate(runs, (r, i) => r.steps[i]?.latency[r.sloKind]?.p50_ms ?? null);
    const p99 = byRate(runs, (r, i) => r.steps[i]?.latency[r.sloKind]?.p99_ms ?? null);
    const series: ChartSeries[] = runs.flatMap((r, k) => [
      { label: `${r.id} p50 (${r.sloKind})`, values: p50.ys[k] ?? [], color: COLORS[k % COLORS.length] ?? '#000' },
      { label: `${r.id} p99`, values: p99.ys[k] ?? [], color: COLORS[k % COLORS.length] ?? '#000', dash: [6, 4] },
    ]);
    return { x: p50.x, series };
  }, [runs]);
  return <Chart title="Latency against offered load" xLabel="offered (per s)" yLabel="ms" x={x} series={series} logX logY />;
}

function ThroughputChart({ runs }: { runs: Run[] }) {
  const { x, series } = useMemo(() => {
    const achieved = byRate(runs, (r, i) => r.steps[i]?.achieved_rate ?? null);
    const series: ChartSeries[] = [
      { label: 'ideal', values: achieved.x, color: '#9aa8b5', dash: [3, 3] },
      ...runs.map((r, k) => ({ label: r.id, values: achieved.ys[k] ?? [], color: COLORS[k % COLORS.length] ?? '#000' })),
    ];
    return { x: achieved.x, series };
  }, [runs]);
  return <Chart title="Achieved against offered" xLabel="offered (per s)" yLabel="achieved (per s)" x={x} series={series} />;
}

/** CPU or memory of a run listed by the gateway: its own SVG graph (the query carries no samples). */
function ResourceGraph({ run, what }: { run: Run; what: 'cpu' | 'memory' }) {
  const src = run.graphs.find((g) => g.endsWith(`/${what}.svg`));
  if (!src) return null;
  return (
    <figure className="chart card">
      <figcaption>
        <h3>
          {what === 'cpu' ? 'CPU' : 'Memory'} per component: {run.id}
        </h3>
      </figcaption>
      <img className="graph" src={src} alt={`${what === 'cpu' ? 'CPU' : 'Memory'} per component during run ${run.id}`} />
    </figure>
  );
}

function ResourceChart({ run, what }: { run: Run; what: 'cpu_percent' | 'rss_mib' }) {
  const { x, series } = useMemo(() => {
    const names = Object.keys(run.resources).sort();
    const x = [...new Set(names.flatMap((n) => (run.resources[n] ?? []).map((s) => s.t)))].sort((a, b) => a - b);
    const series: ChartSeries[] = names.map((n, k) => {
      const at = new Map((run.resources[n] ?? []).map((s) => [s.t, s[what]]));
      return { label: n, values: x.map((t) => at.get(t) ?? null), color: COLORS[k % COLORS.length] ?? '#000' };
    });
    return { x, series };
  }, [run, what]);
  return (
    <Chart
      title={`${what === 'cpu_percent' ? 'CPU' : 'Memory'} per component: ${run.id}`}
      xLabel="s since start"
      yLabel={what === 'cpu_percent' ? '% of a core' : 'MiB'}
      x={x}
      series={series}
      points={false}
    />
  );
}

export function ResultsPage() {
  const [listed] = useQuery({ query: RunsQuery });
  const serverRuns = useMemo(() => (listed.data?.loadTestRuns ?? []).map(fromServer), [listed.data]);
  // The newest run is shown until the user picks others.
  const [picked, setPicked] = useState<string[] | null>(null);
  const selected = useMemo(() => picked ?? serverRuns.slice(0, 1).map((r) => r.id), [picked, serverRuns]);
  const [opened, setOpened] = useState<Run[]>([]);
  const [errors, setErrors] = useState<string[]>([]);
  const runs = useMemo(
    () => [...serverRuns.filter((r) => selected.includes(r.id)), ...opened],
    [serverRuns, selected, opened],
  );

  async function open(e: ChangeEvent<HTMLInputElement>) {
    const files = [...(e.target.files ?? [])];
    const loaded: Run[] = [];
    const problems: string[] = [];
    for (const f of files) {
      try {
        loaded.push(parseRun(await f.text(), f.name.replace(/\.json$/, '')));
      } catch (err) {
        problems.push(`${f.name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    setErrors(problems);
    setOpened((rs) => [...rs.filter((r) => !loaded.some((l) => l.id === r.id)), ...loaded]);
  }

  function toggle(id: string, on: boolean) {
    setPicked(on ? [...selected.filter((x) => x !== id), id] : selected.filter((x) => x !== id));
  }

  return (
    <>
      <section className="hero">
        <h1>Load-test results</h1>
        <p>Latency and throughput of the bank under load. Pick runs to compare them in one chart.</p>
      </section>
      <section className="card" aria-labelledby="runs-title">
        <h2 id="runs-title">Runs</h2>
        <ErrorView error={listed.error ? apiError(listed.error) : null} />
        {listed.fetching && !listed.data && <p className="muted">Loading runs…</p>}
        {listed.data && serverRuns.length === 0 && (
          <p className="muted">
            No runs in the gateway's results folder yet: run <code>cargo run --release -p load-test</code>.
          </p>
        )}
        {serverRuns.length > 0 && (
          <div className="table-wrap">
            <table data-testid="runs">
              <thead>
                <tr>
                  <th scope="col">Compare</th>
                  <th scope="col">Run</th>
                  <th scope="col" className="c-type">
                    Mode
                  </th>
                  <th scope="col" className="num">
                    Steps
                  </th>
                  <th scope="col" className="num">
                    Max sustainable (per s)
                  </th>
                </tr>
              </thead>
              <tbody>
                {serverRuns.map((r) => (
                  <tr key={r.id} data-run={r.id}>
                    <td>
                      <input
                        type="checkbox"
                        aria-label={`Compare ${r.id}`}
                        checked={selected.includes(r.id)}
                        onChange={(e) => toggle(r.id, e.target.checked)}
                      />
                    </td>
                    <td className="mono">{r.id}</td>
                    <td className="c-type">{r.mode}</td>
                    <td className="num">{r.steps.length}</td>
                    <td className="num">{r.maxSustainableRate === null ? '–' : rate.format(r.maxSustainableRate)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        <div className="field file-field">
          <label htmlFor="run-files">Or open run.json files (results/&lt;run&gt;/run.json) to add them</label>
          <input id="run-files" type="file" accept=".json,application/json" multiple onChange={open} data-testid="run-files" />
        </div>
        {errors.map((e) => (
          <div key={e} className="alert alert-error" role="alert">
            <span className="code">INVALID_RUN</span> {e}
          </div>
        ))}
        {opened.length > 0 && (
          <ul className="opened" data-testid="opened-runs">
            {opened.map((r) => (
              <li key={r.id}>
                <span className="mono">{r.id}</span> ({r.mode}, {r.steps.length} steps){' '}
                <button type="button" className="small" onClick={() => setOpened((rs) => rs.filter((x) => x !== r))}>
                  Remove
                </button>
              </li>
            ))}
          </ul>
        )}
      </section>
      {runs.length > 0 && (
        <div className="charts" data-testid="charts">
          <LatencyChart runs={runs} />
          <ThroughputChart runs={runs} />
          {runs.map((r) =>
            r.fromServer ? (
              <ResourceGraph key={`${r.id}-cpu`} run={r} what="cpu" />
            ) : (
              <ResourceChart key={`${r.id}-cpu`} run={r} what="cpu_percent" />
            ),
          )}
          {runs.map((r) =>
            r.fromServer ? (
              <ResourceGraph key={`${r.id}-mem`} run={r} what="memory" />
            ) : (
              <ResourceChart key={`${r.id}-mem`} run={r} what="rss_mib" />
            ),
          )}
        </div>
      )}
    </>
  );
}
