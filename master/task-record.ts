/**
 * A task as the scheduler holds it in memory. The database holds the same facts (`tasks`);
 * this is the copy the scheduler reads on the hot path.
 */
import type { TaskState } from '../protocol/states';
import type { ReportedError } from '../protocol/errors';

export interface TaskRecord {
  /** The same as `id` (the `tasks` document's `_id`); the original protocol's name for it. */
  _id: string;
  id: string;
  module: string;
  params: unknown[];
  priority: number;
  dependencies: string[];
  batch: string;
  created: number;
  state: TaskState;
  /** Number of the current (or last) attempt; 0 before the first assignment. */
  attempts: number;
  maxAttempts: number;
  /** Attempts lost through no fault of the task (requeued uncounted); not counted against maxAttempts. */
  uncounted?: number;
  /** Journal revision of the last change recorded for this task. */
  rev: number;
  /** Dependencies not done yet. */
  pending: number;
  /** Tasks that depend on this one. */
  dependents: TaskRecord[];
  /** Runner holding the current attempt, if assigned or running. */
  who: string | null;
  assignedAt: number | null;
  /** When it became final (epoch ms). */
  finishedAt?: number | null;
  /** Result and error as stored (encoded once, when the change is recorded). */
  stored?: { result?: unknown; error?: unknown };
  result?: unknown;
  error?: ReportedError | null;
  moduleHash?: string | null;
  /** The running attempt's last reported progress (0–1), for the dashboard. */
  progress?: number;
  runTimeout?: number | null;
  timeout?: number | null;
  assignTimeout?: number | null;
  deadline?: number | null;
  /** Position in the ready queue (FIFO within a priority). */
  seq: number;
  /** When it last became ready (start of its assignTimeout). */
  readyAt?: number | null;
  key?: string | null;
  affinity?: string | null;
  /** A broadcast: its dependencies are its per-runner copies; it never runs itself. */
  fanout?: boolean;
  requires?: Record<string, string | number | boolean | null> | null;
  /** Runner id the task must run on. */
  runner?: string | null;
  backoff?: { type: 'fixed' | 'exponential'; delay: number; maxDelay?: number; jitter?: boolean } | null;
  /** Tasks with the same key waiting for this one's outcome (holdSimilarWork). */
  held?: TaskRecord[];
  /** The task whose outcome this one waits for (holdSimilarWork). */
  heldBy?: TaskRecord | null;
}
