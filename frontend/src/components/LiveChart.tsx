import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface LiveSeries {
  label: string;
  color: string;
  dash?: number[];
}

interface Props {
  title: string;
  yLabel: string;
  /** Unix seconds of each point. */
  x: number[];
  series: LiveSeries[];
  /** One array per series, aligned with `x`; null where there is no value. */
  values: (number | null)[][];
}

/** A scrolling time chart (uPlot): made once, fed new data every update, follows its box's width. */
export function LiveChart({ title, yLabel, x, series, values }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const labels = series.map((s) => `${s.label}|${s.color}|${s.dash?.join(',') ?? ''}`).join(';');

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = () => Math.max(el.clientWidth, 260);
    const p = new uPlot(
      {
        width: width(),
        height: 220,
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        axes: [
          { stroke: '#5a6b7d', grid: { stroke: '#eef2f6' } },
          { label: yLabel, stroke: '#5a6b7d', grid: { stroke: '#eef2f6' }, size: 60 },
        ],
        series: [
          { label: 'time' },
          ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, dash: s.dash, spanGaps: false })),
        ],
      },
      [[], ...series.map(() => [])] as uPlot.AlignedData,
      el,
    );
    plot.current = p;
    const resize = new ResizeObserver(() => p.setSize({ width: width(), height: 220 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      p.destroy();
      plot.current = null;
    };
    // The chart is remade only when its series change; new points go through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [labels, yLabel]);

  useEffect(() => {
    plot.current?.setData([x, ...values] as uPlot.AlignedData);
  }, [x, values, labels]);

  return (
    <figure className="chart card" aria-label={title}>
      <figcaption>
        <h3>{title}</h3>
      </figcaption>
      <div ref={box} role="img" aria-label={`${title}: ${series.map((s) => s.label).join(', ')}`} data-points={x.length} />
    </figure>
  );
}
