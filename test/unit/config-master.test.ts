import { databaseName, isLoopback, masterConfig } from '../../master/config';
import { Master } from '../../master/master';
import { MASTER_DEFAULTS } from '../../master/options';
import { TaskmasterError } from '../../protocol/errors';
import { errorOf } from '../helpers/capture';
import { makeTestCa, type Issued, type TestCa } from '../helpers/pki';

describe('master settings', () => {
  test('without flags or environment nothing is set, so the master applies its defaults, and no database URL is set', () => {
    const { options, log } = masterConfig({}, {});
    expect(options).toEqual({});
    const master = new Master({ mongoUrl: 'mongodb://127.0.0.1:1/none', ...options });
    expect(master.opts).toMatchObject({ ...MASTER_DEFAULTS, port: 3232, host: '127.0.0.1', maxAttempts: 3 });
    expect(master.opts.insecure).toBe(false);
    expect(master.opts.token).toBeUndefined();
    expect(log).toEqual({ format: undefined, level: undefined });
  });

  test('environment variables are read, and flags win over them', () => {
    const env = {
      MONGO_URL: 'mongodb://db:27017/tm',
      TASKMASTER_PORT: '4000',
      TASKMASTER_HOST: '127.0.0.2',
      TASKMASTER_TOKEN: 'from-env',
      TASKMASTER_LOG_FORMAT: 'json',
      TASKMASTER_LOG_LEVEL: 'debug',
    };
    const fromEnv = masterConfig({}, env);
    expect(fromEnv.options).toMatchObject({
      mongoUrl: 'mongodb://db:27017/tm',
      port: 4000,
      host: '127.0.0.2',
      token: 'from-env',
    });
    expect(fromEnv.log).toEqual({ format: 'json', level: 'debug' });

    const flagged = masterConfig(
      { port: '5000', token: 'from-flag', logFormat: 'pretty', mongoUrl: 'mongodb://other/x' },
      env,
    );
    expect(flagged.options).toMatchObject({
      port: 5000,
      token: 'from-flag',
      mongoUrl: 'mongodb://other/x',
      host: '127.0.0.2',
    });
    expect(flagged.log.format).toBe('pretty');
  });

  test('a bad port is named by the flag, with the value given', () => {
    const err = errorOf(() => masterConfig({ port: 'abc' }, {}));
    expect(err).toBeInstanceOf(TaskmasterError);
    expect(err.code).toBe('EVALIDATION');
    expect(err.message).toContain('--port: must be an integer between 0 and 65535 (got "abc")');
  });

  test('--group-weight NAME=W, repeated, gives groupWeights; a bad pair is named by its flag and place', () => {
    expect(masterConfig({ groupWeight: ['big=3', 'slow=0.5'] }, {}).options.groupWeights).toEqual({
      big: 3,
      slow: 0.5,
    });
    const err = errorOf(() => masterConfig({ groupWeight: ['big=3', 'small', 'x=0'] }, {}));
    expect(err.message).toContain('--group-weight[1]: must be NAME=WEIGHT, e.g. big=3');
    expect(err.message).toContain('--group-weight[2]: weight of group "x" must be a number above 0');
  });

  test('a bad value from the environment is named by its variable', () => {
    const err = errorOf(() => masterConfig({}, { TASKMASTER_PORT: '70000' }));
    expect(err.message).toContain('TASKMASTER_PORT: must be an integer between 0 and 65535 (got "70000")');
  });

  test('every bad setting is reported at once, one per line', () => {
    const err = errorOf(() =>
      masterConfig(
        { port: '-1', maxAttempts: '0', logFormat: 'xml' },
        { MONGO_URL: 'postgres://x', TASKMASTER_LOG_LEVEL: 'loud' },
      ),
    );
    const lines = err.message
      .split('\n')
      .slice(1)
      .map((l) => l.trim());
    // In the order of --help: the database first.
    expect(lines).toEqual([
      'MONGO_URL: must be a MongoDB URL such as mongodb://127.0.0.1:27017/taskmaster (got "postgres://x")',
      '--port: must be an integer between 0 and 65535 (got "-1")',
      '--max-attempts: must be an integer between 1 and 1000 (got "0")',
      '--log-format: must be one of pretty, json (got "xml")',
      'TASKMASTER_LOG_LEVEL: must be one of error, warn, info, http, verbose, debug, silly (got "loud")',
    ]);
    expect((err.details as { issues: unknown[] }).issues).toHaveLength(5);
  });

  describe('beyond loopback: TLS and a token, or --insecure', () => {
    let pki: TestCa;
    let pair: Issued;
    beforeAll(() => {
      pki = makeTestCa();
      pair = pki.issue('master');
    });
    afterAll(() => pki?.remove());
    const token = 's3cret-s3cret-s3cret';

    test('without TLS and a token, with a token but no TLS, or with TLS but no token, it is refused saying why and both ways on', () => {
      const tls = { tlsCert: pair.certFile, tlsKey: pair.keyFile };
      for (const [flags, why] of [
        [{}, 'without TLS and a token: anyone who can reach it could add tasks to your runners'],
        [{ token }, 'with a token but without TLS: the token would cross the network in clear text'],
        [tls, 'without a token: anyone who can reach it'],
      ] as const) {
        const err = errorOf(() => masterConfig({ host: '0.0.0.0', ...flags }, {}));
        expect(err.code).toBe('EVALIDATION');
        expect(err.message).toContain(`--host: refusing to listen on 0.0.0.0 ${why}`);
        for (const way of ['--tls-cert', '--tls-key', '--token', '--ca', '--insecure'])
          expect(err.message).toContain(way);
      }
    });

    test('it is accepted with TLS and a token (flags or environment), or with --insecure', () => {
      const { options, tlsFiles } = masterConfig(
        { host: '0.0.0.0', token, tlsCert: pair.certFile, tlsKey: pair.keyFile },
        {},
      );
      expect(options.tls).toEqual({ cert: Buffer.from(pair.cert), key: Buffer.from(pair.key) });
      expect(tlsFiles).toEqual({ cert: pair.certFile, key: pair.keyFile });
      const env = {
        TASKMASTER_HOST: '10.1.2.3',
        TASKMASTER_TOKEN: token,
        TASKMASTER_TLS_CERT: pair.certFile,
        TASKMASTER_TLS_KEY: pair.keyFile,
      };
      expect(masterConfig({}, env).options).toMatchObject({ host: '10.1.2.3', token });
      expect(masterConfig({ host: '::', insecure: true }, {}).options).toMatchObject({
        host: '::',
        insecure: true,
      });
      expect(masterConfig({ host: '0.0.0.0', token, insecure: true }, {}).options.tls).toBeUndefined();
    });

    test('a certificate without its key, a file that cannot be read, or a key of another certificate is refused naming the flag', () => {
      expect(errorOf(() => masterConfig({ tlsCert: pair.certFile }, {})).message).toContain(
        '--tls-key: is needed with --tls-cert',
      );
      expect(
        errorOf(() => masterConfig({ tlsCert: '/nowhere.crt', tlsKey: pair.keyFile }, {})).message,
      ).toContain('--tls-cert: cannot read /nowhere.crt (ENOENT');
      const other = pki.issue('other');
      expect(
        errorOf(() => masterConfig({ tlsCert: pair.certFile, tlsKey: other.keyFile }, {})).message,
      ).toContain(`--tls-key: ${other.keyFile}: the key does not belong to the certificate`);
      expect(
        errorOf(() => masterConfig({ tlsCert: pair.keyFile, tlsKey: pair.keyFile }, {})).message,
      ).toContain(`--tls-cert: ${pair.keyFile}: not a PEM certificate`);
    });
  });

  test('beyond loopback a token (or read-only token) shorter than 16 characters is refused, naming the flag', () => {
    expect(() => masterConfig({ host: '0.0.0.0', token: 's3cret', insecure: true }, {})).toThrow(
      /--token: must be at least 16/,
    );
    expect(() =>
      masterConfig(
        { host: '0.0.0.0', token: 's3cret-s3cret-s3cret', readToken: 'short', insecure: true },
        {},
      ),
    ).toThrow(/--read-token: must be at least 16/);
    expect(masterConfig({ token: 's3cret' }, {}).options.token).toBe('s3cret');
  });

  test('loopback addresses need no token', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1'])
      expect(isLoopback(h)).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.1', 'example.com', '::ffff:10.0.0.1'])
      expect(isLoopback(h)).toBe(false);
  });

  test('the embedded database folder comes from --data, else TASKMASTER_DATA; with a MongoDB URL it is refused', () => {
    expect(masterConfig({}, {}).dataDir).toBeUndefined();
    expect(masterConfig({}, { TASKMASTER_DATA: 'env-db' }).dataDir).toBe('env-db');
    expect(masterConfig({ data: 'flag-db' }, { TASKMASTER_DATA: 'env-db' }).dataDir).toBe('flag-db');
    const err = errorOf(() => masterConfig({ data: 'db' }, { MONGO_URL: 'mongodb://db:27017/tm' }));
    expect(err.code).toBe('EVALIDATION');
    expect(err.message).toContain("--data: is the embedded database's folder, but a MongoDB is given");
    expect(
      errorOf(() => masterConfig({ mongoUrl: 'mongodb://db/tm' }, { TASKMASTER_DATA: 'db' })).message,
    ).toContain('TASKMASTER_DATA: ');
  });

  test('--default-run-timeout takes milliseconds or a duration; none by default; zero or beyond what timers hold is refused', () => {
    expect(masterConfig({}, {}).options.defaultRunTimeout).toBeUndefined();
    expect(masterConfig({ defaultRunTimeout: '1500' }, {}).options.defaultRunTimeout).toBe(1500);
    expect(masterConfig({ defaultRunTimeout: '30m' }, {}).options.defaultRunTimeout).toBe(1_800_000);
    expect(errorOf(() => masterConfig({ defaultRunTimeout: '0' }, {})).message).toContain(
      '--default-run-timeout: must be at least 1 ms',
    );
    expect(errorOf(() => masterConfig({ defaultRunTimeout: '30d' }, {})).message).toContain(
      '--default-run-timeout: must be at most 2147483647 ms',
    );
    expect(errorOf(() => masterConfig({ defaultRunTimeout: 'soon' }, {})).message).toContain(
      '--default-run-timeout: must be a duration such as 2h, 30m, 90s or 500ms (got "soon")',
    );
  });

  test('the database name comes from the flag, else the URL, else "taskmaster"', () => {
    expect(databaseName('mongodb://127.0.0.1:27017/', 'explicit')).toBe('explicit');
    expect(databaseName('mongodb://127.0.0.1:27017/jobs?retryWrites=false')).toBe('jobs');
    expect(databaseName('mongodb://a:1,b:2/multi')).toBe('multi');
    expect(databaseName('mongodb://127.0.0.1:27017/')).toBe('taskmaster');
    expect(databaseName('mongodb://127.0.0.1:27017')).toBe('taskmaster');
  });
});

describe('master settings that build an option', () => {
  test('--announce with --broadcast-address and --discovery-port is the announce option; a bad port is refused naming the flag', () => {
    expect(masterConfig({}, {}).options.announce).toBeUndefined();
    expect(
      masterConfig({ announce: true, broadcastAddress: '10.0.0.255', discoveryPort: '4500' }, {}).options
        .announce,
    ).toEqual({ address: '10.0.0.255', port: 4500 });
    expect(errorOf(() => masterConfig({ announce: true, discoveryPort: 'x' }, {})).message).toContain(
      '--discovery-port: must be an integer between 1 and 65535 (got "x")',
    );
  });

  test('a flag named differently from its option sets that option (--retain sets retainMs, --allow-origin allowOrigins)', () => {
    const { options } = masterConfig(
      {
        retain: '12h',
        allowOrigin: ['https://a.example', 'https://b.example:8443'],
        handshakeTimeout: '700',
      },
      {},
    );
    expect(options).toEqual({
      retainMs: 12 * 3_600_000,
      allowOrigins: ['https://a.example', 'https://b.example:8443'],
      handshakeTimeoutMs: 700,
    });
    expect(masterConfig({}, { TASKMASTER_RETAIN: 'forever' }).options.retainMs).toBeNull();
  });
});
