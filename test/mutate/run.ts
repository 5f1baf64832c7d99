/**
 * `npm run mutate`: breaks each guarantee in test/mutate/mutants.ts on purpose, one at a time, runs
 * only the test files that defend it, and fails if any mutant leaves them green.
 *
 *   npm run mutate                      every mutant
 *   npm run mutate -- --only NAME[,NAME] some of them (names as listed)
 *   npm run mutate -- --jobs N          N mutants at once (default 2; MUTATE_JOBS)
 *   npm run mutate -- --list            the mutants and their tests, nothing run
 *   npm run mutate -- --show            the diff each mutant makes, nothing run
 *
 * A mutant is one or more exact snippets of one source file replaced by broken ones. It is applied to
 * a copy of the project (.cache/mutate/tree-N, sharing node_modules and the database build), never to
 * the working tree, so an interrupted run leaves nothing broken; each copy runs one mutant at a time.
 *
 * Verdicts, read from jest's JSON report rather than its exit status:
 *   killed    at least one named test failed;
 *   survived  the named tests ran and all passed — the guarantee has no defender: the run fails;
 *   invalid   no test ran (a stale name or file) or a test file did not load (the mutant broke the
 *             syntax, not the behaviour): the run fails too, since it proves nothing.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MUTANTS, type Mutant } from './mutants';

const out = (line: string) => void process.stdout.write(`${line}\n`);
const err = (line: string) => void process.stderr.write(`${line}\n`);
const ROOT = path.resolve(__dirname, '..', '..');
const WORK = path.join(ROOT, '.cache', 'mutate');
/** One mutant's tests may take this long; a hang counts as killed (a test noticed, by timing out). */
const RUN_TIMEOUT_MS = 180_000;
/** Not copied into a tree: installed or built things, shared (node_modules) or not needed. */
const NOT_COPIED = new Set(['node_modules', '.cache', '.git', 'dist', 'coverage', '.taskmaster']);

/** Jest runs in progress, each leading its own process group. */
const running = new Set<number>();

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    /* gone already */
  }
}

type Verdict = 'killed' | 'survived' | 'invalid';

interface Outcome {
  mutant: Mutant;
  verdict: Verdict;
  why: string;
  ms: number;
}

function edits(m: Mutant): { find: string; replace: string }[] {
  return [{ find: m.find, replace: m.replace }, ...(m.more ?? [])];
}

function mutated(m: Mutant, original: string): string {
  return edits(m).reduce((text, e) => text.replace(e.find, () => e.replace), original);
}

/** Checks every mutant's snippets occur exactly once and its tests exist; returns the problems. */
function staleness(mutants: Mutant[]): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  for (const m of mutants) {
    if (names.has(m.name)) problems.push(`${m.name}: the name is used twice`);
    names.add(m.name);
    const file = path.join(ROOT, m.file);
    if (!fs.existsSync(file)) {
      problems.push(`${m.name}: no file ${m.file}`);
      continue;
    }
    const text = fs.readFileSync(file, 'utf8');
    for (const e of edits(m)) {
      const count = text.split(e.find).length - 1;
      if (count !== 1)
        problems.push(
          `${m.name}: a snippet occurs ${count} times in ${m.file}, not once: ${e.find.trim().slice(0, 60)}`,
        );
      if (e.find === e.replace) problems.push(`${m.name}: a replacement is its snippet itself`);
    }
    for (const t of m.tests)
      if (!fs.existsSync(path.join(ROOT, t))) problems.push(`${m.name}: no test file ${t}`);
  }
  return problems;
}

/** A fresh copy of the project's sources at .cache/mutate/tree-N, with node_modules linked. */
function makeTree(n: number): string {
  const tree = path.join(WORK, `tree-${n}`);
  fs.rmSync(tree, { recursive: true, force: true });
  fs.mkdirSync(tree, { recursive: true });
  for (const name of fs.readdirSync(ROOT)) {
    if (NOT_COPIED.has(name)) continue;
    fs.cpSync(path.join(ROOT, name), path.join(tree, name), {
      recursive: true,
      filter: (src) => !src.split(path.sep).includes('node_modules'),
    });
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(tree, 'node_modules'), 'dir');
  return tree;
}

interface JestReport {
  numPassedTests: number;
  numFailedTests: number;
  numRuntimeErrorTestSuites: number;
  testResults: { name: string; message: string; assertionResults: { status: string; fullName: string }[] }[];
}

async function runTests(m: Mutant, tree: string): Promise<{ verdict: Verdict; why: string }> {
  const report = path.join(tree, '.cache', 'mutate-report.json');
  fs.mkdirSync(path.dirname(report), { recursive: true });
  fs.rmSync(report, { force: true });
  const args = [
    require.resolve('jest/bin/jest'),
    '--ci',
    '--silent',
    '--json',
    `--outputFile=${report}`,
    ...(m.testName ? ['--testNamePattern', m.testName] : []),
    ...m.tests,
  ];
  const child = spawn(process.execPath, args, {
    cwd: tree,
    // The copy has no build cache of its own: the database build is the project's.
    env: {
      ...process.env,
      TASKMASTER_CACHE_DIR: process.env.TASKMASTER_CACHE_DIR ?? path.join(ROOT, '.cache'),
      // What a mutant breaks usually shows as a wait that times out (test/helpers/wait.ts).
      TASKMASTER_TEST_WAIT_MS: process.env.TASKMASTER_TEST_WAIT_MS ?? '20000',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  running.add(child.pid!);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => void (stderr = (stderr + d.toString()).slice(-4000)));
  const timedOut = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => {
      // The whole group: jest, its workers, and the masters and databases they started.
      killGroup(child.pid!);
      resolve(true);
    }, RUN_TIMEOUT_MS);
    child.on('exit', () => {
      running.delete(child.pid!);
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (timedOut) return { verdict: 'killed', why: `its tests did not finish in ${RUN_TIMEOUT_MS / 1000} s` };
  if (!fs.existsSync(report))
    return { verdict: 'invalid', why: `jest wrote no report: ${stderr.trim().slice(-600)}` };
  const r = JSON.parse(fs.readFileSync(report, 'utf8')) as JestReport;
  if (r.numRuntimeErrorTestSuites > 0) {
    const broken = r.testResults.find((s) => s.assertionResults.length === 0 && s.message);
    return {
      verdict: 'invalid',
      why: `a test file did not load: ${broken?.message.split('\n').slice(0, 3).join(' ') ?? '?'}`,
    };
  }
  if (r.numFailedTests > 0) {
    const failed = r.testResults.flatMap((s) => s.assertionResults.filter((a) => a.status === 'failed'));
    return {
      verdict: 'killed',
      why: `failed: ${failed[0].fullName}${failed.length > 1 ? ` (+${failed.length - 1})` : ''}`,
    };
  }
  if (r.numPassedTests === 0) return { verdict: 'invalid', why: 'no test ran (stale test name or file?)' };
  return { verdict: 'survived', why: `${r.numPassedTests} tests passed with the guarantee broken` };
}

/** Applies `m` in `tree`, runs its tests there, and puts the file back. */
async function trial(m: Mutant, tree: string): Promise<Outcome> {
  const t = Date.now();
  const file = path.join(tree, m.file);
  const original = fs.readFileSync(file, 'utf8');
  fs.writeFileSync(file, mutated(m, original));
  try {
    return { mutant: m, ...(await runTests(m, tree)), ms: Date.now() - t };
  } finally {
    fs.writeFileSync(file, original);
  }
}

function option(argv: string[], name: string): string | undefined {
  const at = argv.indexOf(name);
  return at >= 0 ? argv[at + 1] : undefined;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const onlyArg = option(argv, '--only');
  const only = onlyArg !== undefined ? new Set(onlyArg.split(',').filter(Boolean)) : undefined;
  const unknown = only ? [...only].filter((n) => !MUTANTS.some((m) => m.name === n)) : [];
  if (unknown.length > 0) {
    err(`mutate: no mutant named ${unknown.join(', ')}`);
    return 2;
  }
  const jobs = Number(option(argv, '--jobs') ?? process.env.MUTATE_JOBS ?? 2);
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > os.cpus().length * 4) {
    err(`mutate: --jobs must be an integer from 1 to ${os.cpus().length * 4}`);
    return 2;
  }
  const mutants = only ? MUTANTS.filter((m) => only.has(m.name)) : MUTANTS;
  if (argv.includes('--list')) {
    for (const m of mutants) out(`${m.name}: ${m.guarantee}\n    ${m.file} · ${m.tests.join(' ')}`);
    return 0;
  }
  const problems = staleness(mutants);
  if (problems.length > 0) {
    err(`mutate: the list is out of date:\n  ${problems.join('\n  ')}`);
    return 1;
  }
  if (argv.includes('--show')) {
    for (const m of mutants) {
      const file = path.join(ROOT, m.file);
      const diff = spawnSync('diff', ['-u', '--label', `a/${m.file}`, '--label', `b/${m.file}`, file, '-'], {
        input: mutated(m, fs.readFileSync(file, 'utf8')),
        encoding: 'utf8',
      });
      out(`# ${m.name}: ${m.guarantee}\n${diff.stdout}`);
    }
    return 0;
  }

  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.on(sig, () => {
      for (const pid of running) killGroup(pid);
      process.exit(130);
    });
  const started = Date.now();
  const trees = Array.from({ length: Math.min(jobs, mutants.length) }, (_, i) => makeTree(i));
  out(`mutate: ${mutants.length} mutants, each against its own tests, ${trees.length} at a time`);
  const queue = [...mutants];
  const outcomes: Outcome[] = [];
  await Promise.all(
    trees.map(async (tree) => {
      for (let m = queue.shift(); m; m = queue.shift()) {
        const o = await trial(m, tree);
        outcomes.push(o);
        out(`  ${o.verdict.padEnd(8)} ${m.name} (${(o.ms / 1000).toFixed(1)} s): ${o.why}`);
      }
    }),
  );
  for (const tree of trees) fs.rmSync(tree, { recursive: true, force: true });
  const bad = outcomes.filter((o) => o.verdict !== 'killed');
  const secs = ((Date.now() - started) / 1000).toFixed(0);
  if (bad.length > 0) {
    err(
      `mutate: ${bad.length} of ${outcomes.length} mutants not killed in ${secs} s:\n` +
        bad.map((o) => `  ${o.mutant.name} (${o.verdict}): ${o.mutant.guarantee}`).join('\n'),
    );
    return 1;
  }
  out(`mutate: all ${outcomes.length} mutants killed in ${secs} s`);
  return 0;
}

void main().then((code) => process.exit(code));
