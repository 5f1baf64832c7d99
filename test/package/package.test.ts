/**
 * The package as a user gets it: `npm pack` (which builds dist/), the tarball installed into a fresh
 * folder, and there — with nothing of this repository on the path — the CLI, `taskmaster init`, a
 * master and a runner started with `npx taskmaster`, and a TypeScript feeder compiled with `tsc` as
 * CommonJS and as NodeNext ESM, each run to completion against them. The embedded database keeps its
 * data in the project and its build in the user's cache (here a cache folder of the test's own), so
 * a reinstall of node_modules loses no task and rebuilds nothing. And the README's first hour, run
 * as written: its `first-hour` shell blocks in a new folder, with only the package name replaced by
 * the tarball and the port given by the environment variables the configuration documents.
 *
 * Run by `npm run test:package` (a CI step of its own: it needs the npm registry or cache).
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import mongoose from 'mongoose';
import { ROOT, spawnProc, tempDir, type Proc } from '../helpers/cluster';
import { testDbName, testDbUrl } from '../helpers/db';
import { readDoc, readmeSnippets, taggedBlocks } from '../helpers/docs';

const run = promisify(execFile);
type Run = (args: string[], env?: Record<string, string>) => Promise<{ stdout: string; stderr: string }>;
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string };
const versionOf = (dep: string) =>
  (
    JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', dep, 'package.json'), 'utf8')) as {
      version: string;
    }
  ).version;

jest.setTimeout(120_000);

/** Go's build cache as Go resolves it here (empty without Go: the package then needs no build). */
function goCache(): string {
  try {
    return execFileSync('go', ['env', 'GOCACHE'], { encoding: 'utf8', timeout: 30_000 }).trim();
  } catch {
    return '';
  }
}

/** A port nothing listens on now, for a master that takes its port from the environment. */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A shell script run as a user runs it in a terminal, in a process group of its own, so that what it
 * leaves running in the background (`npx taskmaster master &`) can be stopped with it.
 */
function runScript(file: string, cwd: string, env: NodeJS.ProcessEnv) {
  const child = spawn('bash', ['-e', file], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const l of listeners) l();
  });
  const group = child.pid!;
  const alive = () => {
    try {
      process.kill(-group, 0);
      return true;
    } catch {
      return false;
    }
  };
  return {
    output: () => ({ stdout, stderr }),
    /** Resolves once stderr matches `pattern`, or after `timeoutMs` (the assertions say what is missing). */
    stderrMatches: (pattern: RegExp, timeoutMs: number) =>
      new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
          resolve();
        };
        const check = () => {
          if (pattern.test(stderr)) done();
        };
        const timer = setTimeout(done, timeoutMs);
        listeners.add(check);
        check();
      }),
    /** The script's exit code, or null if it did not end within `timeoutMs`. */
    exit: (timeoutMs: number) =>
      new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => resolve(null), timeoutMs);
        child.once('exit', (code) => {
          clearTimeout(timer);
          resolve(code);
        });
      }),
    /** SIGTERM to everything the script started, then SIGKILL to what is left after 20 s. */
    async stop(): Promise<void> {
      if (!alive()) return;
      process.kill(-group, 'SIGTERM');
      for (let waited = 0; alive() && waited < 20_000; waited += 100)
        await new Promise((r) => setTimeout(r, 100));
      if (alive()) process.kill(-group, 'SIGKILL');
    },
  };
}

/** The two ways a user's TypeScript project compiles a feeder script. */
const MODES = {
  // A classic CommonJS project; the package's own declarations are type-checked too.
  cjs: { type: 'commonjs', compilerOptions: { module: 'commonjs', esModuleInterop: true } },
  // An ES module project; skipLibCheck as `tsc --init` sets it.
  esm: { type: 'module', compilerOptions: { module: 'nodenext', skipLibCheck: true } },
};

/** Writes the feeder fixture as a project per mode and compiles them all at once (each takes seconds). */
async function compileFeeders(dir: string, run: Run): Promise<void> {
  const source = fs.readFileSync(path.join(__dirname, 'fixture', 'feed.ts'), 'utf8');
  for (const [mode, m] of Object.entries(MODES)) {
    fs.mkdirSync(path.join(dir, mode));
    fs.writeFileSync(path.join(dir, mode, 'feed.ts'), source);
    fs.writeFileSync(path.join(dir, mode, 'package.json'), JSON.stringify({ type: m.type }));
    const compilerOptions = { target: 'es2022', strict: true, outDir: 'out', rootDir: '..', types: ['node'] };
    fs.writeFileSync(
      path.join(dir, mode, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { ...compilerOptions, ...m.compilerOptions }, files: ['feed.ts'] }),
    );
  }
  await Promise.all(
    Object.keys(MODES).map((mode) =>
      run(['tsc', '-p', mode]).catch((e: Error & { killed?: boolean; stdout?: string; stderr?: string }) => {
        const why = e.killed ? 'timed out' : 'failed';
        throw new Error(`tsc -p ${mode} ${why}:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
      }),
    ),
  );
}

describe(`the packed ${PKG.name} installed into a fresh folder`, () => {
  const dbName = testDbName(__filename);
  let dir: string;
  /** The user's cache folder (XDG_CACHE_HOME) of every command the test runs. */
  let userCache: string;
  let env: Record<string, string>;
  let tarball: string;
  let masterUrl: string;
  /** The feeder compiles, started once the package is installed, while the other tests run. */
  let compiled: Promise<void>;
  const procs: Proc[] = [];
  const scripts: ReturnType<typeof runScript>[] = [];
  /** The installed command itself: `npx taskmaster` is checked once, and costs a second a call. */
  const taskmaster: Run = (args, extra = {}) =>
    run(path.join(dir, 'node_modules', '.bin', 'taskmaster'), args, {
      cwd: dir,
      env: { ...process.env, ...env, ...extra },
      timeout: 60_000,
      encoding: 'utf8',
    });
  const npx: Run = (args, extra = {}) =>
    run('npx', ['--no-install', ...args], {
      cwd: dir,
      env: { ...process.env, ...env, ...extra },
      // Two tsc compiles run at once beside the other tests: on a loaded machine they take minutes.
      timeout: 180_000,
      encoding: 'utf8',
    });

  beforeAll(async () => {
    dir = tempDir('package');
    userCache = path.join(dir, 'user-cache');
    env = {
      XDG_CACHE_HOME: userCache,
      // Go keeps its build cache under XDG_CACHE_HOME too: keep Go's own, or FerretDB compiles cold.
      GOCACHE: goCache(),
      TASKMASTER_CACHE_DIR: '',
      TASKMASTER_DATA: '',
    };
    const packed = await run('npm', ['pack', '--json', '--pack-destination', dir], {
      cwd: ROOT,
      timeout: 90_000,
      encoding: 'utf8',
    });
    // The build's own lines come before the JSON report.
    const report = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('\n[') + 1)) as {
      filename: string;
    }[];
    tarball = path.join(dir, report[0].filename);
    const project = path.join(dir, 'project');
    fs.mkdirSync(project);
    fs.writeFileSync(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'package-check', private: true, type: 'commonjs' }),
    );
    dir = project;
    await run(
      'npm',
      [
        'install',
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        tarball,
        `typescript@${versionOf('typescript')}`,
        `@types/node@${versionOf('@types/node')}`,
      ],
      { cwd: dir, timeout: 90_000, encoding: 'utf8' },
    );
    // The example module the feeders import their types from.
    await taskmaster(['init', 'tasks']);
    compiled = compileFeeders(dir, npx);
    compiled.catch(() => undefined); // reported by the test that awaits it
  });

  afterAll(async () => {
    for (const s of scripts) await s.stop();
    for (const p of procs.reverse()) await p.kill();
    if (dir) fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  });

  test('ships compiled JavaScript with declarations, the built dashboard, and no TypeScript sources', () => {
    const root = path.join(dir, 'node_modules', PKG.name);
    expect(fs.existsSync(path.join(root, 'dist', 'index.js'))).toBe(true);
    expect(fs.existsSync(path.join(root, 'dist', 'index.d.ts'))).toBe(true);
    expect(fs.existsSync(path.join(root, 'dist', 'runner', 'child-main.js'))).toBe(true);
    expect(fs.existsSync(path.join(root, 'bin', 'cli.ts'))).toBe(false);
    expect(fs.existsSync(path.join(root, 'test'))).toBe(false);
    // The dashboard as built static files, every script bundled in (no CDN), and not its sources.
    const page = fs.readFileSync(path.join(root, 'dashboard', 'dist', 'index.html'), 'utf8');
    const scripts = [...page.matchAll(/<script[^>]*src="([^"]+)"/g)].map((m) => m[1]);
    expect(scripts.length).toBeGreaterThan(0);
    for (const src of scripts) expect(fs.existsSync(path.join(root, 'dashboard', 'dist', src))).toBe(true);
    expect(fs.existsSync(path.join(root, 'dashboard', 'src'))).toBe(false);
  });

  test('npx taskmaster --help lists the commands', async () => {
    const { stdout } = await npx(['taskmaster', '--help']);
    for (const c of ['master', 'runner', 'feed', 'init', 'db', 'demo'])
      expect(stdout).toMatch(new RegExp(`\\n  ${c}\\b`));
  });

  test('taskmaster init wrote a tasks folder (in beforeAll), and refuses to overwrite it', async () => {
    expect(fs.readFileSync(path.join(dir, 'tasks', 'greet.ts'), 'utf8')).toContain(
      `import { defineTask } from '${PKG.name}/task'`,
    );
    const again = await taskmaster(['init', 'tasks']).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(again?.code).toBe(1);
    expect(again?.stderr).toContain('already exist; nothing was written');
  });

  test('a master and a runner from the package run the init batch, fed twice with taskmaster feed', async () => {
    // Started through the installed bin rather than npx, which would not pass a signal on to them.
    const bin = path.join(dir, 'node_modules', '.bin', 'taskmaster');
    const master = spawnProc(bin, ['master', '--port', '0'], {
      cwd: dir,
      env: { ...env, MONGO_URL: testDbUrl(dbName) },
    });
    procs.push(master);
    const line = await master.waitFor(/"message":"master listening"[^\n]*/, 60_000);
    masterUrl = /"url":"([^"]+)"/.exec(line)?.[1] ?? '';
    expect(masterUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const runner = spawnProc(bin, ['runner', '--master', masterUrl, '--tasks', 'tasks', '--workers', '1'], {
      cwd: dir,
      env,
    });
    procs.push(runner);
    await runner.waitFor(/"message":"runner ready"/, 60_000);

    for (let i = 0; i < 2; i++) {
      const fed = await taskmaster(['feed', 'tasks/batch.json', '--wait', '--master', masterUrl]);
      expect(fed.stdout).toContain('greet-twice\tdone\t{"greeting":"Hello, again! Hello, again!"');
      expect(fed.stderr.trimEnd().split('\n').pop()).toMatch(/^2 tasks in \d+\.\d s: 2 done, 0 failed/);
    }
  });

  test("the README's first hour runs as written in a new folder: install, init, a master on the embedded database it builds, a runner, the first batch, and its feeder scripts with npx tsx", async () => {
    const readme = readDoc('README.md');
    const blocks = taggedBlocks(readme, 'sh', 'first-hour');
    expect(blocks.length).toBeGreaterThanOrEqual(2);
    const install = `npm install ${PKG.name}\n`;
    expect(blocks[0]).toContain(install);
    // The package is not fetched from the registry: it is the tarball under test.
    const script = blocks
      .join('\n')
      .replace(install, `npm install --prefer-offline --no-audit --no-fund ${tarball}\n`);
    const folder = path.join(path.dirname(dir), 'first-hour');
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 'first-hour.sh'), script);
    const port = await freePort();
    const started = Date.now();
    const session = runScript('first-hour.sh', folder, {
      ...process.env,
      ...env,
      // No database given: the master starts the embedded one, built into the user's cache.
      MONGO_URL: '',
      // The README's default port (3232) may be taken on this machine.
      TASKMASTER_PORT: String(port),
      TASKMASTER_MASTER: `http://127.0.0.1:${port}`,
    });
    scripts.push(session);
    const code = await session.exit(200_000);
    // The script's streams stay open while the master and the runner run: its last lines may come
    // just after it exits.
    await session.stderrMatches(/^\d+ tasks in /m, 5000);
    const { stdout, stderr } = session.output();
    const project = path.join(folder, 'my-tasks');
    // From code, beside the master and the runner still running: each feeder script the README
    // shows, saved under its name and run as it says (`npx tsx feed.ts`).
    const scriptsRun: string[] = [];
    if (code === 0) {
      for (const s of readmeSnippets(readme).filter((x) => x.kind === 'runnable')) {
        fs.writeFileSync(path.join(project, s.file), s.code);
        const ran = await run('npx', ['tsx', s.file], {
          cwd: project,
          env: { ...process.env, ...env, TASKMASTER_MASTER: `http://127.0.0.1:${port}` },
          timeout: 60_000,
          encoding: 'utf8',
        }).then(
          (r) => `exit 0, ${r.stdout}`,
          (e: { code?: number | string; stdout?: string; stderr?: string }) =>
            `exit ${e.code}, ${e.stdout ?? ''}${e.stderr ?? ''}`,
        );
        scriptsRun.push(`${s.file}: ${ran}`);
      }
    }
    await session.stop();
    if (code !== 0)
      throw new Error(
        `the first hour ended with ${code ?? 'a timeout'}:\n${stdout.slice(-4000)}\n${stderr.slice(-4000)}`,
      );
    // Built here, for this first start: the user's cache held no build before.
    expect(stdout).toMatch(/"message":"built FerretDB in \d+ s/);
    expect(stdout).toContain(`"data":"${path.join(project, '.taskmaster', 'db')}"`);
    // What the README shows of the feed's output: its result lines, and its summary last.
    const [shown] = taggedBlocks(readme, 'text', 'first-hour-output');
    const lines = shown.trimEnd().split('\n');
    for (const line of lines.slice(0, -1)) expect(stdout).toContain(`\n${line}\n`);
    const summary = new RegExp(`^${lines[lines.length - 1].replace(/[\d.]+ s:/, '[\\d.]+ s:')}$`);
    expect(stderr.trimEnd().split('\n').pop()).toMatch(summary);
    expect(scriptsRun.length).toBeGreaterThanOrEqual(2);
    for (const r of scriptsRun) expect(r).toMatch(/: exit 0, .*\bdone\b/s);
    process.stderr.write(`first hour: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  }, 240_000);

  test("taskmaster db from the package builds the embedded FerretDB from its own sources into the user's cache and serves it", async () => {
    const bin = path.join(dir, 'node_modules', '.bin', 'taskmaster');
    const db = spawnProc(bin, ['db', '--data', path.join(dir, 'db-files')], { cwd: dir, env });
    procs.push(db);
    const line = await db.waitFor(/MONGO_URL=mongodb:\/\/\S+/, 170_000);
    const conn = await mongoose
      .createConnection(line.slice('MONGO_URL='.length), { dbName: 'pkg' })
      .asPromise();
    try {
      await conn.collection('t').insertOne({ _id: 'x' } as never);
      expect(await conn.collection('t').countDocuments({})).toBe(1);
    } finally {
      await conn.close();
    }
    // Built from the sources the package ships, into the user's cache: not inside node_modules,
    // which `npm ci` deletes.
    const build = path.join(userCache, 'taskmaster', 'bin');
    expect(fs.readdirSync(build).some((f) => f.startsWith('ferretdb-'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'node_modules', PKG.name, '.cache'))).toBe(false);
    expect(db.output()).toContain(`data in ${path.join(dir, 'db-files')}, build in ${build}`);
  }, 180_000);

  test('a TypeScript feeder compiles with tsc as CommonJS and as NodeNext ESM, runs to completion, and runs with npx tsx', async () => {
    expect(masterUrl).toBeTruthy();
    await compiled;
    for (const mode of Object.keys(MODES)) {
      const { stdout } = await run(process.execPath, [path.join(mode, 'out', mode, 'feed.js'), mode], {
        cwd: dir,
        env: { ...process.env, TASKMASTER_MASTER: masterUrl },
        timeout: 30_000,
        encoding: 'utf8',
      });
      expect(stdout).toBe(`result Hello, ${mode}! Hello, ${mode}!\n`);
    }
    // As the README's From code says: `npx tsx feed.ts`, tsx coming with the package.
    const viaTsx = await npx(['tsx', path.join('cjs', 'feed.ts'), 'tsx'], { TASKMASTER_MASTER: masterUrl });
    expect(viaTsx.stdout).toBe('result Hello, tsx! Hello, tsx!\n');
  });
  test('a master without MONGO_URL keeps its tasks in ./.taskmaster/db of the project, says so, and a reinstall of node_modules (npm ci) loses none and rebuilds nothing', async () => {
    // The feeders compile in node_modules' typescript: done before node_modules goes.
    await compiled;
    const bin = path.join(dir, 'node_modules', '.bin', 'taskmaster');
    const startMaster = async () => {
      const master = spawnProc(bin, ['master', '--port', '0'], { cwd: dir, env: { ...env, MONGO_URL: '' } });
      procs.push(master);
      const { data, build } = JSON.parse(
        await master.waitFor(/\{[^\n]*"message":"database ready"[^\n]*\}/, 170_000),
      ) as { data: string; build: string };
      const ready = { data, build };
      const url = /"url":"([^"]+)"/.exec(await master.waitFor(/"message":"master listening"[^\n]*/))?.[1];
      return { master, ready, url: url ?? '' };
    };

    const first = await startMaster();
    expect(first.ready.data).toBe(path.join(dir, '.taskmaster', 'db'));
    expect(first.ready.build.startsWith(path.join(userCache, 'taskmaster', 'bin', 'ferretdb-'))).toBe(true);
    const runner = spawnProc(bin, ['runner', '--master', first.url, '--tasks', 'tasks', '--workers', '1'], {
      cwd: dir,
      env,
    });
    procs.push(runner);
    await runner.waitFor(/"message":"runner ready"/, 60_000);
    await taskmaster(['feed', 'tasks/batch.json', '--wait', '--batch', 'kept', '--master', first.url]);
    await runner.kill();
    expect(await first.master.kill()).toBe(0);

    const marker = path.join(dir, 'node_modules', PKG.name, 'marker');
    fs.writeFileSync(marker, '');
    await run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], {
      cwd: dir,
      env: { ...process.env, ...env },
      timeout: 90_000,
      encoding: 'utf8',
    });
    expect(fs.existsSync(marker)).toBe(false); // the package folder was really replaced

    const second = await startMaster();
    expect(second.ready).toEqual(first.ready);
    expect(second.master.output()).not.toContain('building FerretDB');
    const got = await taskmaster(['get', 'kept/greet-twice', '--json', '--master', second.url]);
    expect(JSON.parse(got.stdout)).toMatchObject({ id: 'kept/greet-twice', state: 'done' });
  }, 300_000);
});
