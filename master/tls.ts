/**
 * The master's certificate: read from PEM files (`--tls-cert`, `--tls-key`), checked before it is
 * used (the key must match the certificate, so a half-replaced pair is refused rather than served),
 * and described for the log (who it names, until when, its fingerprint). The CLI reads the files at
 * start and again on SIGHUP; `Master.setTls` swaps the certificate for new connections.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';
import { TaskmasterError } from '../protocol/errors';

/** A certificate (chain) and its private key, PEM. */
export interface TlsPair {
  cert: string | Buffer;
  key: string | Buffer;
}

/** What the log says of a certificate. */
export interface CertificateInfo {
  subject: string;
  names: string;
  validTo: string;
  fingerprint256: string;
}

/** What is wrong with a pair, if anything: which half, and why. */
export function tlsPairIssue(pair: TlsPair): { which: 'cert' | 'key'; message: string } | undefined {
  let x509: crypto.X509Certificate;
  try {
    x509 = new crypto.X509Certificate(pair.cert);
  } catch (err) {
    return { which: 'cert', message: `not a PEM certificate (${message(err)})` };
  }
  try {
    tls.createSecureContext({ cert: pair.cert, key: pair.key });
  } catch (err) {
    const mismatch = /key values mismatch/i.test(message(err));
    return {
      which: 'key',
      message: mismatch
        ? 'the key does not belong to the certificate'
        : `not a PEM private key (${message(err)})`,
    };
  }
  // Every client would refuse it: say so at once rather than in each client's log.
  if (Date.parse(x509.validTo) < Date.now())
    return { which: 'cert', message: `the certificate expired on ${x509.validTo}` };
  return undefined;
}

/** What the log says of a certificate: who it names, until when, its fingerprint. */
export function describeCertificate(cert: string | Buffer): CertificateInfo {
  const x509 = new crypto.X509Certificate(cert);
  return {
    subject: x509.subject.replace(/\n/g, ', '),
    names: x509.subjectAltName ?? '',
    validTo: x509.validTo,
    fingerprint256: x509.fingerprint256,
  };
}

/** Throws an EVALIDATION error naming the half that is wrong (by `names`) and why. */
export function checkTlsPair(pair: TlsPair, names = { cert: 'cert', key: 'key' }): CertificateInfo {
  const issue = tlsPairIssue(pair);
  if (issue) throw new TaskmasterError('EVALIDATION', `${names[issue.which]}: ${issue.message}`);
  return describeCertificate(pair.cert);
}

/** Reads and checks a certificate and key from their files; errors name the flag and the file. */
export function readTlsFiles(files: { cert: string; key: string }): TlsPair & { info: CertificateInfo } {
  const read = (file: string, flag: string): Buffer => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new TaskmasterError('EVALIDATION', `${flag}: cannot read ${file} (${message(err)})`);
    }
  };
  const pair = { cert: read(files.cert, '--tls-cert'), key: read(files.key, '--tls-key') };
  const info = checkTlsPair(pair, { cert: `--tls-cert ${files.cert}`, key: `--tls-key ${files.key}` });
  return { ...pair, info };
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
