import { describe, expect, it } from 'vitest';
import { parseRun } from './runs';

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
          { offered_rate: 500, achieved_rate: 499.5, latency: { event: { count: 10, p50_ms: 4, p99_ms: 9 } } },
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
