import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface ChartSeries {
  label: string;
  values: (number | null)[];
  color: string;
  dash?: number[];
  /** What the legend shows at the cursor instead of the drawn value (a stacked bar's own part). */
  legend?: (number | null)[];
}

interface Props {
  title: string;
  xLabel: string;
  yLabel: string;
  x: number[];
  series: ChartSeries[];
  logX?: boolean;
  logY?: boolean;
  points?: boolean;
  /** Filled bars at x = 0, 1, …, labelled with these names (a stacked bar: series drawn tallest first). */
  bars?: string[];
}

const fmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

/** A line chart (uPlot) that follows its box's width. */
export function Chart({ title, xLabel, yLabel, x, series, logX, logY, points = true, bars }: Props) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = () => Math.max(el.clientWidth, 260);
    const barPaths = bars ? uPlot.paths.bars?.({ size: [0.6, 80] }) : undefined;
    const xAxis: uPlot.Axis = bars
      ? {
          label: xLabel,
          stroke: '#5a6b7d',
          grid: { show: false },
          splits: () => bars.map((_, i) => i),
          values: (_u, splits) => splits.map((i) => bars[i] ?? ''),
        }
      : { label: xLabel, stroke: '#5a6b7d', grid: { stroke: '#eef2f6' } };
    const plot = new uPlot(
      {
        width: width(),
        height: 260,
        scales: {
          x: bars ? { time: false, range: [-0.5, bars.length - 0.5] } : { time: false, distr: logX ? 3 : 1 },
          y: bars ? { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } : { distr: logY ? 3 : 1 },
        },
        axes: [xAxis, { label: yLabel, stroke: '#5a6b7d', grid: { stroke: '#eef2f6' }, size: 60 }],
        series: [
          { label: xLabel, value: bars ? (_u: uPlot, v: number) => bars[v] ?? '' : undefined },
          ...series.map((s) => ({
            label: s.label,
            stroke: s.color,
            fill: barPaths ? s.color : undefined,
            paths: barPaths,
            width: barPaths ? 0 : 2,
            dash: s.dash,
            spanGaps: !barPaths,
            points: { show: points && !barPaths, size: 6 },
            value: s.legend
              ? (_u: uPlot, _v: number, _si: number, i: number | null) => {
                  const v = i === null ? null : s.legend?.[i];
                  return v === null || v === undefined ? '–' : fmt.format(v);
                }
              : undefined,
          })),
        ],
      },
      [x, ...series.map((s) => s.values)] as uPlot.AlignedData,
      el,
    );
    const resize = new ResizeObserver(() => plot.setSize({ width: width(), height: 260 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [title, xLabel, yLabel, x, series, logX, logY, points, bars]);
  return (
    <figure className="chart card" aria-label={title}>
      <figcaption>
        <h3>{title}</h3>
      </figcaption>
      <div ref={box} role="img" aria-label={`${title}: ${series.map((s) => s.label).join(', ')}`} />
    </figure>
  );
}
