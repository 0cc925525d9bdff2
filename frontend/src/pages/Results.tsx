import { useMemo, useState, type ChangeEvent } from 'react';
import { useQuery } from 'urql';
import { graphql } from '../gql';
import { apiError } from '../errors';
import { ErrorView } from '../components/ErrorView';
import { Chart, type ChartSeries } from '../components/Chart';
import { bankCost, fromServer, LOAD_TESTER, parseRun, type Run, type Sample } from '../runs';

const RunsQuery = graphql(`
  query LoadTestRuns {
    loadTestRuns {
      id mode startedAt summary maxSustainableRate sloP99Ms sloKind graphs
      steps {
        offeredRate achievedRate count p50Ms p99Ms
        errorsByKind { kind count }
        cost { component cpuUsPerOp }
      }
    }
  }
`);

const ResourcesQuery = graphql(`
  query LoadTestResources($id: String!) {
    loadTestResources(id: $id) { component samples { t cpuPercent rssMib } }
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

/** CPU and memory of a run listed by the gateway: its samples, fetched when the run is shown. */
function ServerResources({ run }: { run: Run }) {
  const [result] = useQuery({ query: ResourcesQuery, variables: { id: run.id } });
  const withSamples = useMemo(() => {
    const resources: Record<string, Sample[]> = {};
    for (const series of result.data?.loadTestResources ?? []) {
      resources[series.component] = series.samples.map((x) => ({ t: x.t, cpu_percent: x.cpuPercent, rss_mib: x.rssMib }));
    }
    return { ...run, resources };
  }, [run, result.data]);
  if (result.error) return <ErrorView error={apiError(result.error)} />;
  if (Object.keys(withSamples.resources).length === 0) return null;
  return (
    <>
      <ResourceChart run={withSamples} what="cpu_percent" />
      <ResourceChart run={withSamples} what="rss_mib" />
    </>
  );
}

/** Where one run's CPU goes: a stacked bar per offered rate, one colour per component, the load tester on top. */
function CostChart({ run }: { run: Run }) {
  const { bars, series } = useMemo(() => {
    const names = [...new Set(run.steps.flatMap((s) => Object.keys(s.cost)))].sort((a, b) =>
      a === LOAD_TESTER ? 1 : b === LOAD_TESTER ? -1 : a.localeCompare(b),
    );
    // Stacked bottom-up in `names` order, the load tester on top. uPlot draws in order, so the tallest goes
    // first: the series of component k is the sum of components 0..=k, and each later, shorter bar leaves the
    // band of k showing. The legend reads top to bottom like the bars.
    const series: ChartSeries[] = names
      .map((n, k) => ({
        label: n,
        values: run.steps.map((s) => names.slice(0, k + 1).reduce((sum, c) => sum + (s.cost[c] ?? 0), 0)),
        legend: run.steps.map((s) => s.cost[n] ?? null),
        color: COLORS[k % COLORS.length] ?? '#000',
      }))
      .reverse();
    return { bars: run.steps.map((s) => `${rate.format(s.offered_rate)}/s`), series };
  }, [run]);
  if (series.length === 0) return null;
  return (
    <Chart
      title={`CPU per operation by component: ${run.id}`}
      xLabel="offered"
      yLabel="µs per operation"
      x={bars.map((_, i) => i)}
      series={series}
      bars={bars}
    />
  );
}

/** The bank's CPU per operation (the load tester left out) against offered load, one line per run. */
function CostCompareChart({ runs }: { runs: Run[] }) {
  const { x, series } = useMemo(() => {
    const total = byRate(runs, (r, i) => {
      const step = r.steps[i];
      return step ? bankCost(step) : null;
    });
    const series: ChartSeries[] = runs.map((r, k) => ({
      label: r.id,
      values: total.ys[k] ?? [],
      color: COLORS[k % COLORS.length] ?? '#000',
    }));
    return { x: total.x, series };
  }, [runs]);
  if (!series.some((s) => s.values.some((v) => v !== null))) return null;
  return <Chart title="The bank's CPU per operation against offered load" xLabel="offered (per s)" yLabel="µs per operation" x={x} series={series} logX />;
}

/** Each step's errors by code, for runs that had any. */
function ErrorTable({ runs }: { runs: Run[] }) {
  const rows = runs.flatMap((r) =>
    r.steps
      .filter((s) => Object.keys(s.errors).length > 0)
      .map((s) => ({ run: r.id, rate: s.offered_rate, errors: Object.entries(s.errors).sort((a, b) => b[1] - a[1]) })),
  );
  if (rows.length === 0) return null;
  return (
    <section className="card" aria-labelledby="errors-title">
      <h2 id="errors-title">Errors by kind</h2>
      <div className="table-wrap">
        <table data-testid="errors-by-kind">
          <thead>
            <tr>
              <th scope="col">Run</th>
              <th scope="col" className="num">
                Offered (per s)
              </th>
              <th scope="col">Errors</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={`${row.run}-${row.rate}`}>
                <td className="mono">{row.run}</td>
                <td className="num">{rate.format(row.rate)}</td>
                <td>{row.errors.map(([kind, n]) => `${kind} ${n}`).join(', ')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
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

function ResourceCharts({ run }: { run: Run }) {
  return (
    <>
      <ResourceChart run={run} what="cpu_percent" />
      <ResourceChart run={run} what="rss_mib" />
    </>
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
        <p>
          Latency, throughput and cost of the bank under load: where its CPU goes per operation, and how that grows
          with the load. Pick runs to compare them in one chart.
        </p>
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
          <CostCompareChart runs={runs} />
          {runs.map((r) => (
            <CostChart key={`${r.id}-cost`} run={r} />
          ))}
          {runs.map((r) =>
            r.fromServer ? (
              <ServerResources key={`${r.id}-res`} run={r} />
            ) : (
              <ResourceCharts key={`${r.id}-res`} run={r} />
            ),
          )}
        </div>
      )}
      <ErrorTable runs={runs} />
    </>
  );
}
