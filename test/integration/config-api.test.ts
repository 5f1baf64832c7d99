/**
 * `GET /api/config` on a master started by the CLI: the options in effect, each declared one, as the
 * flags set them and the defaults fill them, behind the token like the rest of the API, and never a
 * secret in clear.
 */
import { MASTER_DEFAULTS, MASTER_OPTIONS } from '../../master/options';
import { spawnMaster, type MasterProcess } from '../helpers/cluster';
import { testDbName } from '../helpers/db';

const TOKEN = 'config-write-token-0123456789';
const READ_TOKEN = 'config-read-token-0123456789';

describe('GET /api/config', () => {
  let master: MasterProcess;
  beforeAll(async () => {
    master = await spawnMaster(testDbName(__filename), [
      '--token',
      TOKEN,
      '--read-token',
      READ_TOKEN,
      '--max-attempts',
      '7',
      '--retain',
      '12h',
      '--allow-origin',
      'https://dash.example:8443',
    ]);
  });
  afterAll(async () => {
    await master?.kill();
  });

  const get = (token?: string) =>
    fetch(new URL('/api/config', master.url), {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
    });

  test('without a token it is refused like the rest of the API', async () => {
    const res = await get();
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('EAUTH');
    expect((await get('not-the-token-at-all-000')).status).toBe(401);
  });

  test('it shows what the flags set and the defaults the rest, with the tokens redacted', async () => {
    const res = await get(TOKEN);
    expect(res.status).toBe(200);
    const text = await res.text();
    const { options } = JSON.parse(text) as { options: Record<string, unknown> };
    expect(Object.keys(options).sort()).toEqual(Object.keys(MASTER_OPTIONS).sort());
    expect(options).toMatchObject({
      maxAttempts: 7,
      retainMs: 12 * 3_600_000,
      allowOrigins: ['https://dash.example:8443'],
      port: master.port,
      token: '[redacted]',
      readToken: '[redacted]',
      queueLimit: MASTER_DEFAULTS.queueLimit,
      // Derived at start from the message limit, as the master applies it.
      maxTaskBytes: 1_032_192,
      tls: null,
    });
    expect(text).not.toContain(TOKEN);
    expect(text).not.toContain(READ_TOKEN);
  });

  test('the read-only token may see it too: it is a GET and holds no secret', async () => {
    const res = await get(READ_TOKEN);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { options: { maxAttempts: number } }).options.maxAttempts).toBe(7);
  });
});
