/**
 * What the master's HTTP API and `/dashboard` namespace show of tasks and batches: one definition for
 * the master that builds them, the CLI and the dashboard that read them. Types, and the one rule
 * that derives the state a view shows.
 */
import { TASK_STATES, type TaskState } from './states';

/**
 * The state a view shows: the task's state, or `delayed` for a task not started yet (waiting or
 * ready) whose `runAt` is still to come. Not a state of the task itself (the transition table does
 * not know it): the task is waiting or ready, and a policy holds it until its time.
 */
export type ViewState = TaskState | 'delayed';

export const VIEW_STATES = Object.freeze([...TASK_STATES, 'delayed'] as const);

export function viewState(state: TaskState, runAt: number | null | undefined, now: number): ViewState {
  return (state === 'waiting' || state === 'ready') && runAt && runAt > now ? 'delayed' : state;
}

export interface TimelineEntry {
  at: number;
  state: TaskState;
  attempt: number;
  runner?: string;
  code?: string;
}

export interface TaskView {
  id: string;
  batch: string;
  module: string;
  state: ViewState;
  /** Not before this time (epoch ms): a delayed task's `runAt`, kept once its time has come. */
  runAt?: number;
  priority: number;
  /** Its fair-share group, if it names one. */
  group?: string;
  attempts: number;
  /**
   * Attempts it may make in all: its `maxAttempts` plus the attempts that did not count (lost with
   * a runner, given back, or made before an operator's retry), so `attempts` never reads above it.
   */
  maxAttempts: number;
  runner: string | null;
  created: number;
  assignedAt: number | null;
  finishedAt: number | null;
  error?: { code: string; message: string };
  /** 0–1, while it runs. */
  progress?: number;
  dependencies: string[];
  /** A schedule's task for a slot missed while no master ran, created late. */
  backfilled?: true;
}

export interface TaskDetail extends TaskView {
  params: unknown;
  result?: unknown;
  timeline: TimelineEntry[];
  /** Why a waiting or ready task is not running yet, and that reason's stable code (`GET /api/tasks/ID/why`). */
  why?: string;
  whyCode?: string;
}

export interface BatchView {
  id: string;
  total: number;
  counts: Record<TaskState, number>;
  created: number;
  finishedAt: number | null;
  durationMs: number | null;
}
