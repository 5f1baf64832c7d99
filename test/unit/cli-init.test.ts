import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { initTasks } from '../../bin/init';
import { tempDir } from '../helpers/cluster';

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

describe('taskmaster init', () => {
  let dir: string;
  beforeEach(() => (dir = tempDir('init')));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('writes a typed example module and a batch file that uses it, and says what to run next', () => {
    const out = new Capture();
    expect(initTasks(path.join(dir, 'tasks'), out, new Capture())).toBe(0);
    const module = fs.readFileSync(path.join(dir, 'tasks', 'greet.ts'), 'utf8');
    expect(module).toContain("import { defineTask } from 'taskmaster-distributed/task'");
    expect(module).toContain('export default defineTask(async function greet(name: string, times = 1)');
    const batch = JSON.parse(fs.readFileSync(path.join(dir, 'tasks', 'batch.json'), 'utf8')) as {
      module: string;
    }[];
    expect(batch.map((t) => t.module)).toEqual(['greet', 'greet']);
    expect(out.text).toContain(`npx taskmaster feed ${path.join(dir, 'tasks', 'batch.json')} --wait`);
  });

  test('refuses to overwrite: if either file exists, nothing is written and it exits 1', () => {
    const tasks = path.join(dir, 'tasks');
    fs.mkdirSync(tasks);
    fs.writeFileSync(path.join(tasks, 'batch.json'), 'mine');
    const err = new Capture();
    expect(initTasks(tasks, new Capture(), err)).toBe(1);
    expect(err.text).toBe(
      `taskmaster init: ${path.join(tasks, 'batch.json')} already exists; nothing was written\n`,
    );
    expect(fs.readFileSync(path.join(tasks, 'batch.json'), 'utf8')).toBe('mine');
    expect(fs.existsSync(path.join(tasks, 'greet.ts'))).toBe(false);
  });
});
