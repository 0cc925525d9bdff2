import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface ChartSeries {
  label: string;
  values: (number | null)[];
  color: string;
  dash?: number[];
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
}

/** A line chart (uPlot) that follows its box's width. */
export function Chart({ title, xLabel, yLabel, x, series, logX, logY, points = true }: Props) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = () => Math.max(el.clientWidth, 260);
    const plot = new uPlot(
      {
        width: width(),
        height: 260,
        scales: { x: { time: false, distr: logX ? 3 : 1 }, y: { distr: logY ? 3 : 1 } },
        axes: [
          { label: xLabel, stroke: '#5a6b7d', grid: { stroke: '#eef2f6' } },
          { label: yLabel, stroke: '#5a6b7d', grid: { stroke: '#eef2f6' }, size: 60 },
        ],
        series: [
          { label: xLabel },
          ...series.map((s) => ({
            label: s.label,
            stroke: s.color,
            width: 2,
            dash: s.dash,
            spanGaps: true,
            points: { show: points, size: 6 },
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
  }, [title, xLabel, yLabel, x, series, logX, logY, points]);
  return (
    <figure className="chart card" aria-label={title}>
      <figcaption>
        <h3>{title}</h3>
      </figcaption>
      <div ref={box} role="img" aria-label={`${title}: ${series.map((s) => s.label).join(', ')}`} />
    </figure>
  );
}
