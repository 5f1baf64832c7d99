/** The batches list (live counts, progress, duration) and one batch: its counts, graph and actions. */
import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, ApiError } from '../api';
import { useAction } from '../access';
import { fresh, useLive, useTaskEvents } from '../live';
import { href } from '../router';
import type { BatchGraph, BatchView, TaskState } from '../types';
import { Card, CountsBar, CountsList, duration, time } from '../ui';
import { DependencyGraph } from './graph';
import { TaskPage } from './task-detail';

function elapsed(b: BatchView, now: number): number | null {
  return b.durationMs ?? (b.finishedAt ? b.finishedAt - b.created : now - b.created);
}

export function BatchesView() {
  const { overview } = useLive();
  const [fetched, setFetched] = useState<BatchView[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api.batches().then(
      (r) => setFetched(r.batches),
      (err: unknown) => setError(String(err)),
    );
  }, []);
  // The live overview carries the newest batches; older ones keep the counts they were fetched with.
  const byId = new Map(fetched.map((b) => [b.id, b]));
  for (const b of overview?.batches ?? []) byId.set(b.id, b);
  const batches = [...byId.values()].sort((a, b) => b.created - a.created);
  const now = overview?.at ?? Date.now();
  return (
    <section class="card wide">
      <h2>Batches ({batches.length})</h2>
      {error && <p class="error">{error}</p>}
      <table class="list">
        <thead>
          <tr>
            <th>batch</th>
            <th>created</th>
            <th class="grow">progress</th>
            <th>done</th>
            <th>failed</th>
            <th>active</th>
            <th>total</th>
            <th>duration</th>
          </tr>
        </thead>
        <tbody>
          {batches.map((b) => (
            <tr key={b.id} data-testid="batch-row" data-batch={b.id}>
              <td>
                <a href={href(['batches', b.id])}>{b.id}</a>
              </td>
              <td>{time(b.created)}</td>
              <td>
                <CountsBar counts={b.counts} total={b.total} />
              </td>
              <td class="num">{b.counts.done}</td>
              <td class="num">{b.counts.failed}</td>
              <td class="num">{b.counts.assigned + b.counts.running + b.counts.ready + b.counts.waiting}</td>
              <td class="num">{b.total}</td>
              <td>{b.finishedAt ? duration(elapsed(b, now)) : `${duration(elapsed(b, now))} so far`}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {batches.length === 0 && !error && <p class="muted">No batch yet.</p>}
    </section>
  );
}

export function BatchPage({ id }: { id: string }) {
  const { overview } = useLive();
  const [data, setData] = useState<{ batch: BatchView; graph: BatchGraph; since: number } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState<string | undefined>();
  const action = useAction();

  const load = useCallback(() => {
    const since = performance.now();
    api.batch(id).then(
      (r) => setData({ ...r, since }),
      (err: unknown) => setError(err instanceof ApiError ? `${err.code}: ${err.message}` : String(err)),
    );
  }, [id]);
  useEffect(load, [load]);
  // A task of this batch that the graph does not show yet (added later): fetch the graph again.
  useTaskEvents(
    useCallback(
      (t) => {
        if (data && t.batch === id && !data.graph.truncated && !data.graph.nodes.some((n) => n.id === t.id))
          load();
      },
      [data, id, load],
    ),
  );

  if (error) return <p class="error">{error}</p>;
  if (!data) return <p class="muted">Loading batch {id}…</p>;
  const batch = overview?.batches.find((b) => b.id === id) ?? data.batch;
  const nodes = new Map(data.graph.nodes.map((n) => [n.id, n]));
  const state = (nid: string): TaskState => fresh(nodes.get(nid)!, data.since).state;
  const now = overview?.at ?? Date.now();
  return (
    <div class="grid">
      <Card title={`Batch ${id}`} wide>
        <CountsBar counts={batch.counts} total={batch.total} />
        <CountsList counts={batch.counts} prefix="batch-count" />
        <p class="muted">
          {batch.total} tasks · created {time(batch.created)} ·{' '}
          {batch.finishedAt
            ? `finished in ${duration(elapsed(batch, now))}`
            : `running for ${duration(elapsed(batch, now))}`}
        </p>
        <div class="actions">
          <button
            data-testid="retry-failed"
            disabled={!action.act || action.busy || batch.counts.failed === 0}
            onClick={() =>
              action.run(
                'retry failed',
                () => api.retryFailed(id),
                (r) => `retried ${(r as { retried: string[] }).retried.length} tasks`,
              )
            }
          >
            Retry {batch.counts.failed} failed
          </button>
          <a href={href(['tasks'], { batch: id })}>tasks of this batch</a>{' '}
          <a href={href(['tasks'], { batch: id, state: 'failed' })}>failed tasks</a>
        </div>
        {action.note}
      </Card>
      <Card title="Dependency graph" wide>
        {data.graph.truncated && (
          <p class="note" data-testid="graph-truncated">
            This batch has {batch.total} tasks: the graph shows {data.graph.nodes.length} of them; the counts
            above cover all.
          </p>
        )}
        <DependencyGraph
          nodes={data.graph.nodes}
          edges={data.graph.edges}
          states={state}
          selected={selected}
          onSelect={setSelected}
        />
      </Card>
      {selected && (
        <div class="wide">
          <TaskPage id={selected} key={selected} />
        </div>
      )}
    </div>
  );
}
