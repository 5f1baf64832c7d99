/**
 * `npm run fuzz -- --seed N --count M [--token]`: starts a database (MONGO_URL, else the embedded
 * one), a master and an honest runner on the test fixtures, fuzzes every event and route (fuzz.ts),
 * sends the amplification shapes (fuzz-shapes.ts), then proves an honest add → result round trip. Exits 0 when the master survived and works, 1 if not.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../../common/logger';
import { Feeder } from '../../feeder/feeder';
import { Master } from '../../master/master';
import { databaseLine, resolveDatabase } from '../../db/server';
import { Runner } from '../../runner/runner';
import { fuzz } from './fuzz';
import { amplificationShapes } from './fuzz-shapes';

const FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'tasks');

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} must be a non-negative integer`);
  return v;
}

async function main(): Promise<number> {
  const seed = arg('seed', 1);
  const count = arg('count', 2000);
  const token = process.argv.includes('--no-token') ? undefined : 'fuzz-token-0123456789abcdef';
  const out = (line: string) => void process.stdout.write(`${line}\n`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskmaster-fuzz-db-'));
  const db = await resolveDatabase({ dataDir, log: () => undefined });
  process.stderr.write(`database: ${databaseLine(db)} (removed at the end)\n`);
  // Errors the master logs are caught exceptions: not crashes, but worth seeing.
  const logger = createLogger({ level: 'error', format: 'json', stderr: true });
  const master = new Master({
    mongoUrl: db.url,
    dbName: `fuzz_${seed}_${Date.now()}`,
    port: 0,
    token,
    logger,
  });
  let runner: Runner | null = null;
  let feeder: Feeder | null = null;
  try {
    await master.start();
    runner = new Runner({
      master: master.url,
      token,
      tasks: [FIXTURES],
      workers: 1,
      slots: 4,
      runnerId: 'fuzz-honest',
      watch: false,
      logger,
    });
    await runner.start();
    out(`fuzz: seed ${seed}, count ${count}, master ${master.url}${token ? ' (token)' : ''}`);
    const started = Date.now();
    const report = await fuzz({ url: master.url, token, seed, count, progress: (l) => out(`  ${l}`) });
    out(
      `fuzz: sent ${report.sent} (${report.socketMessages} socket messages, ${report.httpRequests} HTTP requests) in ${Date.now() - started} ms; ` +
        `${report.acks} acknowledgements, ${report.reconnects} connections closed by the master; HTTP statuses ${JSON.stringify(report.statuses)}`,
    );
    // Then the shapes a master could multiply: long chains, fan-out of a large error, huge watches, churn.
    const shapes = await amplificationShapes({
      url: master.url,
      token,
      seed,
      honestRunner: 'fuzz-honest',
      progress: (l) => out(`  ${l}`),
    });
    out(
      `fuzz: ${shapes.length} amplification shapes answered within bounds; peak RSS of this process (master, runner and fuzzer) ${Math.round(process.resourceUsage().maxRSS / 1024)} MB`,
    );
    feeder = new Feeder({ master: master.url, token, logger });
    const [o] = await feeder.work([
      { module: 'ok', params: ['after fuzz', seed], runner: 'fuzz-honest', timeout: 20_000 },
    ]);
    if (o.state !== 'done') throw new Error(`honest round trip failed: ${JSON.stringify(o)}`);
    out(`fuzz: master alive, honest round trip ok (${JSON.stringify(o.result)})`);
    return 0;
  } catch (err) {
    out(`fuzz: FAILED: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    await feeder?.close();
    await runner?.close();
    await master.close();
    await db.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

process.on('uncaughtException', (err) => {
  process.stdout.write(`fuzz: FAILED: an exception reached the process: ${err.stack ?? String(err)}\n`);
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  process.stdout.write(`fuzz: FAILED: an unhandled rejection reached the process: ${String(err)}\n`);
  process.exit(1);
});

void main().then((code) => process.exit(code));
