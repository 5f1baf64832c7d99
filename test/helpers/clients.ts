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
import { FIXTURES, testLogger } from './cluster';
import { within, WAIT_MS } from './wait';

export async function startRunner(master: string, opts: Partial<RunnerOptions> = {}): Promise<Runner> {
  const r = new Runner({ master, tasks: [FIXTURES], workers: 1, watch: true, logger: testLogger(), ...opts });
  await r.start();
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

export async function startFeeder(
  master: string,
  opts: Partial<FeederOptions> & { waitMs?: number } = {},
): Promise<TestFeeder> {
  const { waitMs, ...rest } = opts;
  const f = new TestFeeder({ master, logger: testLogger(), ...rest }, waitMs);
  await f.ready();
  return f;
}
