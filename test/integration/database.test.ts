import type { Connection } from 'mongoose';
import { taskModel } from '../../models/task';
import { connectTestDb, testDbName } from '../helpers/db';

function task(id: string) {
  const now = Date.now();
  return {
    _id: id,
    created: now,
    updated: now,
    module: 'ok',
    params: [1, 'two'],
    state: 'ready' as const,
    batch: 'b1',
  };
}

describe('test database', () => {
  let conn: Connection;
  let other: Connection;

  beforeAll(async () => {
    conn = await connectTestDb(testDbName(__filename));
    other = await connectTestDb(testDbName(__filename));
  });
  afterAll(async () => {
    await conn?.close();
    await other?.close();
  });

  test('a task written through taskModel reads back with its fields and defaults', async () => {
    await taskModel(conn).create(task('roundtrip'));
    const doc = await taskModel(conn).findOne({ _id: 'roundtrip' }).lean();
    expect(doc).toMatchObject({
      _id: 'roundtrip',
      module: 'ok',
      params: [1, 'two'],
      state: 'ready',
      batch: 'b1',
      attempts: 0,
      maxAttempts: 3,
      rev: 0,
    });
  });

  test("the task id is the document's _id: a second task with the same id is rejected (E11000)", async () => {
    await taskModel(conn).create(task('twice'));
    await expect(taskModel(conn).create(task('twice'))).rejects.toMatchObject({ code: 11000 });
    expect(await taskModel(conn).countDocuments({ _id: 'twice' })).toBe(1);
  });

  test('two test databases do not see each other', async () => {
    expect(conn.name).not.toBe(other.name);
    await taskModel(conn).create(task('mine'));
    expect(await taskModel(other).countDocuments({ _id: 'mine' })).toBe(0);
  });
});
