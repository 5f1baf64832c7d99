/** The dashboard contract's shapes, as the master sends them (HTTP API and the `/dashboard` namespace). */
import type { TaskState } from '../../protocol/states';

export type { TaskState };
export type Counts = Record<TaskState, number>;

export interface WireError {
  code: string;
  message: string;
}

export interface TaskView {
  id: string;
  batch: string;
  module: string;
  state: TaskState;
  priority: number;
  attempts: number;
  maxAttempts: number;
  runner: string | null;
  created: number;
  assignedAt: number | null;
  finishedAt: number | null;
  error?: WireError;
  progress?: number;
  dependencies: string[];
}

export interface TimelineEntry {
  at: number;
  state: TaskState;
  attempt: number;
  runner?: string;
  code?: string;
}

export interface TaskDetail extends TaskView {
  params: unknown;
  result?: unknown;
  timeline: TimelineEntry[];
  why?: string;
}

export interface BatchView {
  id: string;
  total: number;
  counts: Counts;
  created: number;
  finishedAt: number | null;
  durationMs: number | null;
}

export interface GraphNode {
  id: string;
  state: TaskState;
  module: string;
}

export interface BatchGraph {
  nodes: GraphNode[];
  edges: [string, string][];
  truncated: boolean;
}

export interface RunnerView {
  id: string;
  hostname?: string;
  data?: Record<string, unknown>;
  slots: number;
  inUse: number;
  prioritySlots?: unknown;
  modules?: { name: string; hash: string }[];
  workers?: number;
  draining: boolean;
  connected: boolean;
  idle?: boolean;
}

export interface StoreStatus {
  writeBacklog: number;
  /** Whether writes are failing and being retried (a count on some masters). */
  retrying: number | boolean;
  foldBacklog: number;
  oldestUnfoldedMs: number | null;
}

export interface Overview {
  at: number;
  counts: Counts;
  queueByPriority: { priority: number; ready: number }[];
  throughput: { at: number; done: number; failed: number }[];
  store: StoreStatus;
  runners: RunnerView[];
  batches: BatchView[];
}
