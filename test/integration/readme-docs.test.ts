/**
 * The documentation against the code: every command's flags (its `--help`) against its table in
 * docs/configuration.md and the README's CLI at a glance, the error codes and HTTP routes of
 * docs/protocol.md against the registry and a running master, and the collections
 * docs/architecture.md describes against the ones the master creates.
 */
import mongoose from 'mongoose';
import { main } from '../../bin/cli';
import { ERROR_CODES } from '../../protocol/errors';
import type { Master } from '../../master/master';
import { startMaster } from '../helpers/cluster';
import { testDbName, testMongoUrl } from '../helpers/db';
import { readDoc, section as sectionOf } from '../helpers/docs';

const README = readDoc('README.md');
const CONFIGURATION = readDoc('docs/configuration.md');
const PROTOCOL = readDoc('docs/protocol.md');
const ARCHITECTURE = readDoc('docs/architecture.md');

/** `taskmaster COMMAND --help`, run in this process (commander writes it to stdout). */
async function help(...command: string[]): Promise<string> {
  let text = '';
  const write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    text += chunk.toString();
    return true;
  });
  try {
    expect(await main(['node', 'taskmaster', ...command, '--help'])).toBe(0);
  } finally {
    write.mockRestore();
  }
  return text;
}

/** The long flags a `--help` lists, without --help itself. */
function helpFlags(text: string): string[] {
  const flags = [...text.matchAll(/^ {2}(?:-\w, )?(--[a-z][a-z-]*)/gm)].map((m) => m[1]);
  return flags.filter((f) => f !== '--help').sort();
}

/** A section of docs/configuration.md: one command's, from its heading to the next. */
const configSection = (heading: string): string => sectionOf(CONFIGURATION, heading, 'docs/configuration.md');

/** The commands' headings of docs/configuration.md (`` `taskmaster master` `` …). */
const configHeadings = (): string[] => [...CONFIGURATION.matchAll(/^## (.+)$/gm)].map((m) => m[1]);

/** The commands `taskmaster --help` lists. */
async function commandsOfHelp(): Promise<string[]> {
  return [...(await help()).matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]).filter((c) => c !== 'help');
}

/** The flags in the first column of a section's table. */
function tableFlags(text: string): string[] {
  return [...text.matchAll(/^\| `(--[a-z][a-z-]*)/gm)].map((m) => m[1]).sort();
}

/** Each flag's default in a `--help` text, as `(… default X)` or `(… default: X)` says it. */
function helpDefaults(text: string): Map<string, string> {
  // Descriptions wrap onto lines indented to their column: join them first.
  const joined = text.replace(/\n {10,}/g, ' ');
  return new Map(
    [...joined.matchAll(/^ {2}(?:-\w, )?(--[a-z][a-z-]*)[^\n]*?\bdefault:? ([^;)\n]+)/gm)].map((m) => [
      m[1],
      m[2].trim(),
    ]),
  );
}

/** Each flag's default cell (the third column) in a section's table. */
function tableDefaults(text: string): Map<string, string> {
  return new Map(
    [...text.matchAll(/^\| `(--[a-z][a-z-]*)[^|]*\|[^|]*\|([^|]*)\|/gm)].map((m) => [m[1], m[2].trim()]),
  );
}

const normal = (s: string): string => s.replace(/`/g, '').trim().toLowerCase();

describe('the documentation matches the code', () => {
  test('the error codes docs/protocol.md lists are exactly the registered ones', () => {
    const start = PROTOCOL.indexOf('Codes (`protocol/errors.ts`):');
    expect(start).toBeGreaterThan(0);
    const paragraph = PROTOCOL.slice(start, PROTOCOL.indexOf('\n\n', start));
    const listed = [...new Set([...paragraph.matchAll(/`(E[A-Z]+)`/g)].map((m) => m[1]))].sort();
    expect(listed).toEqual(Object.keys(ERROR_CODES).sort());
  });

  test('every command has a section in docs/configuration.md whose table lists exactly its --help flags', async () => {
    const commands = await commandsOfHelp();
    expect(commands).toEqual(
      expect.arrayContaining([
        'master',
        'runner',
        'feed',
        'init',
        'db',
        'demo',
        'status',
        'drain',
        'get',
        'ls',
        'retry',
        'cancel',
        'watch',
      ]),
    );
    const headings = configHeadings();
    const mismatches: string[] = [];
    // One at a time: each run captures stdout.
    for (const h of headings) {
      const named = [...h.matchAll(/`taskmaster ([a-z]+)/g)].map((m) => m[1]);
      const fromHelp = [...new Set((await Promise.all(named.map((c) => help(c)))).flatMap(helpFlags))].sort();
      const documented = tableFlags(configSection(`## ${h}`));
      if (JSON.stringify(fromHelp) !== JSON.stringify(documented))
        mismatches.push(
          `${h}: --help has ${fromHelp.join(' ')}; docs/configuration.md has ${documented.join(' ')}`,
        );
    }
    expect(mismatches).toEqual([]);
    const documentedCommands = headings.flatMap((h) =>
      [...h.matchAll(/`taskmaster ([a-z]+)/g)].map((m) => m[1]),
    );
    expect(commands.filter((c) => !documentedCommands.includes(c))).toEqual([]);
  });

  test('every default a --help names is the default the docs/configuration.md table gives for that flag', async () => {
    const mismatches: string[] = [];
    for (const h of configHeadings()) {
      const documented = tableDefaults(configSection(`## ${h}`));
      for (const command of [...h.matchAll(/`taskmaster ([a-z]+)/g)].map((m) => m[1])) {
        for (const [flag, said] of helpDefaults(await help(command))) {
          // The first part of the help's default ("127.255.255.255, this machine only") must be the table's.
          const head = normal(said.split(',')[0]);
          const cell = documented.get(flag);
          if (cell === undefined || !normal(cell).includes(head))
            mismatches.push(`${command} ${flag}: --help says "${said}", the table "${cell ?? '(no row)'}"`);
        }
      }
    }
    expect(mismatches).toEqual([]);
  });

  test("every command --help lists is in the README's CLI at a glance, and every command there exists", async () => {
    const glance = sectionOf(README, '## The CLI at a glance', 'README.md');
    const listed = [
      ...new Set(
        [...glance.matchAll(/^\| `taskmaster ([a-z]+)|, `taskmaster ([a-z]+)/gm)].map((m) => m[1] ?? m[2]),
      ),
    ];
    const commands = await commandsOfHelp();
    expect(commands.length).toBeGreaterThanOrEqual(13);
    expect(commands.filter((c) => !listed.includes(c))).toEqual([]);
    expect(listed.filter((c) => !commands.includes(c))).toEqual([]);
  });

  describe('against a running master', () => {
    const dbName = testDbName('readme-docs');
    let master: Master;
    beforeAll(async () => {
      master = await startMaster(dbName);
    });
    afterAll(async () => {
      await master?.close();
    });

    test('every HTTP route in docs/protocol.md has a handler', async () => {
      const routes = [...PROTOCOL.matchAll(/^\| `(GET|POST|DELETE) (\/[^`?]*)(?:\?[^`]*)?`/gm)].map((m) => ({
        method: m[1],
        path: m[2].replace(/\b(ID|KEY)\b/g, 'nobody'),
      }));
      expect(routes.length).toBeGreaterThanOrEqual(9);
      const unrouted: string[] = [];
      for (const r of routes) {
        const res = await fetch(new URL(r.path, master.url), { method: r.method });
        // Some routes answer text (/metrics) or HTML (/); an unknown route answers JSON "no route".
        const text = await res.text();
        const body = (text.startsWith('{') ? JSON.parse(text) : {}) as {
          error?: { code?: string; message?: string };
        };
        if (body.error?.code === 'ENOTFOUND' && body.error.message?.startsWith('no route'))
          unrouted.push(`${r.method} ${r.path}`);
      }
      expect(unrouted).toEqual([]);
    });

    test('the collections docs/architecture.md describes are the ones the master creates', async () => {
      const documented = [...ARCHITECTURE.matchAll(/^- `([a-z_]+)` —/gm)].map((m) => m[1]).sort();
      const conn = await mongoose.createConnection(testMongoUrl(), { dbName }).asPromise();
      try {
        const created = (await conn.db!.listCollections().toArray()).map((c) => c.name).sort();
        expect(documented).toEqual(created);
        expect(ARCHITECTURE).toContain(
          `MongoDB: ${['tasks', 'task_journal', 'allocations', 'leases'].join(', ')}`,
        );
      } finally {
        await conn.close();
      }
    });
  });
});
