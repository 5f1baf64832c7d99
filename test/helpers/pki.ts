/**
 * A private CA made for a test, with the `openssl` command (Node's crypto makes keys but not
 * certificates): a CA certificate, and server certificates it signs for 127.0.0.1 and localhost.
 * Everything lives in a temporary folder the test removes.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from './cluster';

export interface Issued {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
  fingerprint256: string;
}

export interface TestCa {
  dir: string;
  /** The CA certificate, PEM, and its file. */
  ca: string;
  caFile: string;
  /** A server certificate for 127.0.0.1 and localhost, signed by this CA. */
  issue(name: string): Issued;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT')
      throw new Error('the TLS tests need the openssl command: apt-get install openssl');
    throw new Error(`openssl ${args.join(' ')}: ${e.stderr?.toString() ?? e.message}`);
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** Makes a CA named `name` in a fresh folder. */
export function makeTestCa(name = 'Taskmaster test CA'): TestCa {
  const dir = tempDir('pki');
  openssl(
    [
      'req',
      '-x509',
      ...EC,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  fs.writeFileSync(
    path.join(dir, 'server.ext'),
    [
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      'basicConstraints=CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      '',
    ].join('\n'),
  );
  const caFile = path.join(dir, 'ca.crt');
  return {
    dir,
    caFile,
    ca: fs.readFileSync(caFile, 'utf8'),
    issue(server: string): Issued {
      openssl(
        ['req', ...EC, '-keyout', `${server}.key`, '-out', `${server}.csr`, '-subj', `/CN=${server}`],
        dir,
      );
      openssl(
        [
          'x509',
          '-req',
          '-in',
          `${server}.csr`,
          '-CA',
          'ca.crt',
          '-CAkey',
          'ca.key',
          '-CAcreateserial',
          '-out',
          `${server}.crt`,
          '-days',
          '2',
          '-extfile',
          'server.ext',
        ],
        dir,
      );
      const certFile = path.join(dir, `${server}.crt`);
      const keyFile = path.join(dir, `${server}.key`);
      const cert = fs.readFileSync(certFile, 'utf8');
      return {
        certFile,
        keyFile,
        cert,
        key: fs.readFileSync(keyFile, 'utf8'),
        fingerprint256: new crypto.X509Certificate(cert).fingerprint256,
      };
    },
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
