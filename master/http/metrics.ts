/**
 * Prometheus metrics through prom-client, one registry per master (several masters can share a
 * process, as in tests). Counters and histograms are fed by the scheduler's observer calls; gauges
 * (queue depth, runners, the store's backlog) are read when scraped, so they cost nothing between
 * scrapes. Default metrics add the process's CPU, memory, handles and event-loop lag.
 */
import client from 'prom-client';
import type { ConnectionCounts } from '../connections';
import type { BufferCounts } from '../slow-readers';
import { isFinal, TASK_STATES, type TaskState } from '../../protocol/states';
import { viewState } from '../../protocol/views';
import type { Scheduler, TaskObserver } from '../scheduler/scheduler';
import type { Store } from '../store/store';
import type { LeaseStatus } from '../lease';
import type { TaskRecord } from '../task-record';

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];

export class Metrics implements TaskObserver {
  readonly registry = new client.Registry();
  private readonly addedTotal = this.counter('tasks_added_total', 'Tasks added, by module');
  private readonly assignedTotal = this.counter(
    'tasks_assigned_total',
    'Attempts assigned to a runner, by module',
  );
  private readonly doneTotal = this.counter('tasks_done_total', 'Tasks finished with a result, by module');
  private readonly failedTotal = this.counter(
    'tasks_failed_total',
    'Tasks failed for good (cancelled ones included), by module',
  );
  private readonly retriedTotal = this.counter(
    'tasks_retried_total',
    'Tasks queued again after an attempt (retry, requeue) or run again by an operator, by module',
  );
  private readonly waitTime = new client.Histogram({
    name: 'taskmaster_ready_to_assigned_seconds',
    help: 'Time from ready to assigned, by module',
    labelNames: ['module'],
    buckets: SECONDS,
    registers: [this.registry],
  });
  private readonly runTime = new client.Histogram({
    name: 'taskmaster_run_seconds',
    help: 'Time from assigned to the attempt outcome, by module',
    labelNames: ['module'],
    buckets: SECONDS,
    registers: [this.registry],
  });
  /** Latency of the store's group-commit writes. */
  readonly writeTime = new client.Histogram({
    name: 'taskmaster_store_write_seconds',
    help: 'Duration of one write of the store (every change queued while the previous write was in flight)',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });

  constructor(scheduler: Scheduler, store: Store) {
    client.collectDefaultMetrics({ register: this.registry });
    const reg = [this.registry];
    new client.Gauge({
      name: 'taskmaster_tasks',
      help: 'Tasks in memory by state (final ones leave memory)',
      labelNames: ['state'],
      registers: reg,
      collect() {
        const counts = new Map<TaskState, number>(TASK_STATES.map((s) => [s, 0]));
        for (const t of scheduler.tasks.values()) counts.set(t.state, (counts.get(t.state) ?? 0) + 1);
        for (const [state, n] of counts) if (!isFinal(state)) this.set({ state }, n);
      },
    });
    new client.Gauge({
      name: 'taskmaster_tasks_delayed',
      help: 'Tasks added with runAt or delay whose time has not come (also counted as waiting or ready in taskmaster_tasks)',
      registers: reg,
      collect() {
        this.set(delayedCount(scheduler));
      },
    });
    new client.Gauge({
      name: 'taskmaster_queue_depth',
      help: 'Ready tasks by priority',
      labelNames: ['priority'],
      registers: reg,
      collect() {
        this.reset();
        for (const q of queueByPriority(scheduler)) this.set({ priority: String(q.priority) }, q.ready);
      },
    });
    new client.Gauge({
      name: 'taskmaster_runners_connected',
      help: 'Runners connected',
      registers: reg,
      collect() {
        let n = 0;
        for (const r of scheduler.runners.values()) if (r.connected) n++;
        this.set(n);
      },
    });
    new client.Gauge({
      name: 'taskmaster_slots',
      help: 'Slots of the connected runners: total and in use',
      labelNames: ['kind'],
      registers: reg,
      collect() {
        let total = 0;
        let inUse = 0;
        for (const r of scheduler.runners.values()) {
          if (!r.connected) continue;
          total += r.slots;
          inUse += r.active.size;
        }
        this.set({ kind: 'total' }, total);
        this.set({ kind: 'in_use' }, inUse);
      },
    });
    const storeGauge = (name: string, help: string, read: (s: ReturnType<Store['status']>) => number) =>
      new client.Gauge({
        name,
        help,
        registers: reg,
        collect() {
          this.set(read(store.status()));
        },
      });
    storeGauge('taskmaster_store_write_backlog', 'Changes queued for the next write', (s) => s.writeBacklog);
    storeGauge('taskmaster_store_retrying', '1 while a write fails and is being retried', (s) =>
      s.retrying ? 1 : 0,
    );
    storeGauge(
      'taskmaster_store_fold_backlog',
      'Running states not yet written to tasks',
      (s) => s.foldBacklog,
    );
    storeGauge(
      'taskmaster_store_oldest_unfolded_seconds',
      'Age of the oldest change not yet in tasks',
      (s) => s.oldestUnfoldedMs / 1000,
    );
  }

  /** Connections held and closed by the limits, and what waits for slow readers. */
  watchConnections(connections: () => ConnectionCounts, buffers: () => BufferCounts): void {
    const reg = [this.registry];
    new client.Gauge({
      name: 'taskmaster_connections',
      help: 'TCP connections held: all, and those that authenticated',
      labelNames: ['kind'],
      registers: reg,
      collect() {
        const c = connections();
        this.set({ kind: 'open' }, c.open);
        this.set({ kind: 'authenticated' }, c.members);
      },
    });
    new client.Gauge({
      name: 'taskmaster_connections_closed',
      help: 'Connections closed by the limits since start, by limit',
      labelNames: ['limit'],
      registers: reg,
      collect() {
        const c = connections();
        this.set({ limit: 'max_connections' }, c.refusedTotal);
        this.set({ limit: 'per_address' }, c.refusedPerAddress);
        this.set({ limit: 'reserve' }, c.evicted);
        this.set({ limit: 'handshake_timeout' }, c.silentClosed);
      },
    });
    new client.Gauge({
      name: 'taskmaster_socket_buffered_bytes_peak',
      help: 'Most bytes seen waiting for one connection that does not read, since start',
      registers: reg,
      collect() {
        this.set(buffers().peakBytes);
      },
    });
    new client.Gauge({
      name: 'taskmaster_slow_readers_disconnected',
      help: 'Connections closed since start for holding more than maxBufferedBytes unread',
      registers: reg,
      collect() {
        this.set(buffers().disconnected);
      },
    });
  }

  added(tasks: readonly TaskRecord[]): void {
    for (const t of tasks) this.addedTotal.inc({ module: t.module });
  }

  changed(t: TaskRecord, prev: TaskState): void {
    const module = t.module;
    switch (t.state) {
      case 'assigned':
        this.assignedTotal.inc({ module });
        if (t.readyAt && t.assignedAt) this.waitTime.observe({ module }, (t.assignedAt - t.readyAt) / 1000);
        break;
      case 'ready':
        if (prev !== 'waiting') this.retriedTotal.inc({ module });
        break;
      case 'waiting':
        if (isFinal(prev)) this.retriedTotal.inc({ module });
        break;
      case 'done':
        this.doneTotal.inc({ module });
        break;
      case 'failed':
      case 'cancelled':
        if (prev !== 'done') this.failedTotal.inc({ module });
        break;
      default:
    }
    if ((prev === 'assigned' || prev === 'running') && t.assignedAt && t.state !== 'running')
      this.runTime.observe({ module }, (Date.now() - t.assignedAt) / 1000);
  }

  discarded(): void {}

  text(): Promise<{ contentType: string; body: string }> {
    return this.registry.metrics().then((body) => ({ contentType: this.registry.contentType, body }));
  }

  private counter(name: string, help: string): client.Counter<'module'> {
    return new client.Counter({
      name: `taskmaster_${name}`,
      help,
      labelNames: ['module'],
      registers: [this.registry],
    });
  }
}

/** Ready tasks by priority, highest first; delayed ones are not in the queue yet. */
export function queueByPriority(s: Scheduler): { priority: number; ready: number }[] {
  const by = new Map<number, number>();
  const now = Date.now();
  for (const t of s.tasks.values())
    if (t.state === 'ready' && !(t.runAt && t.runAt > now)) by.set(t.priority, (by.get(t.priority) ?? 0) + 1);
  return [...by.entries()].sort((a, b) => b[0] - a[0]).map(([priority, ready]) => ({ priority, ready }));
}

/** Tasks shown as `delayed`: waiting or ready, their `runAt` still to come (protocol/views.ts). */
export function delayedCount(s: Scheduler): number {
  const now = Date.now();
  let n = 0;
  for (const t of s.tasks.values()) if (viewState(t.state, t.runAt, now) === 'delayed') n++;
  return n;
}

/**
 * The election's gauges (master/lease.ts), on an active and a standby master alike: the role, the
 * epoch, and the time since the lease last moved (renewed by this master, or seen to move by a
 * standby).
 */
export function leaseRegistry(status: () => LeaseStatus): client.Registry {
  const registry = new client.Registry();
  const reg = [registry];
  new client.Gauge({
    name: 'taskmaster_master_active',
    help: 'Whether this master holds the lease and is active (1) or is standby (0)',
    registers: reg,
    collect() {
      this.set(status().role === 'active' ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'taskmaster_master_epoch',
    help: 'The lease epoch this master holds (active) or last saw (standby); it rises at each takeover',
    registers: reg,
    collect() {
      this.set(status().epoch);
    },
  });
  new client.Gauge({
    name: 'taskmaster_lease_age_seconds',
    help: 'Since this master last renewed its lease (active), or last saw the active master renew it (standby)',
    registers: reg,
    collect() {
      const age = status().ageMs;
      if (age === null) this.reset();
      else this.set(age / 1000);
    },
  });
  return registry;
}

/** The process's own metrics (CPU, memory, event loop), for a standby master, which has no `Metrics`. */
export function processRegistry(): client.Registry {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  return registry;
}
