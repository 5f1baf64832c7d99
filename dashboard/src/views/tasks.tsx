/** Tasks filtered by state, batch, module, runner and text, paged, with rows kept live. */
import { useEffect, useState } from 'preact/hooks';
import { VIEW_STATES } from '../../../protocol/views';
import { api, ApiError, type TaskFilter } from '../api';
import { fresh, useLive } from '../live';
import { go, href } from '../router';
import type { TaskView } from '../types';
import { StateBadge, time } from '../ui';

const FIELDS = ['batch', 'module', 'runner', 'q'] as const;

export function TasksView({ query }: { query: URLSearchParams }) {
  useLive(); // rows follow task events
  const filter: TaskFilter = {};
  for (const k of ['state', ...FIELDS] as const) filter[k] = query.get(k) ?? undefined;
  const key = JSON.stringify(filter);
  const [page, setPage] = useState<{ tasks: TaskView[]; next: string | null; since: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [form, setForm] = useState(filter);

  function load(cursor?: string | null) {
    const since = performance.now();
    api.tasks(filter, cursor).then(
      (r) => {
        setError(null);
        setPage((p) => ({
          tasks: cursor && p ? [...p.tasks, ...r.tasks] : r.tasks,
          next: r.next,
          since: cursor && p ? p.since : since,
        }));
      },
      (err: unknown) => setError(err instanceof ApiError ? `${err.code}: ${err.message}` : String(err)),
    );
  }
  useEffect(() => {
    setForm(filter);
    setPage(null);
    load();
  }, [key]);

  return (
    <section class="card wide">
      <h2>Tasks</h2>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          go(['tasks'], { ...form });
        }}
      >
        <select
          name="state"
          value={form.state ?? ''}
          onChange={(e) => go(['tasks'], { ...form, state: e.currentTarget.value || undefined })}
        >
          <option value="">any state</option>
          {VIEW_STATES.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
        {FIELDS.map((f) => (
          <input
            key={f}
            name={f}
            placeholder={f === 'q' ? 'text in id or module' : f}
            value={form[f] ?? ''}
            onInput={(e) => setForm({ ...form, [f]: e.currentTarget.value || undefined })}
          />
        ))}
        <button type="submit">Filter</button>
        <button type="button" class="quiet" onClick={() => load()}>
          Refresh
        </button>
      </form>
      {error && <p class="error">{error}</p>}
      {!page && !error && <p class="muted">Loading…</p>}
      {page && (
        <>
          <table class="list" data-testid="task-list">
            <thead>
              <tr>
                <th>id</th>
                <th>state</th>
                <th>module</th>
                <th>batch</th>
                <th>runner</th>
                <th>attempts</th>
                <th>created</th>
                <th>error</th>
              </tr>
            </thead>
            <tbody>
              {page.tasks.map((row) => {
                const t = fresh(row, page.since);
                return (
                  <tr key={t.id} data-testid="task-row" data-task={t.id} data-state={t.state}>
                    <td>
                      <a href={href(['tasks', t.id])}>{t.id}</a>
                    </td>
                    <td>
                      <StateBadge state={t.state} />
                    </td>
                    <td>{t.module}</td>
                    <td>
                      <a href={href(['batches', t.batch])}>{t.batch}</a>
                    </td>
                    <td>{t.runner ?? '—'}</td>
                    <td class="num">
                      {t.attempts}/{t.maxAttempts}
                    </td>
                    <td>{time(t.created)}</td>
                    <td class="small">{t.error ? `${t.error.code}: ${t.error.message}` : ''}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          {page.tasks.length === 0 && <p class="muted">No task matches.</p>}
          {page.next && (
            <button class="quiet" onClick={() => load(page.next)}>
              More
            </button>
          )}
        </>
      )}
    </section>
  );
}
