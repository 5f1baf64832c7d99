/**
 * The dashboard of a standby master, in a real browser (Debian's Chromium, headless, driven by
 * playwright-core) against real masters on one database: the live connection is refused with
 * ESTANDBY, and the page says so with a link to the active master; when the active master stops and
 * this one takes over, the page goes live by itself. Screenshots go to .cache/test-output/dashboard/.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import type { Master } from '../../master/master';
import { createMaster, ROOT, tempDir } from '../helpers/cluster';
import { testDbName } from '../helpers/db';
import { nextEvent } from '../helpers/wait';

const CHROMIUM = '/usr/bin/chromium';
const DIST = path.join(ROOT, 'dashboard', 'dist', 'index.html');
const OUT = path.join(ROOT, '.cache', 'test-output', 'dashboard');
const WAIT = 30_000;

/** Resolves when `selector` is on the page (or gone, with `state: 'detached'`); otherwise fails naming `what`. */
async function see(page: Page, selector: string, what: string, state: 'visible' | 'detached' = 'visible') {
  try {
    return await page.waitForSelector(selector, { timeout: WAIT, state });
  } catch {
    throw new Error(`within ${WAIT} ms the page did not show ${what} (${selector}, ${state})`);
  }
}

describe('dashboard of a standby master', () => {
  const masters: Master[] = [];
  let browser: BrowserContext;
  const dir = tempDir('dashboard-standby');

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium`);
    // `.ci/run` builds the dashboard before the tests; a run on its own builds it here.
    if (!fs.existsSync(DIST)) execFileSync('npm', ['run', 'build:dashboard'], { cwd: ROOT, stdio: 'ignore' });
    fs.mkdirSync(OUT, { recursive: true });
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
    for (const m of masters) await m.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('shows a banner linking to the active master, and goes live once this master takes over', async () => {
    const dbName = testDbName('dashboard-standby');
    const active = createMaster(dbName, { leaseMs: 5000 });
    masters.push(active);
    await active.start();
    const standby = createMaster(dbName, { leaseMs: 5000 });
    masters.push(standby);
    await standby.start();
    expect(standby.leaseStatus()).toMatchObject({ role: 'standby', active: active.url });

    const page = await browser.newPage();
    await page.goto(standby.url);
    await see(page, '[data-testid=standby]', 'the standby banner');
    expect(await page.textContent('[data-testid=standby]')).toContain(
      'This master is a standby; the active master is at',
    );
    await see(page, '[data-testid=active-master]', 'the link to the active master');
    expect(await page.getAttribute('[data-testid=active-master]', 'href')).toBe(new URL(active.url).href);
    expect(await page.textContent('[data-testid=link]')).toBe('standby');
    await page.screenshot({ path: path.join(OUT, 'standby.png'), fullPage: true });

    const tookOver = nextEvent(standby, 'active', { what: 'the standby taking over', timeout: 15_000 });
    await active.close();
    await tookOver;
    await see(page, '[data-testid=standby]', 'the banner gone', 'detached');
    await page.waitForFunction(
      `document.querySelector('[data-testid=link]')?.textContent?.trim() === 'live'`,
      undefined,
      {
        timeout: WAIT,
      },
    );
  });
});
