import { useEffect, useMemo, useState } from 'react';
import { useClient } from 'urql';
import { graphql } from '../gql';
import { apiError, type ApiError } from '../errors';
import type { PipelineQuery } from '../gql/graphql';
import { ErrorView } from '../components/ErrorView';
import { LiveChart, type LiveSeries } from '../components/LiveChart';

const Query = graphql(`
  query Pipeline {
    pipeline {
      takenAtMs
      stages { name recordsPerSecond lag error }
      commandAge { p50Seconds p99Seconds samples }
      balanceChangeDelay { p50Seconds p99Seconds samples }
    }
  }
`);

type View = PipelineQuery['pipeline'];

/** Points kept for the charts: two minutes at one a second. */
const HISTORY = 120;

const STAGES: { name: string; title: string; what: string; color: string }[] = [
  { name: 'heartbeat', title: 'Heartbeat', what: 'beats sent', color: '#8a5cf5' },
  { name: 'generator', title: 'Generator', what: 'commands generated', color: '#d9822b' },
  { name: 'handler', title: 'Handler', what: 'commands applied', color: '#0e7c66' },
  { name: 'projection', title: 'Projection', what: 'events projected', color: '#2b6cb0' },
];

const LAG_STAGES = STAGES.filter((s) => s.name !== 'heartbeat');

const rateFormat = new Intl.NumberFormat('nl-NL', { maximumFractionDigits: 1, minimumFractionDigits: 1 });
const countFormat = new Intl.NumberFormat('nl-NL');

function formatRate(v: number | null | undefined): string {
  return v === null || v === undefined ? '—' : rateFormat.format(v);
}

function formatLag(v: number | null | undefined): string {
  return v === null || v === undefined ? '—' : countFormat.format(v);
}

/** Seconds as milliseconds below 10 s, else seconds. */
function formatDelay(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return '—';
  if (seconds < 10) return `${countFormat.format(Math.round(seconds * 1000))} ms`;
  return `${rateFormat.format(seconds)} s`;
}

interface Point {
  t: number;
  view: View;
}

function usePipeline() {
  const client = useClient();
  const [points, setPoints] = useState<Point[]>([]);
  const [error, setError] = useState<ApiError | null>(null);
  useEffect(() => {
    let stopped = false;
    async function poll() {
      const r = await client.query(Query, {}, { requestPolicy: 'network-only' }).toPromise();
      if (stopped) return;
      if (r.error) return setError(apiError(r.error));
      setError(null);
      if (!r.data) return;
      const view = r.data.pipeline;
      setPoints((p) => {
        const t = view.takenAtMs / 1000;
        // The gateway serves one sample a second to every reader; a repeated sample adds no point.
        if (p.at(-1)?.t === t) return p;
        return [...p, { t, view }].slice(-HISTORY);
      });
    }
    void poll();
    // Twice a second: the gateway samples once a second and a repeated sample adds no point, so every new
    // sample shows within half a second and none is skipped when the two clocks beat against each other.
    const timer = setInterval(() => void poll(), 500);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [client]);
  return { points, error };
}

function stageOf(view: View | undefined, name: string) {
  return view?.stages.find((s) => s.name === name);
}

const ms = (s: number | null | undefined) => (s === null || s === undefined ? null : s * 1000);

export function PipelinePage() {
  const { points, error } = usePipeline();
  const latest = points.at(-1)?.view;

  const charts = useMemo(() => {
    const x = points.map((p) => p.t);
    const rates = STAGES.map((s) => points.map((p) => stageOf(p.view, s.name)?.recordsPerSecond ?? null));
    const lags = LAG_STAGES.map((s) => points.map((p) => stageOf(p.view, s.name)?.lag ?? null));
    const delays = [
      points.map((p) => ms(p.view.commandAge.p50Seconds)),
      points.map((p) => ms(p.view.commandAge.p99Seconds)),
      points.map((p) => ms(p.view.balanceChangeDelay.p50Seconds)),
      points.map((p) => ms(p.view.balanceChangeDelay.p99Seconds)),
    ];
    return { x, rates, lags, delays };
  }, [points]);

  const rateSeries: LiveSeries[] = useMemo(() => STAGES.map((s) => ({ label: s.title, color: s.color })), []);
  const lagSeries: LiveSeries[] = useMemo(() => LAG_STAGES.map((s) => ({ label: s.title, color: s.color })), []);
  const delaySeries: LiveSeries[] = useMemo(
    () => [
      { label: 'Command age p50', color: '#0e7c66' },
      { label: 'Command age p99', color: '#0e7c66', dash: [6, 4] },
      { label: 'Balance change delay p50', color: '#2b6cb0' },
      { label: 'Balance change delay p99', color: '#2b6cb0', dash: [6, 4] },
    ],
    [],
  );

  return (
    <>
      <section className="card" aria-labelledby="pipeline-title">
        <div className="card-head">
          <h1 id="pipeline-title" className="page-title">
            Pipeline
          </h1>
          <span className="muted">updated every second</span>
        </div>
        <p className="muted">
          Heartbeats become commands, the handler applies them to balances, and the gateway projects the results.
          Rates are records per second; lag is what a stage&apos;s consumer group has not read yet.
        </p>
        <ErrorView error={error} />
        <div className="stats" data-testid="pipeline-stages">
          {STAGES.map((s) => {
            const stage = stageOf(latest, s.name);
            return (
              <div
                className="stat"
                key={s.name}
                data-testid={`stage-${s.name}`}
                data-rate={stage?.recordsPerSecond ?? ''}
              >
                <span className="stat-label">
                  {s.title}: {s.what}/s
                </span>
                <span className="stat-value">{formatRate(stage?.recordsPerSecond)}</span>
                <span className="stat-label">
                  {s.name === 'heartbeat' ? 'reads no topic' : <>lag {formatLag(stage?.lag)}</>}
                </span>
                {stage?.error && <span className="hint">{stage.error}</span>}
              </div>
            );
          })}
        </div>
      </section>
      <section className="card" aria-labelledby="delays-title">
        <h2 id="delays-title">Delays</h2>
        <div className="stats" data-testid="pipeline-delays">
          <div className="stat">
            <span className="stat-label">Command age at apply, p50</span>
            <span className="stat-value">{formatDelay(latest?.commandAge.p50Seconds)}</span>
          </div>
          <div className="stat">
            <span className="stat-label">Command age at apply, p99</span>
            <span className="stat-value">{formatDelay(latest?.commandAge.p99Seconds)}</span>
          </div>
          <div className="stat">
            <span className="stat-label">Newest balance changes, p50</span>
            <span className="stat-value">{formatDelay(latest?.balanceChangeDelay.p50Seconds)}</span>
          </div>
          <div className="stat">
            <span className="stat-label">Newest balance changes, p99</span>
            <span className="stat-value">{formatDelay(latest?.balanceChangeDelay.p99Seconds)}</span>
          </div>
        </div>
        <p className="hint">
          Command age: from the command entering Kafka to the commit of the handler&apos;s batch that applied it.
          Balance changes: from the handler publishing the change to this gateway receiving it (the last minute,{' '}
          {countFormat.format(latest?.balanceChangeDelay.samples ?? 0)} changes).
        </p>
      </section>
      <div className="charts">
        <LiveChart title="Records per second" yLabel="records/s" x={charts.x} series={rateSeries} values={charts.rates} />
        <LiveChart title="Consumer lag" yLabel="records" x={charts.x} series={lagSeries} values={charts.lags} />
        <LiveChart title="Delays" yLabel="ms" x={charts.x} series={delaySeries} values={charts.delays} />
      </div>
    </>
  );
}
