/**
 * Done and failed per second with uPlot (small, canvas, built for time series), and the failure rate
 * over a sliding 10 s window on its own axis.
 */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { STATE_COLOURS } from '../ui';

export type Point = { at: number; done: number; failed: number };

const SECONDS = 300;

/**
 * One point per second over the last five minutes up to `now`: the master sends only the seconds in
 * which something finished, and a quiet second is a zero, not a gap.
 */
export function perSecond(points: Point[], now: number): Point[] {
  const end = Math.floor(now / 1000);
  const bySecond = new Map(points.map((p) => [Math.floor(p.at / 1000), p]));
  const out: Point[] = [];
  for (let s = end - SECONDS + 1; s <= end; s++) {
    const p = bySecond.get(s);
    out.push({ at: s * 1000, done: p?.done ?? 0, failed: p?.failed ?? 0 });
  }
  return out;
}

function columns(points: Point[]): uPlot.AlignedData {
  const xs = points.map((p) => p.at / 1000);
  const rate = points.map((_, i) => {
    let d = 0;
    let f = 0;
    for (let j = Math.max(0, i - 9); j <= i; j++) {
      d += points[j].done;
      f += points[j].failed;
    }
    return d + f ? (100 * f) / (d + f) : 0;
  });
  return [xs, points.map((p) => p.done), points.map((p) => p.failed), rate];
}

export function ThroughputChart({ points }: { points: Point[] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = box.current!;
    plot.current = new uPlot(
      {
        width: el.clientWidth || 600,
        height: 200,
        legend: { show: true },
        scales: {
          x: { time: true },
          y: { range: (_u, _min, max) => [0, Math.max(1, max)] },
          pct: { range: [0, 100] },
        },
        axes: [
          {},
          { label: 'tasks/s', size: 50 },
          { scale: 'pct', side: 1, label: 'failure %', grid: { show: false }, size: 50 },
        ],
        series: [
          {},
          { label: 'done/s', stroke: STATE_COLOURS.done, width: 2, fill: 'rgba(34,197,94,0.1)' },
          { label: 'failed/s', stroke: STATE_COLOURS.failed, width: 2 },
          { label: 'failure %', stroke: '#b91c1c', dash: [4, 4], scale: 'pct' },
        ],
      },
      columns(points),
      el,
    );
    const resize = () => plot.current?.setSize({ width: el.clientWidth, height: 200 });
    addEventListener('resize', resize);
    return () => {
      removeEventListener('resize', resize);
      plot.current?.destroy();
    };
  }, []);

  useEffect(() => plot.current?.setData(columns(points)), [points]);

  return <div ref={box} class="chart" data-testid="throughput-chart" />;
}
