/**
 * The dashboard in a real browser (Debian's Chromium, headless, driven by playwright-core) against a
 * real master, runner and database: the token prompt, live counts, the dependency graph, retry from
 * the page, and a read-only token that sees but cannot act. Screenshots go to
 * .cache/test-output/dashboard/.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { Feeder } from '../../feeder/feeder';
import type { Master } from '../../master/master';
import type { Runner } from '../../runner/runner';
import { ROOT, startMaster, tempDir, testLogger } from '../helpers/cluster';
import { testDbName } from '../helpers/db';
import { startRunner } from '../helpers/clients';

const CHROMIUM = '/usr/bin/chromium';
const DIST = path.join(ROOT, 'dashboard', 'dist', 'index.html');
const OUT = path.join(ROOT, '.cache', 'test-output', 'dashboard');
const TOKEN = 'dashboard-full-token-0123456789';
const READ_TOKEN = 'dashboard-read-token-0123456789';
const WAIT = 30_000;

/** Resolves when `selector` is on the page; otherwise fails naming `what` did not happen. */
async function see(page: Page, selector: string, what: string, state: 'visible' | 'attached' = 'visible') {
  try {
    return await page.waitForSelector(selector, { timeout: WAIT, state });
  } catch {
    throw new Error(`within ${WAIT} ms the page did not show ${what} (${selector})`);
  }
}

/** Resolves when the text of `selector` is `expected`; otherwise fails with the last text seen. */
async function text(page: Page, selector: string, expected: string, what: string) {
  try {
    // A string runs in the page, where `document` is (this file is type-checked for Node).
    const sel = JSON.stringify(selector);
    await page.waitForFunction(
      `document.querySelector(${sel})?.textContent?.trim() === ${JSON.stringify(expected)}`,
      undefined,
      { timeout: WAIT },
    );
  } catch {
    const seen = await page.textContent(selector).catch(() => null);
    throw new Error(`within ${WAIT} ms ${what} did not become "${expected}" (last seen: ${seen})`);
  }
}

const shot = (page: Page, name: string) =>
  page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: true });

describe('dashboard in the browser', () => {
  let master: Master;
  let runner: Runner;
  let feeder: Feeder;
  // One fresh profile; each test opens its own tab, and so its own sessionStorage.
  let browser: BrowserContext;
  const dir = tempDir('dashboard');

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium`);
    // `.ci/run` builds the dashboard before the tests; a run on its own builds it here.
    if (!fs.existsSync(DIST)) execFileSync('npm', ['run', 'build:dashboard'], { cwd: ROOT, stdio: 'ignore' });
    fs.mkdirSync(OUT, { recursive: true });
    master = await startMaster(testDbName('dashboard'), { token: TOKEN, readToken: READ_TOKEN });
    runner = await startRunner(master.url, { token: TOKEN, workers: 2, slots: 4, runnerId: 'runner-1' });
    feeder = new Feeder({ master: master.url, token: TOKEN, logger: testLogger() });
    await feeder.ready();
    browser = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
      executablePath: CHROMIUM,
      viewport: { width: 1280, height: 900 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
      timeout: WAIT,
    });
  });
  afterAll(async () => {
    await browser?.close();
    await feeder?.close();
    await runner?.close();
    await master?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a batch with a failure: counts move live, the graph shows it, and retry from the page finishes the task and its dependents', async () => {
    const page = await browser.newPage();
    await page.goto(master.url);
    await see(page, 'input[name=token]', 'the token prompt');
    await page.fill('input[name=token]', TOKEN);
    await page.click('button[type=submit]');
    await text(page, '[data-testid=link]', 'live', 'the live link');
    await text(page, '[data-testid=count-done]', '0', 'the done count before any task');
    await text(page, '[data-testid=master-role]', 'active', "the master's role");
    await text(page, '[data-testid=master-epoch]', '1', "the master's epoch");
    expect(await page.$('[data-testid=read-only]')).toBeNull();

    // gate fails until the flag exists; d1 and d2 depend on it and d3 on both, so all four fail.
    // Twenty more tasks in chains of four succeed.
    const flag = path.join(dir, 'flag');
    const tasks = [
      { id: 'gate', module: 'needs-file', params: [flag], maxAttempts: 1 },
      { id: 'd1', module: 'ok', params: ['d1'], dependencies: ['gate'] },
      { id: 'd2', module: 'ok', params: ['d2'], dependencies: ['gate'] },
      { id: 'd3', module: 'ok', params: ['d3'], dependencies: ['d1', 'd2'] },
      ...Array.from({ length: 20 }, (_, i) => ({
        id: `w${i}`,
        module: 'timed',
        params: [20, `w${i}`],
        dependencies: i % 4 ? [`w${i - 1}`] : [],
      })),
    ];
    await feeder.add(tasks, { batch: 'b1' });
    // The page was opened before the batch: these numbers can only come over the live connection.
    await text(page, '[data-testid=count-done]', '20', 'the done count');
    await text(page, '[data-testid=count-failed]', '4', 'the failed count');
    await see(page, '[data-testid=throughput-chart] canvas', 'the throughput chart');
    await shot(page, 'overview');

    await page.click('[data-testid=tab-runners]');
    await see(page, '[data-testid=runner-row][data-runner=runner-1]', 'the runner');
    await shot(page, 'runners');

    await page.click('[data-testid=tab-batches]');
    await see(page, '[data-testid=batch-row][data-batch=b1]', 'batch b1 in the list');
    await page.click('[data-testid=batch-row][data-batch=b1] a');
    for (const id of ['gate', 'd1', 'd2', 'd3'])
      await see(
        page,
        `[data-testid=graph-node][data-task=${id}][data-state=failed]`,
        `${id} failed in the graph`,
      );
    expect(await page.$$('[data-testid=graph-node]')).toHaveLength(24);
    expect(await page.$$('[data-testid=graph-node][data-state=done]')).toHaveLength(20);
    await text(page, '[data-testid=batch-count-failed]', '4', "the batch's failed count");
    await page.click('[data-testid=graph-node][data-task=gate]');
    await see(page, '[data-testid=task-detail][data-task=gate] [data-testid=task-error]', "gate's error");
    await shot(page, 'graph-failed');

    fs.writeFileSync(flag, '');
    await page.click('[data-testid=task-detail][data-task=gate] [data-testid=retry]');
    for (const id of ['gate', 'd1', 'd2', 'd3'])
      await see(
        page,
        `[data-testid=graph-node][data-task=${id}][data-state=done]`,
        `${id} done after the retry`,
      );
    await text(page, '[data-testid=batch-count-done]', '24', "the batch's done count");
    await text(page, '[data-testid=batch-count-failed]', '0', "the batch's failed count");
    await see(
      page,
      '[data-testid=task-detail][data-task=gate][data-state=done]',
      "gate's detail showing done",
    );
    await shot(page, 'graph-retried');

    await page.goto(`${master.url}/#/tasks?batch=b1&state=done`);
    await see(page, '[data-testid=task-row][data-task=d3]', 'd3 among the done tasks of b1');
    expect(await page.$$('[data-testid=task-row]')).toHaveLength(24);
    await shot(page, 'tasks');

    // The token was asked once: a reload keeps it for the session.
    await page.reload();
    await text(page, '[data-testid=link]', 'live', 'the live link after a reload');
    expect(await page.$('input[name=token]')).toBeNull();
  });

  test('a wrong token is refused; a read-only token sees tasks but every action button is off', async () => {
    const [failed] = await feeder.add(
      [{ id: 'ro-fail', module: 'throws', params: ['nope'], maxAttempts: 1 }],
      {
        batch: 'b2',
      },
    );
    const page = await browser.newPage();
    await page.goto(`${master.url}/#/tasks/${failed.id}`);
    await see(page, 'input[name=token]', 'the token prompt');
    await page.fill('input[name=token]', 'not-the-token-at-all');
    await page.click('button[type=submit]');
    await see(page, 'text=That token was refused', 'the refusal of a wrong token');

    await page.fill('input[name=token]', READ_TOKEN);
    await page.click('button[type=submit]');
    await see(page, '[data-testid=read-only]', 'the read-only badge');
    await see(page, '[data-testid=task-detail][data-task=ro-fail][data-state=failed]', 'the failed task');
    expect(await page.isDisabled('[data-testid=retry]')).toBe(true);
    expect(await page.isDisabled('[data-testid=cancel]')).toBe(true);
    await shot(page, 'read-only-task');

    await page.click('[data-testid=tab-runners]');
    await see(page, '[data-testid=runner-row][data-runner=runner-1]', 'the runner');
    expect(await page.isDisabled('[data-testid=runner-row] [data-testid=drain]')).toBe(true);
  });

  test('the page asks the master what its token may do: no request fails once a token is given, full or read-only', async () => {
    for (const [token, readOnly] of [
      [TOKEN, false],
      [READ_TOKEN, true],
    ] as const) {
      const page = await browser.newPage();
      const failed: string[] = [];
      page.on('response', (r) => {
        if (r.status() >= 400)
          failed.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
      });
      await page.goto(master.url);
      await see(page, 'input[name=token]', 'the token prompt');
      await page.fill('input[name=token]', token);
      await page.click('button[type=submit]');
      await text(page, '[data-testid=link]', 'live', 'the live link');
      expect(await page.$('[data-testid=read-only]')).toEqual(readOnly ? expect.anything() : null);
      // The one refusal is the question that made the page ask for a token.
      expect(failed).toEqual(['401 GET /api/access']);
      await page.close();
    }
  });

  test('a batch name of 200 characters stays inside its card, its table and its page', async () => {
    // One word: nothing to wrap it at.
    const name = `nightly_import_of_${'everything_'.repeat(17)}`.slice(0, 200);
    await feeder.work([{ id: 'long-1', module: 'ok', params: [] }], { batch: name });
    const page = await browser.newPage();
    await page.goto(master.url);
    await page.fill('input[name=token]', TOKEN);
    await page.click('button[type=submit]');
    // Nothing wider than its box: every card, and the page itself (no sideways scrolling).
    const overflowing = () =>
      page.evaluate(`[document.documentElement, ...document.querySelectorAll('.card')]
        .filter((e) => e.scrollWidth > e.clientWidth)
        .map((e) => (e.querySelector('h2')?.textContent ?? e.tagName) + ': ' + e.scrollWidth + ' > ' + e.clientWidth)`);
    await see(page, `[data-testid=mini-batch] a[title="${name}"]`, 'the long name among the newest batches');
    expect(await overflowing()).toEqual([]);
    await shot(page, 'long-batch-overview');
    await page.click('[data-testid=tab-batches]');
    await see(page, `[data-testid=batch-row][data-batch="${name}"]`, 'the long name in the list');
    expect(await overflowing()).toEqual([]);
    await page.click(`[data-testid=batch-row][data-batch="${name}"] a`);
    await text(page, '[data-testid=batch-count-done]', '1', "the long batch's done count");
    expect(await overflowing()).toEqual([]);
    await shot(page, 'long-batch-page');
  }, 120_000);

  test('a batch beyond 500 tasks draws 500 nodes and says the counts cover the rest', async () => {
    // Chains of 26: task i depends on task i - 20, so the graph has layers to lay out.
    const tasks = Array.from({ length: 520 }, (_, i) => ({
      id: `big-${i}`,
      module: 'ok',
      params: [i],
      dependencies: i >= 20 ? [`big-${i - 20}`] : [],
    }));
    await feeder.work(tasks, { batch: 'big' });
    const page = await browser.newPage();
    await page.goto(master.url);
    await page.fill('input[name=token]', TOKEN);
    await page.click('button[type=submit]');
    await page.click('[data-testid=tab-batches]');
    await page.click('[data-testid=batch-row][data-batch=big] a');
    await see(page, '[data-testid=graph-truncated]', 'the note that the graph is cut');
    await text(page, '[data-testid=batch-count-done]', '520', "the big batch's done count");
    expect(await page.$$('[data-testid=graph-node]')).toHaveLength(500);
    expect(await page.textContent('[data-testid=graph-truncated]')).toContain('520 tasks');
    await shot(page, 'graph-large');
  });

  test('a queued task says why it does not run, and why not on a runner picked from the list', async () => {
    await feeder.add([{ id: 'needs-gpu', module: 'ok', requires: { gpu: true } }], { batch: 'why' });
    const page = await browser.newPage();
    await page.goto(`${master.url}/#/tasks/needs-gpu`);
    await page.fill('input[name=token]', TOKEN);
    await page.click('button[type=submit]');
    await text(page, '[data-testid=why]', 'NOT_ELIGIBLE not eligible: requires gpu=true', 'the reason');
    await page.selectOption('[data-testid=why-runner] select', 'runner-1');
    await text(
      page,
      '[data-testid=why-runner-answer]',
      'NOT_ELIGIBLE: not eligible: requires gpu=true',
      "runner-1's reason",
    );
    await shot(page, 'task-why');
    master.scheduler.cancel(['needs-gpu'], undefined);
  });
});
