import path from 'node:path';
import { feederConfig } from '../../feeder/config';
import { errorOf } from '../helpers/capture';
import { makeTestCa } from '../helpers/pki';

describe('feeder settings', () => {
  test('defaults to the local master with no token, waited for 5 min (a first start builds its database)', () => {
    expect(feederConfig({}, {})).toEqual({
      options: { master: ['http://127.0.0.1:3232'], connectTimeoutMs: 300_000 },
      batch: undefined,
      log: { format: undefined, level: undefined },
    });
  });

  test('TASKMASTER_MASTER and TASKMASTER_TOKEN are read; flags win', () => {
    const env = { TASKMASTER_MASTER: 'http://m:1', TASKMASTER_TOKEN: 'env-token' };
    expect(feederConfig({}, env).options).toMatchObject({ master: ['http://m:1'], token: 'env-token' });
    expect(
      feederConfig({ master: 'https://n:2', batch: 'nightly', connectTimeout: '500' }, env),
    ).toMatchObject({
      options: { master: ['https://n:2'], token: 'env-token', connectTimeoutMs: 500 },
      batch: 'nightly',
    });
  });

  test('--on-existing is error or skip', () => {
    expect(feederConfig({ onExisting: 'skip' }, {}).onExisting).toBe('skip');
    expect(() => feederConfig({ onExisting: 'ignore' }, {})).toThrow(/--on-existing: .*"ignore"/);
  });

  test('an empty variable counts as unset', () => {
    expect(feederConfig({}, { TASKMASTER_MASTER: '', TASKMASTER_TOKEN: '' }).options).toEqual({
      master: ['http://127.0.0.1:3232'],
      connectTimeoutMs: 300_000,
    });
  });

  test('a bad master URL and a bad timeout are both reported', () => {
    expect(() => feederConfig({ master: 'ftp://x', connectTimeout: '1.5' }, {})).toThrow(
      'invalid feed settings:\n' +
        '  --master: must be an http:// or https:// URL such as http://127.0.0.1:3232 (got "ftp://x")\n' +
        '  --connect-timeout: must be an integer between 1 and 86400000 (got "1.5")',
    );
  });

  test('--master and TASKMASTER_MASTER take several masters separated by commas; a bad one is named with its place', () => {
    expect(feederConfig({ master: 'http://a:3232, http://b:3232' }, {}).options.master).toEqual([
      'http://a:3232',
      'http://b:3232',
    ]);
    expect(feederConfig({}, { TASKMASTER_MASTER: 'http://a:1,https://b:2' }).options.master).toEqual([
      'http://a:1',
      'https://b:2',
    ]);
    expect(() => feederConfig({}, { TASKMASTER_MASTER: 'http://a:1,b:2' })).toThrow(
      'invalid feed settings:\n' +
        '  TASKMASTER_MASTER[1]: "b:2" is not an http:// or https:// URL such as http://127.0.0.1:3232 (got "http://a:1,b:2")',
    );
  });

  test('--ca (or TASKMASTER_CA) gives the PEM of the file; a missing file or one with no certificate is refused', () => {
    const pki = makeTestCa();
    try {
      expect(feederConfig({ ca: pki.caFile }, {}).options.ca).toBe(pki.ca);
      expect(feederConfig({}, { TASKMASTER_CA: pki.caFile }).options.ca).toBe(pki.ca);
      expect(errorOf(() => feederConfig({ ca: '/nowhere.pem' }, {})).message).toContain(
        '--ca: cannot read /nowhere.pem (ENOENT',
      );
      const notPem = path.join(pki.dir, 'server.ext');
      expect(errorOf(() => feederConfig({}, { TASKMASTER_CA: notPem })).message).toContain(
        `TASKMASTER_CA: ${notPem} holds no PEM certificate`,
      );
    } finally {
      pki.remove();
    }
  });
});
