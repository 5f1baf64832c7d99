/**
 * What the scheduler needs of persistence, and nothing more: master/store/store.ts implements it against
 * the database; unit tests implement it in memory. Writes are queued and ordered; `barrier()` resolves
 * once every write queued before it is durable (assignments, add replies, outcomes and result
 * acknowledgements wait for it). A write the database refuses for good is reported to `onRefused`.
 */
import type { WireError } from '../protocol/errors';
import type { AllocationDoc } from '../models/allocation';
import type { JournalChange } from '../models/task-journal';
import type { TaskDoc } from '../models/task';
import type { TaskRecord } from './task-record';

/** A task's state as the database knows it (look-ups of tasks not in memory). */
export interface StoredState {
  id: string;
  batch: string;
  state: TaskDoc['state'];
  attempts: number;
  rev: number;
  result?: unknown;
  error?: TaskDoc['error'];
  who?: string | null;
  moduleHash?: string | null;
  /** The `addKey` of the add that created it, if it had one. */
  addKey?: string;
}

/** A final task whose dedup key may still be taken (recovery rebuilds the key index from these). */
export interface KeptTask {
  id: string;
  batch: string;
  state: TaskDoc['state'];
  dedup: { key: string; until?: number };
}

/** `taken`: refused because a stored task has the id `id` (the add may be a retry: see `addKey`). */
export type AddWriteResult = { ok: true } | { ok: false; id: string; error: WireError; taken?: boolean };

/** Called when the server refused a task's new state: it was replaced by an EPERSIST failure. */
export type RefusalListener = (t: TaskRecord, error: WireError) => void;

export interface TaskStore {
  /** Called when the database refused a task's recorded change for good. */
  onRefused: RefusalListener;
  /** The journal's folder: while `congested`, no new work is distributed; `onRelieved` says it caught up. */
  readonly folder: { readonly congested: boolean; onRelieved: () => void };

  /** Encodes an add's documents, refusing the add (EPERSIST) if one cannot be stored. Changes nothing. */
  prepareTasks(docs: TaskDoc[]): { docs: TaskDoc[] } | { id: string; error: WireError };
  /**
   * Writes an add's documents; refused as a whole (e.g. an id already taken). `given`: the ids the
   * feeder chose (the others were generated here, so no stored task can have them and the store does
   * not look them up); all of them when absent.
   */
  insertTasks(docs: TaskDoc[], given?: string[]): Promise<AddWriteResult>;
  /** Records a task's new state (written before anything waits on the barrier); an error if it cannot be encoded. */
  update(t: TaskRecord): WireError | null;
  /** Records a task's new state lazily (nobody waits for it: `running`). */
  fold(t: TaskRecord): void;
  /** A task that left memory without a final record (its add was refused); not another of its id. */
  forget(t: TaskRecord): void;
  barrier(): Promise<void>;
  /**
   * Called just before each write takes what is queued: a distribution pass due on this tick runs
   * here, so the assignments it makes travel in the same write as the add or result that freed them
   * (one commit on a task's path instead of two). Absent: no hook.
   */
  beforeWrite?: () => void;
  /** Tasks of adds not durable yet (admission bounds them); absent: none are ever waiting. */
  readonly unwritten?: number;
  /** Why writes are not going through, if they are not (a full disk, a server not answering). */
  trouble?(): { cause: string } | null;

  allocate(doc: AllocationDoc): void;
  deallocate(key: string): void;
  loadAllocations(): Promise<AllocationDoc[]>;

  /** Open task documents, newer journal changes per task, and how many half-added tasks were dropped. */
  loadForRecovery(): Promise<{
    docs: TaskDoc[];
    journal: Map<string, { change: JournalChange; refs: [string, number][] }>;
    dropped: number;
    /** Final tasks whose dedup key is still taken (`dedup.until` to come). */
    kept?: KeptTask[];
  }>;
  /** A recovered task whose latest state came from these journal documents. */
  adoptJournal(t: TaskRecord, refs: [string, number][]): void;
  /** States of these tasks (final or not) as stored; unknown ids are absent. */
  fetchStates(ids: string[]): Promise<Map<string, StoredState>>;
}
