import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveRunnerOptions, runnerConfig } from '../../runner/config';
import { errorOf } from '../helpers/capture';
import { makeTestCa } from '../helpers/pki';

describe('runner settings', () => {
  let root: string;
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-config-runner-'));
    for (const d of ['tasks', 'a', 'b']) fs.mkdirSync(path.join(root, d));
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  test('without flags or environment nothing is set, so the runner defaults apply', () => {
    const { options, log } = runnerConfig({}, {}, root);
    expect(options).toEqual({});
    expect(log).toEqual({ format: undefined, level: undefined });
    const resolved = resolveRunnerOptions(options);
    expect(resolved.master).toEqual(['http://127.0.0.1:3232']);
    expect(resolved.tasks).toEqual(['tasks']);
    expect(resolved.slots).toBe(resolved.workers);
  });

  test('TASKMASTER_TASKS is a colon-separated list; folders are resolved against the working directory', () => {
    const { options } = runnerConfig({}, { TASKMASTER_TASKS: `a${path.delimiter}b` }, root);
    expect(options.tasks).toEqual([path.join(root, 'a'), path.join(root, 'b')]);
  });

  test('repeated --tasks flags win over the environment, in order', () => {
    const { options } = runnerConfig({ tasks: ['b', 'a'] }, { TASKMASTER_TASKS: 'tasks' }, root);
    expect(options.tasks).toEqual([path.join(root, 'b'), path.join(root, 'a')]);
  });

  test('environment and flags fill the options, flags first', () => {
    const env = {
      TASKMASTER_MASTER: 'http://10.0.0.5:3232',
      TASKMASTER_TOKEN: 'tok',
      TASKMASTER_SLOTS: '8',
      TASKMASTER_WORKERS: '4',
      TASKMASTER_LOG_FORMAT: 'json',
    };
    const { options, log } = runnerConfig(
      { workers: '2', data: '{"gpu":true}', prioritySlots: '{"1":3}', runnerId: 'r1', answerThreshold: '5' },
      env,
      root,
    );
    expect(options).toEqual({
      master: ['http://10.0.0.5:3232'],
      token: 'tok',
      slots: 8,
      workers: 2,
      data: { gpu: true },
      prioritySlots: { '1': 3 },
      runnerId: 'r1',
      answerThreshold: 5,
    });
    expect(log.format).toBe('json');
  });

  test('bad values are reported together, each named by its flag or variable', () => {
    const err = errorOf(() =>
      runnerConfig(
        {
          master: 'localhost:3232',
          tasks: ['nope'],
          slots: 'many',
          data: '{nope',
          prioritySlots: '{"high":3}',
        },
        { TASKMASTER_WORKERS: '0' },
        root,
      ),
    );
    expect(err.code).toBe('EVALIDATION');
    const lines = err.message
      .split('\n')
      .slice(1)
      .map((l) => l.trim());
    expect(lines).toEqual([
      '--master: must be an http:// or https:// URL such as http://127.0.0.1:3232 (got "localhost:3232")',
      `--tasks[0]: no such folder: ${path.join(root, 'nope')} (got ["nope"])`,
      '--slots: must be an integer between 1 and 100000 (got "many")',
      'TASKMASTER_WORKERS: must be an integer between 1 and 1024 (got "0")',
      '--priority-slots: keys must be priorities, e.g. \'{"1":30,"2":20}\' (got "{\\"high\\":3}")',
      '--data: must be a JSON object, e.g. \'{"key":"value"}\' (got "{nope")',
    ]);
  });

  test('a task folder that does not exist is refused at start-up', () => {
    const err = errorOf(() => runnerConfig({ tasks: ['a', 'missing'] }, {}, root));
    expect(err.message).toContain(
      `--tasks[1]: no such folder: ${path.join(root, 'missing')} (got ["a","missing"])`,
    );
    expect(errorOf(() => runnerConfig({}, { TASKMASTER_TASKS: 'gone' }, root)).message).toContain(
      `TASKMASTER_TASKS[0]: no such folder: ${path.join(root, 'gone')}`,
    );
  });

  test('--ca gives the runner the PEM of the file, and resolved options keep it', () => {
    const pki = makeTestCa();
    try {
      const { options } = runnerConfig({ ca: pki.caFile, tasks: ['tasks'] }, {}, root);
      expect(options.ca).toBe(pki.ca);
      expect(resolveRunnerOptions(options).ca).toBe(pki.ca);
    } finally {
      pki.remove();
    }
  });

  test('--data of more than 4 KiB of JSON is refused at start, as the master would refuse the hello', () => {
    expect(() => resolveRunnerOptions({ data: { note: 'x'.repeat(4096) } })).toThrow(
      /data: must be at most 4096 bytes as JSON/,
    );
    expect(resolveRunnerOptions({ data: { note: 'x'.repeat(4000) } }).data).toEqual({
      note: 'x'.repeat(4000),
    });
  });
});
