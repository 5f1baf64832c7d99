/**
 * `npm run mutate`: breaks each guarantee in test/mutate/mutants.ts on purpose, one at a time, runs
 * only the test files that defend it, and fails if any mutant leaves them green.
 *
 *   npm run mutate                      every mutant
 *   npm run mutate -- --only NAME[,NAME] some of them (names as listed)
 *   npm run mutate -- --list            the mutants and their tests, nothing run
 *   npm run mutate -- --show            the diff each mutant makes, nothing run
 *
 * A mutant is one exact snippet of one source file replaced by a broken one. The source file is
 * changed in place for the run of its tests and restored afterwards — also after Ctrl-C, and if the
 * process died mid-way, at the next start (the original waits in .cache/mutate/).
 *
 * Verdicts, read from jest's JSON report rather than its exit status:
 *   killed    at least one named test failed;
 *   survived  the named tests ran and all passed — the guarantee has no defender: the run fails;
 *   invalid   no test ran (a stale name or file) or a test file did not load (the mutant broke the
 *             syntax, not the behaviour): the run fails too, since it proves nothing.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { MUTANTS, type Mutant } from './mutants';

const out = (line: string) => void process.stdout.write(`${line}\n`);
const err = (line: string) => void process.stderr.write(`${line}\n`);
const ROOT = path.resolve(__dirname, '..', '..');
const PARK = path.join(ROOT, '.cache', 'mutate');
/** One mutant's tests may take this long; a hang counts as killed (a test noticed, by timing out). */
const RUN_TIMEOUT_MS = 150_000;

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

/** The mutated file's original, parked while its tests run. */
function parkedPath(file: string): string {
  return path.join(PARK, file.replace(/[\\/]/g, '__'));
}

/** Puts back any file a previous run left mutated (it was killed before it could restore). */
function restoreLeftovers(): void {
  if (!fs.existsSync(PARK)) return;
  for (const name of fs.readdirSync(PARK)) {
    if (!name.endsWith('.parked')) continue;
    const { file, original } = JSON.parse(fs.readFileSync(path.join(PARK, name), 'utf8')) as {
      file: string;
      original: string;
    };
    fs.writeFileSync(path.join(ROOT, file), original);
    fs.rmSync(path.join(PARK, name));
    out(`mutate: restored ${file}, left mutated by an interrupted run`);
  }
}

/** Checks every mutant's snippet occurs exactly once and its tests exist; returns the problems. */
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

interface JestReport {
  numPassedTests: number;
  numFailedTests: number;
  numRuntimeErrorTestSuites: number;
  testResults: { name: string; message: string; assertionResults: { status: string; fullName: string }[] }[];
}

function runTests(m: Mutant): { verdict: Verdict; why: string } {
  const report = path.join(PARK, 'report.json');
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
  const run = spawnSync(process.execPath, args, {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: RUN_TIMEOUT_MS,
    killSignal: 'SIGKILL',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (run.error && (run.error as NodeJS.ErrnoException).code === 'ETIMEDOUT')
    return { verdict: 'killed', why: `its tests did not finish in ${RUN_TIMEOUT_MS / 1000} s` };
  if (!fs.existsSync(report))
    return { verdict: 'invalid', why: `jest wrote no report: ${(run.stderr ?? '').trim().slice(-600)}` };
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

function apply(m: Mutant): () => void {
  const file = path.join(ROOT, m.file);
  const original = fs.readFileSync(file, 'utf8');
  const parked = parkedPath(m.file) + '.parked';
  fs.mkdirSync(PARK, { recursive: true });
  fs.writeFileSync(parked, JSON.stringify({ file: m.file, original }));
  fs.writeFileSync(
    file,
    edits(m).reduce((text, e) => text.replace(e.find, () => e.replace), original),
  );
  return () => {
    fs.writeFileSync(file, original);
    fs.rmSync(parked, { force: true });
  };
}

function main(): void {
  const argv = process.argv.slice(2);
  const onlyAt = argv.indexOf('--only');
  const only = onlyAt >= 0 ? new Set((argv[onlyAt + 1] ?? '').split(',').filter(Boolean)) : undefined;
  restoreLeftovers();
  const unknown = only ? [...only].filter((n) => !MUTANTS.some((m) => m.name === n)) : [];
  if (unknown.length > 0) {
    err(`mutate: no mutant named ${unknown.join(', ')}`);
    process.exit(2);
  }
  const mutants = only ? MUTANTS.filter((m) => only.has(m.name)) : MUTANTS;
  if (argv.includes('--show')) {
    // Each mutant as the diff it makes.
    for (const m of mutants) {
      const restoreIt = apply(m);
      try {
        const diff = spawnSync('git', ['diff', '--no-color', '--', m.file], { cwd: ROOT, encoding: 'utf8' });
        out(`# ${m.name}: ${m.guarantee}\n${diff.stdout}`);
      } finally {
        restoreIt();
      }
    }
    return;
  }
  if (argv.includes('--list')) {
    for (const m of mutants) out(`${m.name}: ${m.guarantee}\n    ${m.file} · ${m.tests.join(' ')}`);
    return;
  }
  const problems = staleness(mutants);
  if (problems.length > 0) {
    err(`mutate: the list is out of date:\n  ${problems.join('\n  ')}`);
    process.exit(1);
  }

  let restore: (() => void) | undefined;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
    process.on(sig, () => {
      restore?.();
      process.exit(130);
    });

  const started = Date.now();
  const outcomes: Outcome[] = [];
  out(`mutate: ${mutants.length} mutants, each against its own tests`);
  for (const m of mutants) {
    const t = Date.now();
    restore = apply(m);
    let result: { verdict: Verdict; why: string };
    try {
      result = runTests(m);
    } finally {
      restore();
      restore = undefined;
    }
    const o = { mutant: m, ...result, ms: Date.now() - t };
    outcomes.push(o);
    out(`  ${o.verdict.padEnd(8)} ${m.name} (${(o.ms / 1000).toFixed(1)} s): ${o.why}`);
  }
  const bad = outcomes.filter((o) => o.verdict !== 'killed');
  const secs = ((Date.now() - started) / 1000).toFixed(0);
  if (bad.length > 0) {
    err(
      `mutate: ${bad.length} of ${outcomes.length} mutants not killed in ${secs} s:\n` +
        bad.map((o) => `  ${o.mutant.name} (${o.verdict}): ${o.mutant.guarantee}`).join('\n'),
    );
    process.exit(1);
  }
  out(`mutate: all ${outcomes.length} mutants killed in ${secs} s`);
}

main();
