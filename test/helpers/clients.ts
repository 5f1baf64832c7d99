/**
 * In-process runners and feeders for tests, with the fixtures' task folder and a quiet logger.
 * The feeder's waits for outcomes are bounded: a task that never becomes final fails the test
 * naming the task whose outcome did not arrive, instead of hanging until jest's timeout.
 */
import { Feeder } from '../../feeder/feeder';
import type { FeederOptions } from '../../feeder/options';
import type { TaskOutcome } from '../../protocol/schemas';
import { Runner } from '../../runner/runner';
import type { RunnerOptions } from '../../runner/options';
import { closedOnFailure, FIXTURES, testLogger } from './cluster';
import { within, WAIT_MS } from './wait';

/** A runner of the fixtures (1 worker, watching, quiet) for the master(s) at `master`; not started. */
export function createRunner(master: string | string[], opts: Partial<RunnerOptions> = {}): Runner {
  return new Runner({ master, tasks: [FIXTURES], workers: 1, watch: true, logger: testLogger(), ...opts });
}

/** A started {@link createRunner}; one whose start fails is closed before the error is thrown. */
export async function startRunner(
  master: string | string[],
  opts: Partial<RunnerOptions> = {},
): Promise<Runner> {
  const r = createRunner(master, opts);
  await closedOnFailure(r, r.start());
  return r;
}

/** A Feeder whose waits for an outcome give up after `waitMs`, naming the task. */
export class TestFeeder extends Feeder {
  constructor(
    opts: FeederOptions,
    readonly waitMs = WAIT_MS,
  ) {
    super(opts);
  }

  /** Also bounds `wait`, `work` and `workIndividual`, which wait through it. */
  override outcome(id: string): Promise<TaskOutcome> {
    return within(this.waitMs, super.outcome(id), `the outcome of task ${JSON.stringify(id)}`);
  }
}

/** Feeder options, and `waitMs`: how long its waits for an outcome last (default wait.ts's). */
export type TestFeederOptions = Partial<FeederOptions> & { waitMs?: number };

/** A {@link TestFeeder} of the master at `master`, with a quiet logger; not yet waited for. */
export function createFeeder(master: string | string[], opts: TestFeederOptions = {}): TestFeeder {
  const { waitMs, ...rest } = opts;
  return new TestFeeder({ master, logger: testLogger(), ...rest }, waitMs);
}

/** A connected {@link createFeeder}; one that does not connect is closed before the error is thrown. */
export async function startFeeder(
  master: string | string[],
  opts: TestFeederOptions = {},
): Promise<TestFeeder> {
  const f = createFeeder(master, opts);
  await closedOnFailure(f, f.ready());
  return f;
}
