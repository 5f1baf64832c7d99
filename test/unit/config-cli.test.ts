import { main } from '../../bin/cli';

/** Runs the CLI in-process and returns its exit code and what it wrote. */
async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = jest
    .spyOn(process.stdout, 'write')
    .mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const e = jest
    .spyOn(process.stderr, 'write')
    .mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  try {
    const code = await main(['node', 'taskmaster', ...args]);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe('the taskmaster command line', () => {
  test('--help lists every command and exits 0', async () => {
    const r = await cli('--help');
    expect(r.code).toBe(0);
    for (const c of ['master', 'runner', 'feed', 'db', 'demo'])
      expect(r.out).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
  });

  test('each command has its own --help', async () => {
    const r = await cli('runner', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain('--tasks <dir>');
    expect(r.out).toContain('TASKMASTER_TASKS');
  });

  test('an unknown command is a usage error: exit 2, message and usage on stderr', async () => {
    const r = await cli('frobnicate');
    expect(r.code).toBe(2);
    expect(r.err).toContain("unknown command 'frobnicate'");
    expect(r.out).toBe('');
  });

  test('an unknown flag is a usage error', async () => {
    const r = await cli('master', '--prot', '3000');
    expect(r.code).toBe(2);
    expect(r.err).toContain("unknown option '--prot'");
    expect(r.err).toContain('--port'); // the suggestion
  });

  test('no command at all prints the usage and exits 2', async () => {
    const r = await cli();
    expect(r.code).toBe(2);
    expect(r.err).toContain('Usage: taskmaster');
  });

  test('feed without its file is a usage error', async () => {
    const r = await cli('feed');
    expect(r.code).toBe(2);
    expect(r.err).toContain("missing required argument 'file'");
  });

  test('a bad setting exits 2 with the readable message, before anything starts', async () => {
    const r = await cli('master', '--port', 'abc', '--max-attempts', '0');
    expect(r.code).toBe(2);
    expect(r.err).toContain('--port: must be an integer between 0 and 65535 (got "abc")');
    expect(r.err).toContain('--max-attempts: must be an integer between 1 and 1000 (got "0")');
  });

  test('the master refuses a public address without TLS and a token', async () => {
    const r = await cli('master', '--host', '0.0.0.0', '--mongo-url', 'mongodb://127.0.0.1:1/x');
    expect(r.code).toBe(2);
    expect(r.err).toContain('refusing to listen on 0.0.0.0 without TLS and a token');
  });

  test('runner and db validate their flags too', async () => {
    expect((await cli('runner', '--workers', '0')).err).toContain(
      '--workers: must be an integer between 1 and 1024 (got "0")',
    );
    expect((await cli('db', '--port', 'x')).code).toBe(2);
  });
});
