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
import { buildFerretDB, startEmbeddedDatabase } from '../../db/server';
import { ferretdbBinPath, findOnPath, isExecutable } from '../../db/ferretdb-build';
import { tempDir } from '../helpers/cluster';
import { testDbName, testMongoUrl } from '../helpers/db';

type MongoClient = InstanceType<typeof mongoose.mongo.MongoClient>;
type Doc = { _id: string; rev: number; state: string; pad: string };

const DOCS = 50_000;
/** The reference collection: the same documents, 50 times fewer. */
const SMALL = 1_000;
const idOf = (i: number) => `k${String(i).padStart(6, '0')}`;

/** Fills `tasks` with DOCS documents and `small` with the first SMALL of them. */
async function seed(client: MongoClient, dbName: string): Promise<void> {
  const doc = (i: number): Doc => ({
    _id: idOf(i),
    rev: 0,
    state: 'ready',
    pad: 'a parameter of a typical size',
  });
  const db = client.db(dbName);
  for (let i = 0; i < DOCS; i += 5000) {
    await db.collection<Doc>('tasks').insertMany(
      Array.from({ length: 5000 }, (_, k) => doc(i + k)),
      { ordered: true },
    );
  }
  await db.collection<Doc>('small').insertMany(
    Array.from({ length: SMALL }, (_, k) => doc(k)),
    { ordered: true },
  );
}

/** The explain output names the `_id` index: SQLite's plan on FerretDB, the winning plan on MongoDB. */
function usesIdIndex(explain: unknown): boolean {
  const text = JSON.stringify(explain);
  return /USING INDEX [^"]*__id_|IDHACK|EXPRESS_IXSCAN|"indexName":"_id_"/.test(text);
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const started = process.hrtime.bigint();
  const result = await f();
  return [result, Number(process.hrtime.bigint() - started) / 1e6];
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/**
 * The checks both blocks make on a seeded database. Speed is judged against the same operation on the
 * 1,000-document collection in the same moment, so that a loaded machine slows both: with the index
 * the two cost about the same, while a scan of 50,000 documents costs 50 times one of 1,000.
 * (`npm run bench:db` prints the absolute figures: ~1 ms per `updateOne({_id})` at 100,000.)
 */
function checksOn(db: () => mongoose.mongo.Db, commands: () => string[]) {
  const coll = () => db().collection<Doc>('tasks');
  const small = () => db().collection<Doc>('small');

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

  test('updateOne({_id}) costs on 50,000 documents what it costs on 1,000 (medians of 50), and its filter uses the index', async () => {
    expect(
      usesIdIndex(
        await coll()
          .find({ _id: idOf(123) })
          .explain(),
      ),
    ).toBe(true);
    expect(
      usesIdIndex(
        await coll()
          .find({ _id: idOf(123), rev: { $lt: 1000 } })
          .explain(),
      ),
    ).toBe(true);

    const big: number[] = [];
    const ref: number[] = [];
    for (let k = 0; k < 50; k++) {
      const [a, bigMs] = await timed(() =>
        coll().updateOne({ _id: idOf((k * 997) % DOCS) }, { $inc: { rev: 1 } }),
      );
      const [b, refMs] = await timed(() =>
        small().updateOne({ _id: idOf((k * 7) % SMALL) }, { $inc: { rev: 1 } }),
      );
      expect([a.matchedCount, b.matchedCount]).toEqual([1, 1]);
      big.push(bigMs);
      ref.push(refMs);
    }
    expect(median(big)).toBeLessThan(3 * median(ref) + 2);
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

  test('find and deleteMany by _id $in of 1,000 ids cost on 50,000 documents what they cost on 1,000, and use the index', async () => {
    const ids = Array.from({ length: SMALL }, (_, k) => idOf(k));
    expect(
      usesIdIndex(
        await coll()
          .find({ _id: { $in: ids } })
          .explain(),
      ),
    ).toBe(true);

    const [found, findMs] = await timed(() =>
      coll()
        .find({ _id: { $in: ids } })
        .toArray(),
    );
    const [foundRef, findRefMs] = await timed(() =>
      small()
        .find({ _id: { $in: ids } })
        .toArray(),
    );
    expect([found.length, foundRef.length]).toEqual([SMALL, SMALL]);
    const [deleted, deleteMs] = await timed(() => coll().deleteMany({ _id: { $in: ids } }));
    const [deletedRef, deleteRefMs] = await timed(() => small().deleteMany({ _id: { $in: ids } }));
    expect([deleted.deletedCount, deletedRef.deletedCount]).toEqual([SMALL, SMALL]);
    expect(await coll().countDocuments({ _id: { $in: ids } })).toBe(0);

    expect(findMs).toBeLessThan(3 * findRefMs + 50);
    expect(deleteMs).toBeLessThan(3 * deleteRefMs + 50);
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
  let commands: string[];

  beforeAll(async () => {
    client = new mongoose.mongo.MongoClient(testMongoUrl(), { monitorCommands: true });
    await client.connect();
    commands = monitored(client);
    await seed(client, dbName);
  });
  afterAll(async () => {
    await client?.close();
  });

  checksOn(
    () => client.db(dbName),
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
    }, 180_000);
    afterAll(async () => {
      await client?.close();
      await db?.stop();
      if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    });

    test('the patched build reads every document the stock one wrote', async () => {
      const coll = client.db('reopened').collection<Doc>('tasks');
      expect(await coll.estimatedDocumentCount()).toBe(DOCS);
      expect(await coll.findOne({ _id: idOf(DOCS - 1) })).toMatchObject({ rev: 0, state: 'ready' });
    });

    checksOn(
      () => client.db('reopened'),
      () => commands,
    );
  },
);
