/**
 * Finds task modules in the task folders, compiles them for the children and notices edits.
 *
 * Hot-loading without restarting children and without memory growth: the parent reads the source,
 * hashes it and compiles it to CommonJS with esbuild (so .ts and ESM .mjs work too); each child gets
 * the compiled code once per hash and keeps only the newest version per module name (see
 * child-processor.ts). The compile step doubles as the guard against half-written files: an edit
 * that does not compile is logged and the previous good version stays in use.
 *
 * Limits of the CommonJS transform: top-level `await` in an ESM task does not compile (EMODULE);
 * modules a task requires are loaded once through Node's own cache and are not hot-reloaded.
 */
import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';
import { promises as fs, type Stats } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { watch, type FSWatcher } from 'chokidar';
import { transformSync } from 'esbuild';
import type { Logger } from '../common/logger';
import { TaskmasterError } from '../protocol/errors';
import { moduleName, TASK_EXTENSIONS, type ModuleInfo } from '../protocol/schemas';

/** One compiled version of a module file, as sent to the children. */
export interface LoadedModule {
  name: string;
  hash: string;
  /** Real path of the file (symlinks resolved); the child compiles the code under this name. */
  path: string;
  code: string;
}

export interface LoaderOptions {
  dirs: string[];
  watch: boolean;
  logger: Logger;
  /**
   * File timestamps are coarse (a kernel tick), so a file changed again within the same tick keeps
   * its mtime. A file modified less than this long before we looked at it is re-read every time.
   */
  racyWindowMs?: number;
  /**
   * A file changed less than this long ago is read only once it has stayed unchanged this long, so
   * an editor's half-written file is not loaded even when it happens to compile. Default 200 ms.
   */
  stableMs?: number;
}

interface Version {
  hash: string;
  code: string;
}

interface FileState {
  stat: string;
  mtimeMs: number;
  checkedAt: number;
  good?: Version;
  bad?: { hash: string; message: string };
}

interface Root {
  dir: string;
  real: string;
}

export class ModuleLoader extends EventEmitter<{ modules: [ModuleInfo[]] }> {
  private roots: Root[] = [];
  private files = new Map<string, FileState>();
  private loading = new Map<string, Promise<Version>>();
  private listed: ModuleInfo[] = [];
  private watcher: FSWatcher | null = null;
  private rescanTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly racyWindowMs: number;
  private readonly stableMs: number;

  constructor(private readonly opts: LoaderOptions) {
    super();
    this.racyWindowMs = opts.racyWindowMs ?? 100;
    this.stableMs = opts.stableMs ?? 200;
  }

  async start(): Promise<void> {
    for (const d of this.opts.dirs) {
      const dir = path.resolve(d);
      const real = await fs.realpath(dir).catch(() => {
        throw new Error(`task folder ${dir} does not exist`);
      });
      this.roots.push({ dir, real });
    }
    this.listed = await this.scan();
    if (this.opts.watch && !this.closed) await this.startWatching();
  }

  /** Modules present in the task folders with the hash of their good version (as announced to the master). */
  modules(): ModuleInfo[] {
    return this.listed;
  }

  /** The current good version of module `name`; throws EMODULE (unrecoverable) when there is none. */
  async resolve(name: string): Promise<LoadedModule> {
    const checked = moduleName.safeParse(name);
    if (!checked.success)
      throw moduleError(`module "${name}": ${checked.error.issues[0]?.message ?? 'invalid name'}`);
    const candidates = TASK_EXTENSIONS.includes(path.extname(name))
      ? [name]
      : TASK_EXTENSIONS.map((e) => name + e);
    for (const root of this.roots) {
      for (const c of candidates) {
        const file = path.join(root.dir, c);
        const real = await realFile(file);
        if (!real) continue;
        if (!inside(root.real, real))
          throw moduleError(`module "${name}" resolves outside its task folder ${root.dir}`);
        const v = await this.load(real);
        return { name, hash: v.hash, path: real, code: v.code };
      }
    }
    throw moduleError(`module "${name}" not found in ${this.roots.map((r) => r.dir).join(', ')}`);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.rescanTimer) clearTimeout(this.rescanTimer);
    this.rescanTimer = null;
    const w = this.watcher;
    this.watcher = null;
    if (w) await w.close();
  }

  /** Reads the file only when its stat changed (or is too recent to trust), compiles only new hashes. */
  private load(real: string): Promise<Version> {
    const pending = this.loading.get(real);
    if (pending) return pending;
    const p = this.doLoad(real).finally(() => this.loading.delete(real));
    this.loading.set(real, p);
    return p;
  }

  private async doLoad(real: string): Promise<Version> {
    const st = await this.settled(real);
    if (!st) {
      this.files.delete(real);
      throw moduleError(`module file ${real} disappeared`);
    }
    const key = statKey(st);
    let f = this.files.get(real);
    if (f && f.stat === key && f.checkedAt - f.mtimeMs > this.racyWindowMs) return current(f, real);

    const checkedAt = Date.now();
    const source = await fs.readFile(real, 'utf8');
    const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
    f ??= { stat: key, mtimeMs: st.mtimeMs, checkedAt };
    Object.assign(f, { stat: key, mtimeMs: st.mtimeMs, checkedAt });
    this.files.set(real, f);
    if (f.good?.hash === hash || f.bad?.hash === hash) return current(f, real);

    try {
      f.good = { hash, code: compile(real, source) };
      f.bad = undefined;
      this.opts.logger.debug('module compiled', { path: real, hash });
    } catch (err) {
      const message = (err as Error).message;
      f.bad = { hash, message };
      this.opts.logger.error(
        f.good ? 'module edit does not compile; keeping the previous version' : 'module does not compile',
        { path: real, hash, kept: f.good?.hash, error: message },
      );
    }
    return current(f, real);
  }

  /**
   * The file's stat once it has not changed for `stableMs` (chokidar's awaitWriteFinish, for a file
   * asked for before the watcher saw it settle): a write in progress keeps changing size and mtime.
   * Gives up waiting after 50 periods, for a file rewritten all the time.
   */
  private async settled(real: string): Promise<Stats | null> {
    let st = await fs.stat(real).catch(() => null);
    for (let i = 0; st && i < 50 && !this.closed; i++) {
      const age = Date.now() - Math.max(st.mtimeMs, st.ctimeMs);
      if (age >= this.stableMs) return st;
      await new Promise((r) => setTimeout(r, Math.max(10, this.stableMs - age)));
      const again = await fs.stat(real).catch(() => null);
      if (again && statKey(again) === statKey(st)) {
        // Unchanged through the wait: settled if the wait covered the whole period.
        if (Date.now() - Math.max(again.mtimeMs, again.ctimeMs) >= this.stableMs) return again;
      }
      st = again;
    }
    return st;
  }

  /** Every module name in the task folders, resolved exactly as a task naming it would be. */
  private async scan(): Promise<ModuleInfo[]> {
    const names = new Set<string>();
    for (const root of this.roots) {
      for (const rel of await listFiles(root.dir)) {
        const name = rel.slice(0, -path.extname(rel).length).split(path.sep).join('/');
        if (moduleName.safeParse(name).success) names.add(name);
      }
    }
    const out: ModuleInfo[] = [];
    for (const name of [...names].sort()) {
      try {
        out.push({ name, hash: (await this.resolve(name)).hash });
      } catch {
        // Outside its folder, or broken with no good version: not announced.
      }
    }
    return out;
  }

  /** Resolves once the watcher has its initial view; earlier changes would be missed otherwise. */
  private startWatching(): Promise<void> {
    const dirs = this.roots.map((r) => r.dir);
    const watcher = watch(dirs, {
      ignoreInitial: true,
      // Announce a changed file only once its writes have stopped.
      awaitWriteFinish: this.stableMs > 0 ? { stabilityThreshold: this.stableMs, pollInterval: 50 } : false,
      // The same entries listFiles() skips; a task folder itself may well be called `.tasks`.
      ignored: (p: string) => {
        if (dirs.includes(p)) return false;
        const base = path.basename(p);
        return base === 'node_modules' || base.startsWith('.');
      },
    });
    const changed = (p: string) => {
      if (TASK_EXTENSIONS.includes(path.extname(p))) this.scheduleRescan();
    };
    watcher.on('add', changed).on('change', changed).on('unlink', changed);
    watcher.on('error', (err) => this.opts.logger.warn('task folder watcher error', { error: String(err) }));
    this.watcher = watcher;
    return new Promise((resolve) => watcher.once('ready', resolve));
  }

  private scheduleRescan(): void {
    if (this.rescanTimer || this.closed) return;
    // Editors write in bursts (truncate, write, rename); one rescan per burst is enough.
    this.rescanTimer = setTimeout(() => {
      this.rescanTimer = null;
      void this.scan().then(
        (list) => {
          if (this.closed || JSON.stringify(list) === JSON.stringify(this.listed)) return;
          this.listed = list;
          this.emit('modules', list);
        },
        (err: unknown) => this.opts.logger.warn('rescanning task folders failed', { error: String(err) }),
      );
    }, 50);
  }
}

function current(f: FileState, real: string): Version {
  if (f.good) return f.good;
  throw moduleError(`module ${real} does not compile: ${f.bad?.message ?? 'unknown error'}`);
}

/**
 * ESM (.mjs, or `import`/`export` in .js/.ts) becomes CommonJS so the child can compile it without
 * Node's ESM loader, whose module map never forgets a version. Inline source maps keep stack traces
 * pointing at the task's own lines.
 */
function compile(file: string, source: string): string {
  const url = pathToFileURL(file).href;
  return transformSync(source, {
    loader: path.extname(file) === '.ts' ? 'ts' : 'js',
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    sourcefile: file,
    sourcemap: 'inline',
    sourcesContent: false,
    logLevel: 'silent',
    define: {
      'import.meta.url': JSON.stringify(url),
      'import.meta.filename': JSON.stringify(file),
      'import.meta.dirname': JSON.stringify(path.dirname(file)),
    },
  }).code;
}

function moduleError(message: string): TaskmasterError & { unrecoverable: true } {
  return Object.assign(new TaskmasterError('EMODULE', message), { unrecoverable: true as const });
}

function statKey(st: Stats): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

/** The file's real path, or null when it is missing or not a regular file. */
async function realFile(file: string): Promise<string | null> {
  try {
    const real = await fs.realpath(file);
    return (await fs.stat(real)).isFile() ? real : null;
  } catch {
    return null;
  }
}

function inside(root: string, real: string): boolean {
  const rel = path.relative(root, real);
  return rel !== '' && rel !== '..' && !rel.startsWith('..' + path.sep) && !path.isAbsolute(rel);
}

/** Task files under `dir`, relative, skipping node_modules and dot entries. */
async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  const entries = await fs.readdir(path.join(dir, prefix), { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (e.name.startsWith('.') || e.name === 'node_modules') continue;
    const rel = path.join(prefix, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(dir, rel)));
    else if ((e.isFile() || e.isSymbolicLink()) && TASK_EXTENSIONS.includes(path.extname(e.name)))
      out.push(rel);
  }
  return out;
}
