// Load-test runs: the `run.json` (version 1) written by load-test (see load-test/README.md), read defensively:
// a file from elsewhere must not break the page.

export interface Latency {
  count: number;
  p50_ms: number | null;
  p99_ms: number | null;
}

export interface Step {
  offered_rate: number;
  achieved_rate: number;
  latency: Record<string, Latency>;
  /** CPU µs per completed operation, by component (the load tester's under `load-test`). */
  cost: Record<string, number>;
  /** Errors by their code. */
  errors: Record<string, number>;
}

/** The component name of the load tester, whose cost is not the bank's. */
export const LOAD_TESTER = 'load-test';

/** The bank's CPU µs per operation in a step: every component's but the load tester's; null without figures. */
export function bankCost(step: Step): number | null {
  const parts = Object.entries(step.cost).filter(([c]) => c !== LOAD_TESTER);
  return parts.length === 0 ? null : parts.reduce((sum, [, v]) => sum + v, 0);
}

export interface Sample {
  t: number;
  cpu_percent: number;
  rss_mib: number;
}

export interface Run {
  id: string;
  mode: string;
  startedAt: string;
  sloKind: string;
  sloP99Ms: number | null;
  maxSustainableRate: number | null;
  summary: string;
  steps: Step[];
  resources: Record<string, Sample[]>;
  /** Paths of the run's SVG graphs on the gateway (runs listed by `loadTestRuns`). */
  graphs: string[];
  /** Listed by the gateway (true) or opened from a file. */
  fromServer: boolean;
}

type Json = Record<string, unknown>;

const obj = (v: unknown): Json => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const str = (v: unknown, fallback = ''): string => (typeof v === 'string' ? v : fallback);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** Parses a run.json text; throws an Error with a readable message when it is not one. */
export function parseRun(text: string, fallbackId: string): Run {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error('not JSON');
  }
  const r = obj(raw);
  if (r.version !== 1) throw new Error(`unsupported run.json version ${String(r.version ?? 'none')}`);
  const config = obj(r.config);
  const steps: Step[] = arr(r.steps).map((s) => {
    const step = obj(s);
    const latency: Record<string, Latency> = {};
    for (const [kind, l] of Object.entries(obj(step.latency))) {
      const o = obj(l);
      latency[kind] = { count: num(o.count) ?? 0, p50_ms: num(o.p50_ms), p99_ms: num(o.p99_ms) };
    }
    const cost: Record<string, number> = {};
    for (const [component, c] of Object.entries(obj(step.cost))) {
      const us = num(obj(c).cpu_us_per_op);
      if (us !== null) cost[component] = us;
    }
    const errors: Record<string, number> = {};
    for (const [kind, n] of Object.entries(obj(step.errors_by_kind))) {
      const count = num(n);
      if (count !== null) errors[kind] = count;
    }
    return { offered_rate: num(step.offered_rate) ?? 0, achieved_rate: num(step.achieved_rate) ?? 0, latency, cost, errors };
  });
  const resources: Record<string, Sample[]> = {};
  for (const [name, samples] of Object.entries(obj(r.resources))) {
    resources[name] = arr(samples).map((s) => {
      const o = obj(s);
      return { t: num(o.t) ?? 0, cpu_percent: num(o.cpu_percent) ?? 0, rss_mib: num(o.rss_mib) ?? 0 };
    });
  }
  return {
    id: str(r.id, fallbackId),
    mode: str(r.mode, 'run'),
    startedAt: str(r.started_at),
    sloKind: str(config.slo_kind, 'event'),
    sloP99Ms: num(config.slo_p99_ms),
    maxSustainableRate: num(r.max_sustainable_rate),
    summary: str(r.summary),
    steps: steps.sort((a, b) => a.offered_rate - b.offered_rate),
    resources,
    graphs: [],
    fromServer: false,
  };
}

/** A run as `loadTestRuns` lists it: its steps carry p50/p99 of the SLO's latency kind. */
export interface ServerRun {
  id: string;
  mode: string;
  startedAt: string;
  summary: string;
  maxSustainableRate?: number | null;
  sloP99Ms?: number | null;
  sloKind: string;
  graphs: string[];
  steps: {
    offeredRate: number;
    achievedRate: number;
    count: number;
    p50Ms?: number | null;
    p99Ms?: number | null;
    errorsByKind?: { kind: string; count: number }[];
    cost?: { component: string; cpuUsPerOp?: number | null }[];
  }[];
}

export function fromServer(r: ServerRun): Run {
  return {
    id: r.id,
    mode: r.mode,
    startedAt: r.startedAt,
    sloKind: r.sloKind,
    sloP99Ms: r.sloP99Ms ?? null,
    maxSustainableRate: r.maxSustainableRate ?? null,
    summary: r.summary,
    steps: r.steps
      .map((s) => ({
        offered_rate: s.offeredRate,
        achieved_rate: s.achievedRate,
        latency: { [r.sloKind]: { count: s.count, p50_ms: s.p50Ms ?? null, p99_ms: s.p99Ms ?? null } },
        cost: Object.fromEntries(
          (s.cost ?? []).flatMap((c) => (typeof c.cpuUsPerOp === 'number' ? [[c.component, c.cpuUsPerOp]] : [])),
        ),
        errors: Object.fromEntries((s.errorsByKind ?? []).map((e) => [e.kind, e.count])),
      }))
      .sort((a, b) => a.offered_rate - b.offered_rate),
    resources: {},
    graphs: r.graphs,
    fromServer: true,
  };
}
