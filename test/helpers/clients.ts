/** In-process runners and feeders for tests, with the fixtures' task folder and a quiet logger. */
import { Feeder } from '../../feeder/feeder';
import { Runner } from '../../runner/runner';
import type { RunnerOptions } from '../../runner/options';
import { FIXTURES, testLogger } from './cluster';

export async function startRunner(master: string, opts: Partial<RunnerOptions> = {}): Promise<Runner> {
  const r = new Runner({ master, tasks: [FIXTURES], workers: 1, watch: true, logger: testLogger(), ...opts });
  await r.start();
  return r;
}

export async function startFeeder(master: string): Promise<Feeder> {
  const f = new Feeder({ master, logger: testLogger() });
  await f.ready();
  return f;
}
