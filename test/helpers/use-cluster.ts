/**
 * The setup most test files share: a master on a database of its own, runners on the fixtures and a
 * feeder, started in `beforeAll` and closed in `afterAll`. `useCluster` registers both hooks where it
 * is called: jest runs hooks in the order they are declared, so a file's `beforeAll` declared above
 * it runs before the start (to write task files), and its `afterAll` declared below it runs after
 * the close (to remove them); an `afterAll` that must close raw sockets first goes above it.
 *
 * Everything is tracked from the moment it is made, not once its start resolves: when a start fails
 * or hangs past the hook's timeout, what was made so far (that one included) is still closed.
 */
import type { Master } from '../../master/master';
import type { MasterOptions } from '../../master/options';
import type { Runner } from '../../runner/runner';
import type { RunnerOptions } from '../../runner/options';
import { createFeeder, createRunner, type TestFeeder, type TestFeederOptions } from './clients';
import { createMaster } from './cluster';
import { testDbName } from './db';

export interface ClusterOptions {
  /** The master's database; default a new one named after the test file. */
  dbName?: string;
  /**
   * The master's options over startMaster's (the run's database server, port 0, a quiet logger). A
   * function is called in `beforeAll`, for options an earlier hook makes (certificates, loggers).
   */
  masterOptions?: Partial<MasterOptions> | (() => Partial<MasterOptions>);
  /** Runners started after the master, one after the other: how many, or each one's options. */
  runners?: number | Partial<RunnerOptions>[];
  /** What every runner of the cluster starts with (under its own options). */
  runnerOptions?: Partial<RunnerOptions>;
  /** A feeder connected after the runners, as `feeder`: `true`, or its options. */
  feeder?: boolean | TestFeederOptions;
  /** What every feeder of the cluster starts with (under its own options). */
  feederOptions?: TestFeederOptions;
}

export interface TestCluster {
  readonly dbName: string;
  readonly master: Master;
  /** The master's URL. */
  readonly url: string;
  /** The runners of `runners`, in order. */
  readonly runners: readonly Runner[];
  /** The first of `runners`. */
  readonly runner: Runner;
  /** The feeder of `feeder`. */
  readonly feeder: TestFeeder;
  /** Starts one more runner on this master; closed in `afterAll` (or by the test). */
  startRunner(opts?: Partial<RunnerOptions>): Promise<Runner>;
  /** Connects one more feeder to this master; closed in `afterAll` (or by the test). */
  startFeeder(opts?: TestFeederOptions): Promise<TestFeeder>;
  /**
   * Closes everything, then starts the master (on the same database, with `masterOptions` if given,
   * else the cluster's), its runners and its feeder again: a master restart as a test sees it.
   */
  restart(masterOptions?: Partial<MasterOptions>): Promise<void>;
}

/**
 * Registers the `beforeAll` that starts a cluster and the `afterAll` that closes it, and returns
 * its handle; read its members from tests and later hooks, not while the file loads. The runners
 * and feeders carry the master's token unless their options say otherwise.
 */
export function useCluster(opts: ClusterOptions = {}): TestCluster {
  const dbName = opts.dbName ?? testDbName(expect.getState().testPath ?? 'cluster');
  let master: Master | undefined;
  let token: string | undefined;
  const started: Runner[] = [];
  let feeder: TestFeeder | undefined;
  // Everything made, for afterAll: the runners and feeders the tests started too.
  const runners: Runner[] = [];
  const feeders: TestFeeder[] = [];

  const up = (): Master => {
    if (master) return master;
    throw new Error('useCluster: no master (its beforeAll failed, or it was read while the file loads)');
  };
  const startRunner = async (ropts: Partial<RunnerOptions> = {}): Promise<Runner> => {
    const r = createRunner(up().url, { token, ...opts.runnerOptions, ...ropts });
    runners.push(r);
    await r.start();
    return r;
  };
  const startFeeder = async (fopts: TestFeederOptions = {}): Promise<TestFeeder> => {
    const f = createFeeder(up().url, { token, ...opts.feederOptions, ...fopts });
    feeders.push(f);
    await f.ready();
    return f;
  };

  const start = async (mopts: Partial<MasterOptions> | undefined): Promise<void> => {
    const m = createMaster(dbName, mopts);
    token = mopts?.token;
    master = m;
    await m.start();
    const each =
      typeof opts.runners === 'number' ? Array.from({ length: opts.runners }, () => ({})) : opts.runners;
    for (const ropts of each ?? []) started.push(await startRunner(ropts));
    if (opts.feeder) feeder = await startFeeder(opts.feeder === true ? {} : opts.feeder);
  };
  const close = async (): Promise<void> => {
    // Clients first, so the master sees them leave rather than lose them; every close is tried.
    const results = [
      ...(await Promise.allSettled(feeders.splice(0).map((f) => f.close()))),
      ...(await Promise.allSettled(runners.splice(0).map((r) => r.close()))),
      ...(await Promise.allSettled(master ? [master.close()] : [])),
    ];
    master = undefined;
    feeder = undefined;
    started.length = 0;
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  };

  const masterOptions = () =>
    typeof opts.masterOptions === 'function' ? opts.masterOptions() : opts.masterOptions;
  beforeAll(() => start(masterOptions()));
  afterAll(close);

  return {
    dbName,
    get master() {
      return up();
    },
    get url() {
      return up().url;
    },
    get runners() {
      return started;
    },
    get runner() {
      if (started[0]) return started[0];
      throw new Error('useCluster: no runner (give `runners`, or its start failed)');
    },
    get feeder() {
      if (feeder) return feeder;
      throw new Error('useCluster: no feeder (give `feeder: true`, or its connection failed)');
    },
    startRunner,
    startFeeder,
    async restart(mopts) {
      await close();
      await start(mopts ?? masterOptions());
    },
  };
}
