/**
 * The guarantees `npm run mutate` breaks on purpose (test/mutate/run.ts), one mutant each: an exact
 * snippet of one source file, the broken code that replaces it, and the test files (optionally a
 * test-name pattern) that must then fail. Keep each snippet small and unique in its file; when the
 * code moves, the run says which snippet it no longer finds.
 */
export interface Mutant {
  /** Short and stable: `npm run mutate -- --only NAME`. */
  name: string;
  /** What the code promises, said as the guarantee the mutant removes. */
  guarantee: string;
  /** Path from the project's root. */
  file: string;
  /** Occurs exactly once in the file. */
  find: string;
  replace: string;
  /** Further snippets of the same file broken with it, when one guarantee is held in two places. */
  more?: { find: string; replace: string }[];
  /** The test files that defend the guarantee, from the project's root. */
  tests: string[];
  /** Runs only the tests whose name matches (jest's --testNamePattern), to keep the run short. */
  testName?: string;
}

export const MUTANTS: Mutant[] = [
  // ---- identity and access ---------------------------------------------------------------------
  {
    name: 'token-runner-namespace',
    guarantee: 'the /runner namespace checks the token',
    file: 'master/master.ts',
    find: '    runners.use(auth);\n',
    replace: '',
    tests: ['test/adversarial/identity.test.ts'],
    testName: 'every namespace checks the token',
  },
  {
    name: 'token-feeder-namespace',
    guarantee: 'the /feeder namespace checks the token',
    file: 'master/master.ts',
    find: '    feeders.use(auth);\n',
    replace: '',
    tests: ['test/adversarial/identity.test.ts'],
    testName: 'every namespace checks the token',
  },
  {
    name: 'token-legacy-namespace',
    guarantee: "the original protocol's namespace checks the token",
    file: 'master/master.ts',
    find: '    legacy.use(auth);\n',
    replace: '',
    tests: ['test/adversarial/legacy.test.ts'],
  },
  {
    name: 'token-dashboard-namespace',
    guarantee: 'the /dashboard namespace checks the token (or the read-only one)',
    file: 'master/master.ts',
    find: '    dashboard.use(tokenMiddleware(this.opts.token, this.opts.readToken));\n',
    replace: '',
    tests: ['test/adversarial/identity.test.ts'],
    testName: 'every namespace checks the token',
  },
  {
    name: 'result-from-another-runner',
    guarantee: 'a result counts only from the connection (runner) the attempt was sent to',
    file: 'master/scheduler/core.ts',
    find: 't.attempts === attempt && t.who === runnerId && (',
    replace: 't.attempts === attempt && (',
    tests: ['test/adversarial/identity.test.ts'],
    testName: 'a result from a connection the attempt was not sent to',
  },
  // ---- limits at the edge ----------------------------------------------------------------------
  {
    name: 'max-http-buffer-size-removed',
    guarantee: "the transport refuses a message over maxMessageBytes (Socket.IO's maxHttpBufferSize)",
    file: 'master/master.ts',
    find: '      maxHttpBufferSize: this.opts.maxMessageBytes,\n',
    replace: '',
    tests: ['test/adversarial/limits.test.ts'],
    testName: 'a message over maxMessageBytes closes its connection',
  },
  {
    name: 'reconnect-delay-fixed',
    guarantee: "the client link's reconnect delay grows with each refusal in a row",
    file: 'common/client-link.ts',
    find: 'const retry = this.retries++;',
    replace: 'const retry = this.retries;',
    tests: ['test/unit/client-link.test.ts'],
    testName: 'waits longer before the next try',
  },
  {
    name: 'dashboard-flush-threshold',
    guarantee: 'dashboard task events are flushed however few are waiting',
    file: 'master/http/dashboard.ts',
    find: '    if (this.flushTimer) return;\n    this.flushTimer = setTimeout(() => this.flush(), FLUSH_MS);',
    replace:
      '    if (this.flushTimer || this.pending.size < TASKS_PER_FLUSH) return;\n    this.flushTimer = setTimeout(() => this.flush(), FLUSH_MS);',
    tests: ['test/integration/observability.test.ts'],
    testName: 'task events as tasks change',
  },
  {
    name: 'connections-unguarded',
    guarantee: 'connections are capped in all and per address, and silent ones closed',
    file: 'master/master.ts',
    find: '    guard.attach(this.server);\n',
    replace: '',
    tests: ['test/adversarial/connections.test.ts'],
    testName: 'from one address',
  },
  {
    name: 'keep-alive-holds-room',
    guarantee: 'an HTTP keep-alive connection idle between requests can be closed to make room',
    file: 'master/connections.ts',
    find: "      if (--t.requests > 0 || t.stage !== 'http' || t.socket.destroyed) return;\n      this.evictable.add(t);",
    replace: "      if (--t.requests > 0 || t.stage !== 'http' || t.socket.destroyed) return;",
    tests: ['test/adversarial/connections.test.ts'],
    testName: 'keep-alive HTTP connections',
  },
  {
    name: 'upgraded-session-not-member',
    guarantee: 'a session upgraded from long-polling to a WebSocket stays authenticated',
    file: 'master/master.ts',
    find: '        guard.member(transport.socket?._socket),',
    replace: '        undefined,',
    tests: ['test/adversarial/connections.test.ts'],
    testName: 'long-polling',
  },
  {
    name: 'run-timeout-runner-only',
    guarantee: 'the master takes back an attempt whose runner says nothing past its run timeout',
    file: 'master/scheduler/transitions.ts',
    find: '    this.timeouts.trackRun(t);\n',
    replace: '',
    tests: ['test/adversarial/swarms.test.ts'],
    testName: 'with no attempt left, the task fails with ETO',
  },
  {
    name: 'slow-readers-unbounded',
    guarantee: 'a connection that stops reading is closed past maxBufferedBytes',
    file: 'master/master.ts',
    find: '    this.slowReaders.attach(this.io);\n',
    replace: '',
    tests: ['test/adversarial/slow-readers.test.ts'],
    testName: '5 feeders that stop reading',
  },
  {
    name: 'loader-traversal',
    guarantee: 'a module name cannot reach a file outside its task folder',
    file: 'runner/loader.ts',
    find: "return rel !== '' && rel !== '..' && !rel.startsWith('..' + path.sep) && !path.isAbsolute(rel);",
    replace: "return rel !== '';",
    tests: ['test/unit/runner-loader.test.ts'],
    testName: 'traversal|symlink',
  },
  // ---- durability ------------------------------------------------------------------------------
  {
    name: 'add-ack-before-durable',
    guarantee: 'an add is acknowledged only once its tasks are in the database',
    file: 'master/scheduler/scheduler.ts',
    find: '      w = await written;\n',
    replace: '      w = { ok: true } as Awaited<typeof written>;\n',
    more: [
      {
        find: '    await this.store.barrier();\n    // Refs of the tasks',
        replace: '    // Refs of the tasks',
      },
    ],
    tests: ['test/integration/store-durability.test.ts'],
    testName: 'not acknowledged while the database is frozen',
  },
  // ---- delayed tasks and backoff times -----------------------------------------------------------
  {
    name: 'delayed-early',
    guarantee: 'a delayed task (runAt, delay) never starts before its time',
    file: 'master/scheduler/policies/delayed.ts',
    find: 'return t.runAt && t.runAt > now ? t.runAt : 0;',
    replace: 'return 0;',
    tests: ['test/unit/scheduler/delayed.test.ts', 'test/integration/delayed.test.ts'],
    testName: 'never before|none of',
  },
  {
    name: 'delayed-not-durable',
    guarantee: "a delayed task's time survives a master restart (recovery restores runAt)",
    file: 'master/scheduler/policies/recovery.ts',
    find: '    runAt: d.runAt,\n',
    replace: '',
    tests: ['test/integration/delayed.test.ts'],
    testName: 'after the restart|takes over',
  },
  {
    name: 'backoff-not-durable',
    guarantee: "a retry's backoff time survives a master restart (stored while ready, restored by recovery)",
    file: 'master/scheduler/policies/recovery.ts',
    find: "    retryAt: d.state === 'ready' ? d.retryAt : null,\n",
    replace: '    retryAt: null,\n',
    more: [
      {
        find: "  t.retryAt = c.state === 'ready' ? (c.retryAt ?? null) : null;\n",
        replace: '  t.retryAt = null;\n',
      },
    ],
    tests: ['test/integration/delayed.test.ts'],
    testName: 'backoff keeps its time',
  },
  // ---- work only where it can run, and never twice ------------------------------------------------
  {
    name: 'tasks-to-runners-without-module',
    guarantee: 'a task is assigned only to a runner that announced its module',
    file: 'master/scheduler/policies/eligibility.ts',
    find: "check: (_ctx, t, r) => (hasModule(r, t.module) ? null : 'NO_MODULE'),",
    replace: 'check: () => null,',
    tests: ['test/integration/module-routing.test.ts'],
    testName: 'all run on the runner that has the module',
  },
  {
    name: 'emodule-counted',
    guarantee: "EMODULE from a runner is that runner's problem: the task is requeued uncounted",
    file: 'master/scheduler/scheduler.ts',
    find: '    else this.requeueUncounted(t);\n  }\n\n  /** A runner announced its modules anew',
    replace:
      '    else this.attemptFailed(t, error, true, moduleHash);\n  }\n\n  /** A runner announced its modules anew',
    tests: ['test/integration/module-routing.test.ts'],
    testName: 'fails to load everywhere',
  },
  {
    name: 'lost-attempt-not-reclaimed',
    guarantee:
      'a runner back after its grace takes back its lost attempt (its finished result accepted) while nobody else has it',
    file: 'master/scheduler/scheduler.ts',
    find: 'if (lost && lost.attempts === ref.attempt && lost.lostFrom === entry.id) {',
    replace: 'if (lost && lost.attempts === ref.attempt && lost.lostFrom === "nobody") {',
    tests: ['test/unit/scheduler/recovery-grace.test.ts'],
  },
  {
    name: 'dependency-results-unbounded',
    guarantee:
      'this.dependencies carries at most maxDependencyBytes of results; the rest are named, not sent',
    file: 'master/scheduler/dependency-results.ts',
    find: '} else if (bytes + found.bytes > maxBytes) {',
    replace: '} else if (bytes + found.bytes > Infinity) {',
    tests: ['test/unit/dependency-results.test.ts'],
  },
  // ---- fair shares -----------------------------------------------------------------------------
  {
    name: 'fair-shares-ignore-group',
    guarantee:
      "within a priority, groups take turns: a group's few tasks are not stuck behind another's large backlog",
    file: 'master/scheduler/core.ts',
    find: 'const e = { priority: t.priority, seq: t.seq, group: t.group ?? null, task: t };',
    replace: 'const e = { priority: t.priority, seq: t.seq, group: null, task: t };',
    tests: ['test/integration/fair-shares.test.ts'],
    testName: 'all of B done before',
  },
  // ---- amplification ---------------------------------------------------------------------------
  {
    name: 'depfailed-embeds-message',
    guarantee: "an EDEPFAILED names its root cause instead of embedding its dependency's whole message",
    file: 'protocol/errors.ts',
    find: "message: cut(err?.message ?? '', ROOT_MESSAGE_CHARS),",
    replace: "message: err?.message ?? '',",
    tests: ['test/adversarial/amplification.test.ts'],
    testName: '800 KB error',
  },
  {
    name: 'error-message-uncapped',
    guarantee: "a task's error message is cut to 16 KiB with a marker",
    file: 'protocol/errors.ts',
    find: '  if (!over) return e;\n',
    replace: '  if (over || !over) return e;\n',
    tests: ['test/adversarial/amplification.test.ts'],
    testName: 'larger than a message',
  },
  {
    name: 'log-lines-unlimited',
    guarantee: 'repeated log lines a client can cause are rate-limited per client and cause',
    file: 'common/log-limit.ts',
    find: '    if (e.lines < this.burst) {\n',
    replace: '    if (e.lines >= 0) {\n',
    tests: ['test/adversarial/log-flood.test.ts'],
    testName: 'new window logs again',
  },
  // ---- what a task can do to its runner --------------------------------------------------------
  {
    name: 'exec-cancel-no-sigterm',
    guarantee: "a cancel sends an exec program's process group SIGTERM before the kill",
    file: 'runner/exec-task.ts',
    find: 'cancel(_key: string, _error: WireError): void {\n    if (!this.exited) this.terminate();',
    replace: 'cancel(_key: string, _error: WireError): void {\n    if (!this.exited) return;',
    tests: ['test/unit/runner-exec.test.ts'],
    testName: 'a cancel sends the program SIGTERM',
  },
  {
    name: 'worker-reports-unbound',
    guarantee: 'a worker cannot start, advance or settle an attempt another worker holds',
    file: 'runner/worker-host.ts',
    find: '        if (!this.keys.has(msg.key)) return this.notHeld(msg.cmd, msg.key);\n',
    replace: '',
    more: [
      {
        find: '        if (!this.keys.delete(msg.key)) return this.notHeld(msg.cmd, msg.key);\n',
        replace: '        this.keys.delete(msg.key);\n',
      },
    ],
    tests: ['test/adversarial/runner-forgery.test.ts'],
    testName: 'another worker',
  },
  {
    name: 'progress-from-any-runner',
    guarantee: 'the master passes progress on only from the runner holding the attempt',
    file: 'master/master.ts',
    find: 'const progress = this.scheduler.progress(r.id, p);',
    replace: 'const progress = this.scheduler.progress(r.id, p) ?? p.progress;',
    tests: ['test/adversarial/runner-forgery.test.ts'],
    testName: 'another runner',
  },
  {
    name: 'task-output-unbudgeted',
    guarantee: "at most 1 MiB of a worker's output is logged per attempt",
    file: 'runner/child-output.ts',
    find: 'if (this.room <= 0 || bytes > this.room) {',
    replace: 'if (this.room < 0 && bytes > this.room) {',
    tests: ['test/adversarial/output-flood.test.ts'],
    testName: 'lines of 1 KiB',
  },
  {
    name: 'worker-channel-unbounded',
    guarantee: "a worker's message to its runner is read only up to the limit",
    file: 'runner/worker-channel.ts',
    find: 'if (this.size + piece.length > max) {',
    replace: 'if (this.size + piece.length > Infinity) {',
    tests: ['test/adversarial/output-flood.test.ts'],
    testName: 'straight to the worker',
  },
  {
    name: 'worker-kill-pid-only',
    guarantee: 'what a task started dies with its worker',
    file: 'runner/child-handle.ts',
    find: "    if (signal === 'SIGKILL') this.reapTree();\n",
    replace: "    if (signal === 'SIGKILL') this.proc.kill('SIGKILL');\n",
    more: [{ find: '        const left = this.reapTree();\n', replace: '        const left = 0;\n' }],
    tests: ['test/adversarial/process-tree.test.ts'],
    testName: 'a cancel kills the worker',
  },
  {
    name: 'thread-timeout-never-terminates',
    guarantee: 'a worker thread stuck in a synchronous loop past its run timeout is terminated and replaced',
    file: 'runner/thread-handle.ts',
    find: '    if (!this.exited) void this.worker.terminate();\n',
    replace: '',
    tests: ['test/unit/runner-pool-thread.test.ts'],
    testName: 'a CPU-bound loop fails with ETO',
  },
  {
    name: 'orphaned-worker-spares-its-group',
    guarantee: 'a worker whose runner vanished kills its process group with it',
    file: 'runner/child-main.ts',
    find: "    process.kill(-process.pid, 'SIGKILL');\n",
    replace: '    process.exit(0);\n',
    more: [
      {
        find: "try { process.kill(-workerData.pid, 'SIGKILL'); }",
        replace: "try { process.kill(workerData.pid, 'SIGKILL'); }",
      },
    ],
    tests: ['test/adversarial/process-tree.test.ts'],
    testName: 'killed outright',
  },
  {
    name: 'result-parsed-with-global-json',
    guarantee: "a task replacing JSON.parse does not change its neighbours' results",
    file: 'runner/child-processor.ts',
    find: 'result: JSONParse(text) as unknown',
    replace: 'result: JSON.parse(text) as unknown',
    tests: ['test/adversarial/process-tree.test.ts'],
    testName: 'replacing JSON.parse',
  },
  // ---- big operations --------------------------------------------------------------------------
  {
    name: 'batch-split-whole-message',
    guarantee: 'the feeder splits a batch by the room one message leaves, not by the whole message size',
    file: 'feeder/batch-split.ts',
    find: '  const room = messageRoom(maxMessageBytes);',
    replace: '  const room = maxMessageBytes;',
    tests: ['test/adversarial/limits.test.ts'],
    testName: 'between the room of one message',
  },
  {
    name: 'feed-replaces-invalid-utf8',
    guarantee:
      'the feed command refuses bytes that are not UTF-8, naming the line, instead of replacing them',
    file: 'feeder/batch-file.ts',
    find: "new TextDecoder('utf-8', { fatal: true })",
    replace: "new TextDecoder('utf-8', { fatal: false })",
    tests: ['test/unit/feeder-feed-cli.test.ts'],
    testName: 'not UTF-8',
  },
  {
    name: 'queue-bytes-unbounded',
    guarantee: 'the bytes of tasks held in memory are bounded by queueLimitBytes',
    file: 'master/scheduler/admission.ts',
    find: '  if (held + bytes <= c.queueLimitBytes) return null;',
    replace: '  if (held + bytes <= Infinity) return null;',
    tests: ['test/adversarial/big-operations.test.ts'],
    testName: 'queueLimitBytes',
  },
  // ---- one master ------------------------------------------------------------------------------
  {
    name: 'lease-wait',
    guarantee: 'a standby takes the lease from a live holder only after it stood still for leaseMs',
    file: 'master/lease.ts',
    find: 'if (!gone && performance.now() - this.seenSince < this.opts.leaseMs) return;',
    replace: 'if (!gone && false) return;',
    tests: ['test/integration/standby.test.ts'],
    testName: 'a second master stands by',
  },
  {
    name: 'lease-fence',
    guarantee: 'a master that lost its lease sends no write (every store write asks the lease first)',
    file: 'master/store/fence.ts',
    find: '        writable()\n',
    replace: '        true\n',
    tests: ['test/integration/store-guarantees.test.ts'],
    testName: 'lost its lease sends no write',
  },
  {
    name: 'fold-epoch-precondition',
    guarantee: "a deposed master's folder never writes over a newer epoch's document (its filter's epoch)",
    file: 'master/store/fold.ts',
    find: 'filter: { _id: t.id, rev: { $lt: rev }, ...fence },',
    replace: 'filter: { _id: t.id, rev: { $lt: rev } },',
    tests: ['test/integration/store-guarantees.test.ts'],
    testName: 'newer epoch',
  },
  // ---- store, API and retention ----------------------------------------------------------------
  {
    name: 'fold-rev-precondition',
    guarantee: "the folder never writes an older state over a newer one in tasks (its filter's rev < new)",
    file: 'master/store/fold.ts',
    find: 'filter: { _id: t.id, rev: { $lt: rev }, ...fence },',
    replace: 'filter: { _id: t.id, ...fence },',
    tests: ['test/integration/store-guarantees.test.ts'],
    testName: 'rev < new',
  },
  {
    name: 'api-runner-filter',
    guarantee: 'GET /api/tasks?runner=R lists only the tasks that ran on R',
    file: 'master/store/queries.ts',
    find: "  if (f.runner) and.push({ 'assigned.who': f.runner });\n",
    replace: '',
    tests: ['test/integration/store-guarantees.test.ts'],
    testName: 'runner=R',
  },
  {
    name: 'retention-count-newest',
    guarantee: 'retention by count removes the oldest final tasks and keeps the newest',
    file: 'master/store/retention.ts',
    find: '.sort({ updated: 1 })',
    replace: '.sort({ updated: -1 })',
    tests: ['test/integration/store-guarantees.test.ts'],
    testName: 'keeps the newest',
  },
  {
    name: 'retention-removes-live',
    guarantee: 'retention never removes a task that is live again in memory (retried)',
    file: 'master/store/retention.ts',
    find: 'n += await this.remove(found.filter((id) => !this.isLive(id)));',
    replace: 'n += await this.remove(found);',
    tests: ['test/integration/store-guarantees.test.ts'],
    testName: 'live again',
  },
  // ---- deduplication ---------------------------------------------------------------------------
  {
    name: 'dedup-match',
    guarantee: 'an add of a dedup key a task holds creates nothing and names that task',
    file: 'master/scheduler/scheduler.ts',
    find: 'const deduped = this.dedup.match(raw, now);',
    replace: 'const deduped = null;',
    tests: ['test/integration/dedup.test.ts'],
    testName: 'create one task',
  },
  {
    name: 'dedup-recovery-kept',
    guarantee: 'a final task inside its dedup ttl keeps its key across a master restart',
    file: 'master/store/recovery.ts',
    find: 'else if (d.dedup) kept.push(',
    replace: 'else if (d.dedup && false) kept.push(',
    tests: ['test/integration/dedup-restart.test.ts'],
  },
  // ---- rate limits and concurrency caps ---------------------------------------------------------
  {
    name: 'limits-rate-window',
    guarantee: 'no window of a rate limit holds more starts than its N, across every runner',
    file: 'master/scheduler/policies/limits.ts',
    find: 'room = Math.min(room, this.rate.n - this.pending - (this.times.length - lo));',
    replace: 'room = Math.min(room, Infinity);',
    tests: ['test/integration/limits.test.ts'],
    testName: 'no second holds more than',
  },
  {
    name: 'limits-keep-place',
    guarantee: 'a task held by a limit goes back to its place among the tasks of its priority',
    file: 'master/scheduler/core.ts',
    find: 'this.ready.push({ priority: t.priority, seq, group: t.group ?? null, task: t });',
    replace: 'this.enqueue(t);',
    tests: ['test/unit/scheduler/limits.test.ts'],
    testName: 'goes back to its place',
  },
  // ---- recurring schedules -----------------------------------------------------------------------
  {
    name: 'schedule-misfire',
    guarantee: "slots missed while no master ran follow the schedule's misfire (skip, once, all)",
    file: 'master/schedules/schedules.ts',
    find: '        catchUp: true,\n',
    replace: '        catchUp: false,\n',
    tests: ['test/integration/schedules-crash.test.ts'],
  },
  {
    name: 'schedule-never-early',
    guarantee: "a schedule's slot never adds its task before the slot's time",
    file: 'master/schedules/schedules.ts',
    find: 't !== null && t <= now && due.length < room',
    replace: 't !== null && t <= now + 1000 && due.length < room',
    tests: ['test/integration/schedules.test.ts'],
    testName: 'never created before it',
  },
];
