/**
 * The read-only `/dashboard` namespace: on connect a `dash:snapshot` (the overview), then a
 * `dash:tick` every second, and `dash:task` (a task's view) whenever a task changes state —
 * throttled to at most 200 a second and coalesced per task, so a busy master sends each task's
 * latest state rather than every step. Clients send nothing: no handler is registered for them.
 * Nothing is computed while no dashboard is connected.
 */
import type { Namespace } from 'socket.io';
import type { Logger } from '../../common/logger';
import type { TaskState } from '../../protocol/states';
import { delayedCount, queueByPriority } from './metrics';
import { recordView, type BatchView, type Monitor } from './monitor';
import type { Scheduler } from '../scheduler/scheduler';
import type { Store } from '../store/store';
import type { TaskRecord } from '../task-record';
import type { LeaseStatus } from '../lease';

export interface Overview {
  at: number;
  counts: Record<TaskState, number>;
  queueByPriority: { priority: number; ready: number }[];
  /** Tasks whose runAt is to come (not in the queue yet). */
  delayed: number;
  throughput: { at: number; done: number; failed: number }[];
  store: { writeBacklog: number; retrying: boolean; foldBacklog: number; oldestUnfoldedMs: number };
  runners: Record<string, unknown>[];
  batches: BatchView[];
  /** This master's part in the election: role, epoch, the lease's age (master/lease.ts). */
  master: { role: string; epoch: number; leaseAgeMs: number | null; leaseMs: number; url: string | null };
}

export interface DashboardSource {
  readonly scheduler: Scheduler;
  readonly monitor: Monitor;
  storeStatus(): ReturnType<Store['status']> | null;
  listRunners(): Record<string, unknown>[];
  leaseStatus(): LeaseStatus;
}

const TICK_MS = 1000;
/** Task events per flush, and flushes per second: 20 × 10 = 200 a second. */
const TASKS_PER_FLUSH = 20;
const FLUSH_MS = 100;
/** Tasks waiting to be sent beyond which further ones are left to the counts of the next tick. */
const PENDING_LIMIT = 5000;

export class Dashboard {
  private tick: NodeJS.Timeout | null = null;
  private flushTimer: NodeJS.Timeout | null = null;
  private pending = new Map<string, TaskRecord>();

  constructor(
    private readonly nsp: Namespace,
    private readonly source: DashboardSource,
    private readonly logger: Logger,
  ) {
    nsp.on('connection', (socket) => {
      this.logger.debug('dashboard connected', { socket: socket.id });
      socket.emit('dash:snapshot', this.overview());
      this.start();
    });
    source.monitor.onTask = (t) => this.taskChanged(t);
  }

  overview(): Overview {
    const s = this.source;
    const st = s.storeStatus();
    return {
      at: Date.now(),
      counts: { ...s.monitor.counts },
      queueByPriority: queueByPriority(s.scheduler),
      delayed: delayedCount(s.scheduler),
      throughput: s.monitor.throughput(),
      store: {
        writeBacklog: st?.writeBacklog ?? 0,
        retrying: st?.retrying ?? false,
        foldBacklog: st?.foldBacklog ?? 0,
        oldestUnfoldedMs: st?.oldestUnfoldedMs ?? 0,
      },
      runners: s.listRunners(),
      batches: s.monitor.recentBatches(20),
      master: (({ role, epoch, ageMs, leaseMs, active }) => ({
        role,
        epoch,
        leaseAgeMs: ageMs,
        leaseMs,
        url: active,
      }))(s.leaseStatus()),
    };
  }

  close(): void {
    if (this.tick) clearInterval(this.tick);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.tick = this.flushTimer = null;
    this.pending.clear();
    this.source.monitor.onTask = null;
  }

  private get watched(): boolean {
    return this.nsp.sockets.size > 0;
  }

  private start(): void {
    if (this.tick) return;
    this.tick = setInterval(() => {
      if (!this.watched) {
        // Nobody left: stop until the next connection.
        if (this.tick) clearInterval(this.tick);
        this.tick = null;
        this.pending.clear();
        return;
      }
      this.nsp.emit('dash:tick', this.overview());
    }, TICK_MS);
    this.tick.unref();
  }

  private taskChanged(t: TaskRecord): void {
    if (!this.watched) return;
    if (!this.pending.has(t.id) && this.pending.size >= PENDING_LIMIT) return;
    this.pending.set(t.id, t);
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => this.flush(), FLUSH_MS);
    this.flushTimer.unref();
  }

  private flush(): void {
    this.flushTimer = null;
    let n = 0;
    for (const [id, t] of this.pending) {
      if (n++ >= TASKS_PER_FLUSH) break;
      this.pending.delete(id);
      this.nsp.emit('dash:task', recordView(t));
    }
    if (this.pending.size > 0 && this.watched) {
      this.flushTimer = setTimeout(() => this.flush(), FLUSH_MS);
      this.flushTimer.unref();
    } else this.pending.clear();
  }
}
