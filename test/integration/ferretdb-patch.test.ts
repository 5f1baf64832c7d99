/**
 * The fixes of tools/ferretdb/patches, seen from the wire: long update commands answer, `_id` lookups,
 * `_id` `$in` reads and deletes use the `_id` index, and files written by the stock FerretDB 1.24.2
 * get the same behaviour once the patched build reopens them.
 *
 * The first block runs on the run's database (the patched FerretDB, or MongoDB with MONGO_URL, where
 * every assertion holds as well). The second starts FerretDB processes of its own, stock then patched,
 * on one data directory; it needs the stock build, which needs Go.
 */
import fs from 'node:fs';
import mongoose from 'mongoose';
import { buildFerretDB, startEmbeddedDatabase } from '../../models/database';
import { ferretdbBinPath, findOnPath, isExecutable } from '../../models/ferretdb-build';
import { tempDir } from '../helpers/cluster';
import { testDbName, testMongoUrl } from '../helpers/db';

type MongoClient = InstanceType<typeof mongoose.mongo.MongoClient>;
type Doc = { _id: string; rev: number; state: string; pad: string };

const DOCS = 50_000;
const idOf = (i: number) => `k${String(i).padStart(6, '0')}`;

async function seed(client: MongoClient, dbName: string): Promise<mongoose.mongo.Collection<Doc>> {
  const coll = client.db(dbName).collection<Doc>('tasks');
  for (let i = 0; i < DOCS; i += 5000) {
    const docs = Array.from({ length: 5000 }, (_, k) => ({
      _id: idOf(i + k),
      rev: 0,
      state: 'ready',
      pad: 'a parameter of a typical size',
    }));
    await coll.insertMany(docs, { ordered: true });
  }
  return coll;
}

/** The explain output names the `_id` index: SQLite's plan on FerretDB, the winning plan on MongoDB. */
function usesIdIndex(explain: unknown): boolean {
  const text = JSON.stringify(explain);
  return /USING INDEX [^"]*__id_|IDHACK|EXPRESS_IXSCAN|"indexName":"_id_"/.test(text);
}

async function medianUpdateMs(coll: mongoose.mongo.Collection<Doc>, n = 50): Promise<number> {
  const times: number[] = [];
  for (let k = 0; k < n; k++) {
    const started = process.hrtime.bigint();
    const res = await coll.updateOne({ _id: idOf((k * 997) % DOCS) }, { $inc: { rev: 1 } });
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
    expect(res.matchedCount).toBe(1);
  }
  times.sort((a, b) => a - b);
  return times[n >> 1];
}

/** The checks both blocks make on a seeded collection. */
function checksOn(coll: () => mongoose.mongo.Collection<Doc>, commands: () => string[]) {
  test('an update command of 500 statements answers, in one command', async () => {
    commands().length = 0;
    const ops = Array.from({ length: 500 }, (_, k) => ({
      updateOne: { filter: { _id: idOf(k * 3) }, update: { $set: { state: 'done' } } },
    }));
    const res = await coll().bulkWrite(ops, { ordered: true });
    expect(res.matchedCount).toBe(500);
    expect(commands().filter((c) => c === 'update')).toHaveLength(1);
    expect(
      await coll().countDocuments({ _id: { $in: ops.map((o) => o.updateOne.filter._id) }, state: 'done' }),
    ).toBe(500);
  });

  test('updateOne({_id}) on 50,000 documents takes under 5 ms (median of 50) and its filter uses the index', async () => {
    const plain = await coll()
      .find({ _id: idOf(123) })
      .explain();
    const withRev = await coll()
      .find({ _id: idOf(123), rev: { $lt: 1000 } })
      .explain();
    expect(usesIdIndex(plain)).toBe(true);
    expect(usesIdIndex(withRev)).toBe(true);
    expect(await medianUpdateMs(coll())).toBeLessThan(5);
  });

  test('a later statement of one command sees an earlier one; a failed statement keeps those before it', async () => {
    const [a, b, c] = [idOf(DOCS - 1), idOf(DOCS - 2), idOf(DOCS - 3)];
    const res = await coll().bulkWrite(
      [
        { updateOne: { filter: { _id: a }, update: { $set: { state: 'step1' } } } },
        { updateOne: { filter: { _id: a, state: 'step1' }, update: { $set: { state: 'step2' } } } },
      ],
      { ordered: true },
    );
    expect(res.matchedCount).toBe(2);
    expect((await coll().findOne({ _id: a }))?.state).toBe('step2');

    // $inc on a string fails on every server; ordered, the statement after it never runs.
    const untyped = coll() as unknown as mongoose.mongo.Collection<{ _id: string }>;
    const failing = untyped.bulkWrite(
      [
        { updateOne: { filter: { _id: b }, update: { $set: { state: 'before-failure' } } } },
        { updateOne: { filter: { _id: a }, update: { $inc: { state: 1 } } } },
        { updateOne: { filter: { _id: c }, update: { $set: { state: 'after-failure' } } } },
      ],
      { ordered: true },
    );
    await expect(failing).rejects.toThrow();
    expect((await coll().findOne({ _id: b }))?.state).toBe('before-failure');
    expect((await coll().findOne({ _id: c }))?.state).toBe('ready');
  });

  test('find and deleteMany by _id $in of 1,000 ids use the index', async () => {
    const ids = Array.from({ length: 1000 }, (_, k) => idOf(1 + k * 41));
    expect(
      usesIdIndex(
        await coll()
          .find({ _id: { $in: ids } })
          .explain(),
      ),
    ).toBe(true);

    // A scan decodes all 50,000 documents (seconds on the stock build); the index reads 1,000.
    let started = Date.now();
    expect(
      await coll()
        .find({ _id: { $in: ids } })
        .toArray(),
    ).toHaveLength(1000);
    const findMs = Date.now() - started;
    started = Date.now();
    expect((await coll().deleteMany({ _id: { $in: ids } })).deletedCount).toBe(1000);
    const deleteMs = Date.now() - started;
    expect(Math.max(findMs, deleteMs)).toBeLessThan(1500);
    expect(await coll().countDocuments({ _id: { $in: ids } })).toBe(0);
  });
}

function monitored(client: MongoClient): string[] {
  const commands: string[] = [];
  client.on('commandStarted', (e) => commands.push(e.commandName));
  return commands;
}

describe("patched FerretDB fixes, on the run's database", () => {
  const dbName = testDbName(__filename);
  let client: MongoClient;
  let coll: mongoose.mongo.Collection<Doc>;
  let commands: string[];

  beforeAll(async () => {
    client = new mongoose.mongo.MongoClient(testMongoUrl(), { monitorCommands: true });
    await client.connect();
    commands = monitored(client);
    coll = await seed(client, dbName);
  });
  afterAll(async () => {
    await client?.db(dbName).dropDatabase();
    await client?.close();
  });

  checksOn(
    () => coll,
    () => commands,
  );
});

const canBuildStock = isExecutable(ferretdbBinPath('stock')) || findOnPath('go') !== undefined;

describe(
  canBuildStock
    ? 'a data directory written by the stock FerretDB 1.24.2, reopened by the patched build'
    : 'a data directory written by the stock FerretDB: not run, Go is not on PATH to build the stock binary',
  () => {
    if (!canBuildStock) {
      test('this run uses a database given by MONGO_URL (the stock build needs Go)', () => {
        expect(process.env.MONGO_URL).toBeTruthy();
      });
      return;
    }

    let dataDir: string;
    let db: Awaited<ReturnType<typeof startEmbeddedDatabase>> | undefined;
    let client: MongoClient;
    let coll: mongoose.mongo.Collection<Doc>;
    let commands: string[];

    beforeAll(async () => {
      dataDir = tempDir('stock-db');
      const stockBin = await buildFerretDB({ variant: 'stock', log: () => {} });
      const patchedBin = await buildFerretDB({ log: () => {} });
      const stock = await startEmbeddedDatabase({ dataDir, ferretdbBin: stockBin });
      const writer = new mongoose.mongo.MongoClient(stock.url);
      try {
        await writer.connect();
        await seed(writer, 'reopened');
      } finally {
        await writer.close();
        await stock.stop();
      }
      db = await startEmbeddedDatabase({ dataDir, ferretdbBin: patchedBin });
      client = new mongoose.mongo.MongoClient(db.url, { monitorCommands: true });
      await client.connect();
      commands = monitored(client);
      coll = client.db('reopened').collection<Doc>('tasks');
    }, 180_000);
    afterAll(async () => {
      await client?.close();
      await db?.stop();
      if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    });

    test('the patched build reads every document the stock one wrote', async () => {
      expect(await coll.estimatedDocumentCount()).toBe(DOCS);
      expect(await coll.findOne({ _id: idOf(DOCS - 1) })).toMatchObject({ rev: 0, state: 'ready' });
    });

    checksOn(
      () => coll,
      () => commands,
    );
  },
);
