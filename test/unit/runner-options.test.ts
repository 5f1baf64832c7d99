import { main } from '../../bin/cli';
import { resolveRunnerOptions, runnerConfig } from '../../runner/config';
import { errorOf } from '../helpers/capture';

async function help(): Promise<string> {
  let out = '';
  const o = jest
    .spyOn(process.stdout, 'write')
    .mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  try {
    expect(await main(['node', 'taskmaster', 'runner', '--help'])).toBe(0);
    return out;
  } finally {
    o.mockRestore();
  }
}

describe('runner options: worker recycling', () => {
  test('unset, a child is recycled by memory only, above 1024 MB', () => {
    const resolved = resolveRunnerOptions({});
    expect(resolved.maxTasksPerWorker).toBeUndefined();
    // One task's large allocation must not stay with its child for good.
    expect(resolved.maxWorkerMemoryMb).toBe(1024);
  });

  test('--max-tasks-per-worker and --max-worker-memory become maxTasksPerWorker and maxWorkerMemoryMb', () => {
    const { options } = runnerConfig({ maxTasksPerWorker: '3', maxWorkerMemory: '512' }, {});
    expect(options).toEqual({ maxTasksPerWorker: 3, maxWorkerMemoryMb: 512 });
    expect(resolveRunnerOptions(options)).toMatchObject({ maxTasksPerWorker: 3, maxWorkerMemoryMb: 512 });
  });

  test('zero or a non-integer is refused, named by its flag or option', () => {
    const err = errorOf(() => runnerConfig({ maxTasksPerWorker: '0', maxWorkerMemory: '1.5' }, {}));
    expect(err.message).toContain('--max-tasks-per-worker: must be an integer');
    expect(err.message).toContain('--max-worker-memory: must be an integer');
    expect(errorOf(() => resolveRunnerOptions({ maxWorkerMemoryMb: 0 })).message).toContain(
      'maxWorkerMemoryMb',
    );
  });

  test('taskmaster runner --help lists both flags', async () => {
    const out = await help();
    expect(out).toContain('--max-tasks-per-worker <n>');
    expect(out).toContain('--max-worker-memory <mb>');
  });
});

describe('runner options: exec allow-list', () => {
  test('off unless programs are named; --allow-exec is a comma-separated list', () => {
    expect(resolveRunnerOptions({}).allowExec).toEqual([]);
    expect(runnerConfig({ allowExec: 'node, /bin/echo' }, {}).options).toEqual({
      allowExec: ['node', '/bin/echo'],
    });
  });

  test('an empty name is refused', () => {
    expect(errorOf(() => runnerConfig({ allowExec: 'node,,sh' }, {})).message).toContain(
      '--allow-exec[1]: names programs separated by commas',
    );
  });

  test('taskmaster runner --help lists --allow-exec', async () => {
    expect(await help()).toContain('--allow-exec <programs>');
  });
});

describe('runner options: isolation', () => {
  test('process unless told; --isolation and TASKMASTER_ISOLATION give thread, the flag winning', () => {
    expect(resolveRunnerOptions({}).isolation).toBe('process');
    expect(runnerConfig({ isolation: 'thread' }, {}).options).toEqual({ isolation: 'thread' });
    expect(runnerConfig({}, { TASKMASTER_ISOLATION: 'thread' }).options).toEqual({ isolation: 'thread' });
    expect(runnerConfig({ isolation: 'process' }, { TASKMASTER_ISOLATION: 'thread' }).options).toEqual({
      isolation: 'process',
    });
    expect(resolveRunnerOptions({ isolation: 'thread' }).isolation).toBe('thread');
  });

  test('anything else is refused, named by its flag or option', () => {
    expect(errorOf(() => runnerConfig({ isolation: 'vm' }, {})).message).toContain(
      '--isolation: must be process or thread',
    );
    expect(errorOf(() => resolveRunnerOptions({ isolation: 'vm' as unknown as 'thread' })).message).toContain(
      'isolation',
    );
  });
});
