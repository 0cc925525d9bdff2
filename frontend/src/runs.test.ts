import { describe, expect, it } from 'vitest';
import { bankCost, fromServer, parseRun } from './runs';

describe('parseRun', () => {
  it('reads the steps, latencies and resources of a run.json', () => {
    const run = parseRun(
      JSON.stringify({
        version: 1,
        id: 'r1',
        mode: 'run',
        config: { slo_kind: 'event', slo_p99_ms: 100 },
        max_sustainable_rate: 500,
        steps: [
          {
            offered_rate: 500,
            achieved_rate: 499.5,
            latency: { event: { count: 10, p50_ms: 4, p99_ms: 9 } },
            cost: { postgres: { cpu_us_per_op: 700 }, kafka: { cpu_us_per_op: 500 }, 'load-test': { cpu_us_per_op: 300 }, odd: {} },
            errors_by_kind: { OVERLOADED: 12, transport: 'x' },
          },
          { offered_rate: 100, achieved_rate: 100, latency: { event: { count: 10, p50_ms: 2, p99_ms: 5 } } },
        ],
        resources: { postgres: [{ t: 1, cpu_percent: 12.5, rss_mib: 40 }] },
      }),
      'fallback',
    );
    expect(run.id).toBe('r1');
    expect(run.steps.map((s) => s.offered_rate)).toEqual([100, 500]);
    expect(run.steps[1]?.latency.event?.p99_ms).toBe(9);
    expect(run.resources.postgres).toEqual([{ t: 1, cpu_percent: 12.5, rss_mib: 40 }]);
    expect(run.maxSustainableRate).toBe(500);
    expect(run.steps[1]?.cost).toEqual({ postgres: 700, kafka: 500, 'load-test': 300 });
    expect(run.steps[1]?.errors).toEqual({ OVERLOADED: 12 });
    const [low, high] = run.steps;
    expect(high && bankCost(high)).toBe(1200);
    expect(low && bankCost(low)).toBeNull();
  });

  it('reads a run the gateway lists, with its cost and errors', () => {
    const run = fromServer({
      id: 's',
      mode: 'run',
      startedAt: '',
      summary: '',
      sloKind: 'event',
      graphs: [],
      steps: [
        {
          offeredRate: 250,
          achievedRate: 249,
          count: 10,
          p99Ms: 12,
          errorsByKind: [{ kind: 'UNAVAILABLE', count: 2 }],
          cost: [{ component: 'postgres', cpuUsPerOp: 640 }, { component: 'kafka', cpuUsPerOp: null }],
        },
      ],
    });
    expect(run.steps[0]?.cost).toEqual({ postgres: 640 });
    expect(run.steps[0]?.errors).toEqual({ UNAVAILABLE: 2 });
    expect(run.steps[0]?.latency.event?.p99_ms).toBe(12);
  });

  it('refuses what is not a version 1 run and tolerates missing fields', () => {
    expect(() => parseRun('nope', 'x')).toThrow('not JSON');
    expect(() => parseRun('{"version": 2}', 'x')).toThrow(/version 2/);
    const run = parseRun('{"version": 1, "steps": [{"latency": {"event": {"p50_ms": "fast"}}}], "resources": []}', 'x');
    expect(run.id).toBe('x');
    expect(run.steps[0]?.latency.event?.p50_ms).toBeNull();
    expect(run.resources).toEqual({});
  });
});
