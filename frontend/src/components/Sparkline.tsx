import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

/** A small line chart of the last values (uPlot), with no axes. */
export function Sparkline({ values, label }: { values: number[]; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const p = new uPlot(
      {
        width: Math.max(el.clientWidth, 120),
        height: 48,
        legend: { show: false },
        cursor: { show: false },
        scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, Math.max(max, 1)] } },
        axes: [{ show: false }, { show: false }],
        series: [{}, { stroke: '#0e7c66', width: 2, fill: 'rgba(14,124,102,0.12)' }],
      },
      [[], []],
      el,
    );
    plot.current = p;
    const resize = new ResizeObserver(() => p.setSize({ width: Math.max(el.clientWidth, 120), height: 48 }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      p.destroy();
      plot.current = null;
    };
  }, []);

  useEffect(() => {
    plot.current?.setData([values.map((_, i) => i), values]);
  }, [values]);

  return <div className="sparkline" ref={box} role="img" aria-label={label} data-points={values.length} />;
}
