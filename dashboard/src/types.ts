/** The dashboard contract's shapes, as the master sends them (HTTP API and the `/dashboard` namespace). */
import type { TaskState } from '../../protocol/states';
import type { BatchView, TaskDetail, TaskView, TimelineEntry } from '../../protocol/views';

export type { BatchView, TaskDetail, TaskState, TaskView, TimelineEntry };
export type Counts = Record<TaskState, number>;

export interface WireError {
  code: string;
  message: string;
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
  /** Tasks whose runAt is to come (not in the queue yet). */
  delayed?: number;
  throughput: { at: number; done: number; failed: number }[];
  store: StoreStatus;
  runners: RunnerView[];
  batches: BatchView[];
  /** The master's part in the election (absent from an older master). */
  master?: { role: string; epoch: number; leaseAgeMs: number | null; leaseMs: number; url: string | null };
}
