/**
 * The master's options come from one list of declarations: the flags `taskmaster master` reads and
 * its `--help`, the defaults `new Master()` applies, what `/api/config` shows, and the tables of
 * docs/configuration.md (written by `npm run docs:options`, checked here).
 */
import { Command } from 'commander';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { addFlags } from '../../bin/flags';
import { main } from '../../bin/cli';
import { REDACTED, defaultsOf, integer, option, shownOptions } from '../../common/settings';
import { masterConfig, masterSettings } from '../../master/config';
import {
  MASTER_DEFAULTS,
  MASTER_GROUPS,
  MASTER_OPTIONS,
  schedulerOptions,
  shownConfig,
} from '../../master/options';
import { documentedSection, optionsSection, withOptionsSection } from '../../master/options-table';
import { SCHEDULER_OPTIONS } from '../../master/scheduler/options';
import { makeTestCa } from '../helpers/pki';
import { errorOf } from '../helpers/capture';
import { ROOT } from '../helpers/cluster';
import { readDoc } from '../helpers/docs';

/** The master's declarations and one more, the way a policy's file would add it. */
const WITH_TOY = {
  ...MASTER_OPTIONS,
  toyLimit: option(integer(1, 10), {
    flag: '--toy-limit',
    arg: '<n>',
    env: 'TASKMASTER_TOY_LIMIT',
    default: 5,
    group: 'scheduling',
    doc: 'tasks the toy policy lets through at once',
  }),
};

/** `--help` of a command built from these settings, as commander prints it. */
function helpOf(settings: ReturnType<typeof masterSettings>): string {
  return addFlags(new Command('master'), settings).helpInformation();
}

async function masterHelp(): Promise<string> {
  let text = '';
  const write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    text += chunk.toString();
    return true;
  });
  try {
    expect(await main(['node', 'taskmaster', 'master', '--help'])).toBe(0);
  } finally {
    write.mockRestore();
  }
  return text;
}

describe('an option declared once', () => {
  test('a new declaration is a flag (and its variable) the master reads, checked by its schema', () => {
    const read = (flags: Record<string, string>, env: NodeJS.ProcessEnv = {}) =>
      (masterConfig(flags, env, WITH_TOY).options as Record<string, unknown>).toyLimit;
    expect(read({ toyLimit: '7' })).toBe(7);
    expect(read({}, { TASKMASTER_TOY_LIMIT: '3' })).toBe(3);
    expect(read({ toyLimit: '8' }, { TASKMASTER_TOY_LIMIT: '3' })).toBe(8);
    expect(read({})).toBeUndefined();
    expect(errorOf(() => read({ toyLimit: '11' })).message).toContain(
      '--toy-limit: must be an integer between 1 and 10 (got "11")',
    );
    // Without the declaration there is no such option.
    expect(masterConfig({ toyLimit: '7' }, {}).options).toEqual({});
  });

  test('it is in --help with its placeholder, its line, its variable and its default', () => {
    const help = helpOf(masterSettings(WITH_TOY)).replace(/\s+/g, ' ');
    expect(help).toContain(
      '--toy-limit <n> tasks the toy policy lets through at once (env TASKMASTER_TOY_LIMIT; default 5)',
    );
    expect(helpOf(masterSettings()).replace(/\s+/g, ' ')).not.toContain('--toy-limit');
  });

  test('its default is among the defaults', () => {
    expect(defaultsOf(WITH_TOY)).toEqual({ ...MASTER_DEFAULTS, toyLimit: 5 });
    expect(MASTER_DEFAULTS).not.toHaveProperty('toyLimit');
  });

  test('it is a row of the generated docs table, in its group, and a key of what /api/config shows', () => {
    const section = optionsSection(WITH_TOY);
    const scheduling = section.slice(section.indexOf('### Scheduling'), section.indexOf('### Recovery'));
    expect(scheduling).toMatch(
      /^\| `--toy-limit <n>` +\| `TASKMASTER_TOY_LIMIT` \| 5 +\| tasks the toy policy lets through at once +\| `toyLimit` +\|$/m,
    );
    expect(optionsSection()).not.toContain('toy');
    expect(shownOptions(WITH_TOY, { toyLimit: 6 })).toMatchObject({ toyLimit: 6, maxAttempts: null });
  });

  test('a declaration in a group the docs do not have is refused', () => {
    const stray = {
      ...MASTER_OPTIONS,
      stray: option(integer(1), { flag: '--stray', arg: '<n>', group: 'nowhere', doc: 'lost' }),
    };
    expect(() => masterSettings(stray)).toThrow(/stray: group "nowhere" is none of database, network/);
  });
});

describe('the master command and its docs come from the declarations', () => {
  test('`taskmaster master --help` is the help the declarations give, every declared flag in it', async () => {
    const help = await masterHelp();
    expect(help).toContain(helpOf(masterSettings()).split('Options:')[1]);
    for (const d of Object.values(MASTER_OPTIONS)) if (d.flag) expect(help).toContain(d.flag);
  });

  test('docs/configuration.md holds the tables the declarations give (else: npm run docs:options)', () => {
    expect(documentedSection(readDoc('docs/configuration.md'))).toBe(optionsSection());
  });

  test('a changed declaration makes the check fail: its default, its line or its flag', () => {
    const doc = readDoc('docs/configuration.md');
    const { maxAttempts } = MASTER_OPTIONS;
    for (const changed of [
      { ...maxAttempts, default: 4 },
      { ...maxAttempts, doc: 'tries per task' },
      { ...maxAttempts, flag: '--attempts' },
    ])
      expect(documentedSection(doc)).not.toBe(optionsSection({ ...MASTER_OPTIONS, maxAttempts: changed }));
  });

  test('the generated tables are laid out as Prettier lays them out, so formatting leaves them alone', () => {
    const doc = withOptionsSection(readDoc('docs/configuration.md'), optionsSection(WITH_TOY));
    // Prettier's own CLI: its API loads ES modules, which jest's CommonJS runtime cannot.
    const formatted = execFileSync(
      process.execPath,
      [
        require.resolve('prettier/bin/prettier.cjs'),
        '--stdin-filepath',
        path.join(ROOT, 'docs', 'configuration.md'),
      ],
      { input: doc, encoding: 'utf8' },
    );
    expect(documentedSection(formatted)).toBe(optionsSection(WITH_TOY));
  });

  test('every section the declarations use has a title, and every option is in the docs once', () => {
    const section = optionsSection();
    for (const [key, d] of Object.entries(MASTER_OPTIONS)) {
      expect(Object.keys(MASTER_GROUPS)).toContain(d.group);
      expect(section.split(`| \`${key}\``).length - 1).toBe(1);
    }
  });
});

describe('what the master is given', () => {
  test('the scheduler gets exactly the options scheduler/options.ts declares, as the master holds them', () => {
    const opts = { ...MASTER_DEFAULTS, mongoUrl: 'mongodb://x/y', token: 't', maxAttempts: 9 };
    const picked = schedulerOptions(opts);
    expect(Object.keys(picked).sort()).toEqual(Object.keys(SCHEDULER_OPTIONS).sort());
    expect(picked).toMatchObject({ maxAttempts: 9, queueLimit: MASTER_DEFAULTS.queueLimit });
  });

  test('/api/config shows every declared option, secrets redacted: tokens, the TLS key, a database password', () => {
    const ca = makeTestCa();
    try {
      const pair = ca.issue('master');
      const tls = { cert: Buffer.from(pair.cert), key: Buffer.from(pair.key) };
      const shown = shownConfig({
        ...MASTER_DEFAULTS,
        mongoUrl: 'mongodb://app:hunter2@db.example:27017/tm',
        token: 'the-write-token-0123',
        tls,
        selectRunner: () => undefined,
      });
      expect(Object.keys(shown).sort()).toEqual(Object.keys(MASTER_OPTIONS).sort());
      expect(shown).toMatchObject({
        mongoUrl: `mongodb://app:${REDACTED}@db.example:27017/tm`,
        token: REDACTED,
        readToken: null,
        tls: { key: REDACTED, certificate: expect.objectContaining({}) },
        selectRunner: '(function)',
        maxAttempts: 3,
      });
      const text = JSON.stringify(shown);
      for (const secret of ['hunter2', 'the-write-token-0123', 'PRIVATE KEY'])
        expect(text).not.toContain(secret);
    } finally {
      ca.remove();
    }
  });
});
