/**
 * The test environment of every file: Node's, plus the bookkeeping behind "each test owns its
 * database, dropped when it passes, kept when it fails" (pg-boss's test hooks do the same).
 *
 * It follows jest-circus's events to know which test is running (so db.ts can record who made a
 * database) and which failed. When the file ends (`teardown`, after every hook of the file), it
 * drops each database the file made, except:
 *   - a database made inside a test that failed;
 *   - a database made by the file's hooks (shared by its tests) when any test or hook failed.
 * Kept databases are noted in the run's folder; globalTeardown names them at the end of the run.
 * Dropping here rather than in an `afterAll` hook means no master the file is still closing can
 * write to (and so recreate) a database after it is dropped.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { EnvironmentContext, JestEnvironmentConfig } from '@jest/environment';
import type { Circus } from '@jest/types';
import { TestEnvironment } from 'jest-environment-node';
import mongoose from 'mongoose';
import {
  FILE_STATE_KEY,
  KEPT_FILE,
  TEST_MONGO_URL_ENV,
  TEST_RUN_DIR_ENV,
  type FileState,
  type KeptDatabase,
} from './run-state';

export default class TaskmasterEnvironment extends TestEnvironment {
  private readonly file: string;
  private readonly state: FileState = { failed: [], databases: [] };

  constructor(config: JestEnvironmentConfig, context: EnvironmentContext) {
    super(config, context);
    this.file = path.relative(config.globalConfig.rootDir, context.testPath);
    this.global[FILE_STATE_KEY] = this.state;
  }

  handleTestEvent(event: Circus.Event): void {
    switch (event.name) {
      case 'test_start':
        this.state.current = fullName(event.test);
        break;
      case 'test_done':
        if (event.test.errors.length > 0) this.state.failed.push(fullName(event.test));
        this.state.current = undefined;
        break;
      case 'hook_failure':
        if (event.hook.type === 'beforeAll' || event.hook.type === 'afterAll')
          this.state.failed.push(`${event.hook.type} of ${describeName(event.hook.parent)}`);
        break;
    }
  }

  async teardown(): Promise<void> {
    try {
      await this.settleDatabases();
    } finally {
      await super.teardown();
    }
  }

  private async settleDatabases(): Promise<void> {
    const { databases, failed } = this.state;
    if (databases.length === 0) return;
    const kept: KeptDatabase[] = [];
    const drop: string[] = [];
    for (const { name, madeBy } of databases) {
      const why = madeBy === undefined ? failed : failed.filter((t) => t === madeBy);
      if (why.length > 0) kept.push({ name, file: this.file, failed: why });
      else drop.push(name);
    }
    if (drop.length > 0) await dropDatabases(drop);
    const runDir = process.env[TEST_RUN_DIR_ENV];
    if (kept.length > 0 && runDir)
      fs.appendFileSync(path.join(runDir, KEPT_FILE), kept.map((k) => `${JSON.stringify(k)}\n`).join(''));
  }
}

async function dropDatabases(names: string[]): Promise<void> {
  const url = process.env[TEST_MONGO_URL_ENV];
  if (!url) return;
  const client = new mongoose.mongo.MongoClient(url, { serverSelectionTimeoutMS: 10_000 });
  try {
    await client.connect();
    for (const name of names) await client.db(name).dropDatabase();
  } finally {
    await client.close();
  }
}

function describeName(block: Circus.DescribeBlock | undefined): string {
  const names: string[] = [];
  for (let b = block; b && b.parent; b = b.parent) names.unshift(b.name);
  return names.length > 0 ? names.join(' › ') : 'the file';
}

function fullName(test: Circus.TestEntry): string {
  const parent = describeName(test.parent);
  return parent === 'the file' ? test.name : `${parent} › ${test.name}`;
}
