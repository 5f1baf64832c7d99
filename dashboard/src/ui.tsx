/** Small shared pieces: state colours and badges, the stacked progress bar, durations and times. */
import type { ComponentChildren } from 'preact';
import { TASK_STATES } from '../../protocol/states';
import type { ViewState } from '../../protocol/views';
import type { Counts } from './types';

export const STATE_COLOURS: Record<ViewState, string> = {
  waiting: '#94a3b8',
  delayed: '#67e8f9',
  ready: '#60a5fa',
  assigned: '#a78bfa',
  running: '#f59e0b',
  done: '#22c55e',
  failed: '#ef4444',
  cancelled: '#64748b',
};

export function StateBadge({ state }: { state: ViewState }) {
  return (
    <span class="badge" data-state={state} style={{ background: STATE_COLOURS[state] }}>
      {state}
    </span>
  );
}

/** One bar, a segment per state, in the states' order. */
export function CountsBar({ counts, total }: { counts: Counts; total?: number }) {
  const sum = total || TASK_STATES.reduce((n, s) => n + (counts[s] ?? 0), 0);
  return (
    <div class="bar" role="progressbar" aria-valuenow={counts.done} aria-valuemax={sum}>
      {sum > 0 &&
        TASK_STATES.map((s) =>
          counts[s] ? (
            <span
              key={s}
              title={`${s}: ${counts[s]}`}
              style={{ width: `${(100 * counts[s]) / sum}%`, background: STATE_COLOURS[s] }}
            />
          ) : null,
        )}
    </div>
  );
}

/** Counts by state as labelled numbers; each carries `data-testid="count-STATE"`. */
export function CountsList({ counts, prefix = 'count' }: { counts: Counts; prefix?: string }) {
  return (
    <dl class="counts">
      {TASK_STATES.map((s) => (
        <div key={s}>
          <dt>
            <i style={{ background: STATE_COLOURS[s] }} /> {s}
          </dt>
          <dd data-testid={`${prefix}-${s}`}>{counts[s] ?? 0}</dd>
        </div>
      ))}
    </dl>
  );
}

export function duration(ms: number | null | undefined): string {
  if (ms == null) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function time(at: number | null | undefined): string {
  if (at == null) return '—';
  const d = new Date(at);
  return (
    d.toLocaleTimeString(undefined, { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0')
  );
}

export function Card({
  title,
  children,
  wide,
}: {
  title: string;
  children: ComponentChildren;
  wide?: boolean;
}) {
  return (
    <section class={wide ? 'card wide' : 'card'}>
      <h2>{title}</h2>
      {children}
    </section>
  );
}

export function Json({ value }: { value: unknown }) {
  return <pre class="json">{value === undefined ? '—' : JSON.stringify(value, null, 2)}</pre>;
}
