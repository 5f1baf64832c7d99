/** One task: where it stands and why, its params, attempts and timeline, result or error; retry, cancel. */
import { useCallback, useEffect, useState } from 'preact/hooks';
import { isFinal } from '../../../protocol/states';
import { api, ApiError } from '../api';
import { useAction } from '../access';
import { useTaskEvents } from '../live';
import { href } from '../router';
import type { TaskDetail } from '../types';
import { Json, StateBadge, duration, time } from '../ui';
import { WhyNotRunner } from './why-not-runner';

export function TaskPage({ id }: { id: string }) {
  const [task, setTask] = useState<TaskDetail | null>(null);
  const [error, setError] = useState<string | null>(null);
  const action = useAction();

  const load = useCallback(() => {
    api.task(id).then(
      (r) => {
        setTask(r.task);
        setError(null);
      },
      (err: unknown) => setError(err instanceof ApiError ? `${err.code}: ${err.message}` : String(err)),
    );
  }, [id]);
  useEffect(load, [load]);
  // The detail (timeline, result) changes with each state: fetch it again when this task changes.
  useTaskEvents(useCallback((t) => t.id === id && load(), [id, load]));

  if (error) return <p class="error">{error}</p>;
  if (!task) return <p class="muted">Loading task {id}…</p>;
  const final = task.state !== 'delayed' && isFinal(task.state);
  return (
    <section class="card wide task" data-testid="task-detail" data-task={task.id} data-state={task.state}>
      <h2>
        Task {task.id} <StateBadge state={task.state} />
      </h2>
      <div class="actions">
        <button
          data-testid="retry"
          disabled={!action.act || action.busy || (task.state !== 'failed' && task.state !== 'cancelled')}
          onClick={() =>
            action
              .run(
                'retry',
                () => api.retry(task.id),
                () => 'retried',
              )
              .then(load)
          }
        >
          Retry
        </button>
        <button
          data-testid="cancel"
          disabled={!action.act || action.busy || final}
          onClick={() =>
            action.run(
              'cancel',
              () => api.cancel(task.id),
              (r) => `cancelled ${(r as { cancelled: string[] }).cancelled.length} tasks`,
            )
          }
        >
          Cancel
        </button>
      </div>
      {action.note}
      {task.why && (
        <p class="note" data-testid="why">
          {task.whyCode && <b>{task.whyCode}</b>} {task.why}
        </p>
      )}
      {(task.state === 'ready' || task.state === 'waiting' || task.state === 'delayed') && (
        <WhyNotRunner taskId={task.id} />
      )}
      <dl class="kv">
        <dt>module</dt>
        <dd>
          <a href={href(['tasks'], { module: task.module })}>{task.module}</a>
        </dd>
        <dt>batch</dt>
        <dd>
          <a href={href(['batches', task.batch])}>{task.batch}</a>
        </dd>
        <dt>priority</dt>
        <dd>{task.priority}</dd>
        {task.group !== undefined && (
          <>
            <dt>group</dt>
            <dd>{task.group}</dd>
          </>
        )}
        <dt>attempts</dt>
        <dd data-testid="attempts">
          {task.attempts} of {task.maxAttempts}
        </dd>
        <dt>runner</dt>
        <dd>{task.runner ?? '—'}</dd>
        <dt>created</dt>
        <dd>{time(task.created)}</dd>
        {task.runAt && (
          <>
            <dt>run at</dt>
            <dd data-testid="run-at">{time(task.runAt)}</dd>
          </>
        )}
        <dt>assigned</dt>
        <dd>{time(task.assignedAt)}</dd>
        <dt>finished</dt>
        <dd>
          {time(task.finishedAt)}
          {task.finishedAt && ` (${duration(task.finishedAt - task.created)} after creation)`}
        </dd>
        {task.progress != null && (
          <>
            <dt>progress</dt>
            <dd>
              <span class="meter">
                <span style={{ width: `${Math.round(task.progress * 100)}%` }} />
              </span>{' '}
              {Math.round(task.progress * 100)} %
            </dd>
          </>
        )}
        <dt>dependencies</dt>
        <dd>
          {task.dependencies.length === 0
            ? 'none'
            : task.dependencies.map((d) => (
                <a key={d} class="dep" href={href(['tasks', d])}>
                  {d}
                </a>
              ))}
        </dd>
      </dl>
      {task.error && (
        <div class="error-box" data-testid="task-error">
          <b>{task.error.code}</b> {task.error.message}
        </div>
      )}
      <div class="two">
        <div>
          <h3>params</h3>
          <Json value={task.params} />
        </div>
        <div>
          <h3>result</h3>
          <Json value={task.result} />
        </div>
      </div>
      <h3>timeline</h3>
      <table class="list">
        <thead>
          <tr>
            <th>at</th>
            <th>state</th>
            <th>attempt</th>
            <th>runner</th>
            <th>code</th>
          </tr>
        </thead>
        <tbody>
          {task.timeline.map((e, i) => (
            <tr key={i}>
              <td>{time(e.at)}</td>
              <td>
                <StateBadge state={e.state} />
              </td>
              <td class="num">{e.attempt}</td>
              <td>{e.runner ?? ''}</td>
              <td>{e.code ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
