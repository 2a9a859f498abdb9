/**
 * The demo end to end in a real headless Chromium (Debian's `chromium`, driven by
 * playwright-core): the dashboard shows three nodes and the whole bucket grid, adding a node
 * changes the grid, one shopper sees the same cart through two nodes, and the cart survives a
 * graceful stop of the node that held it, while the dashboard's load generator runs without a
 * failed request. A screenshot of the dashboard is saved to `test-artifacts/dashboard.png`.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemo, type DemoProcess } from '../demo-process.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));
/** Flags this machine needs; without the background-networking ones Chromium's connections are refused. */
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let demo: DemoProcess;
let context: BrowserContext;
let profile: string;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y --no-install-recommends chromium); .ci/run does this`);
  }
  demo = await startDemo();
  profile = mkdtempSync(join(tmpdir(), 'wadi-chromium-'));
  // headless: true adds --headless; the persistent context gets the fresh --user-data-dir above.
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1440, height: 1050 } });
}, 90_000);

afterAll(async () => {
  await context?.close();
  if (profile !== undefined) rmSync(profile, { recursive: true, force: true });
  const code = await demo?.stop();
  expect(code).toBe(0);
}, 60_000);

/**
 * Waits until the dashboard shows `ids` as up, every bucket of the grid owned by one of them, and
 * (the demo runs with one backup per bucket) backed up by another of them, every node holding some.
 */
async function clusterShown(page: Page, ids: string[]): Promise<void> {
  await page.waitForFunction(
    (expected) => {
      const cards = [...document.querySelectorAll<HTMLElement>('#nodes [data-node]')].filter((card) => card.dataset['state'] === 'up').map((card) => card.dataset['node']);
      const cells = [...document.querySelectorAll<HTMLElement>('#grid .cell')];
      const owners = new Set(cells.map((cell) => cell.dataset['owner']));
      const backups = new Set(cells.map((cell) => cell.dataset['backups']));
      return (
        JSON.stringify(cards.sort()) === JSON.stringify([...expected].sort()) &&
        cells.length === 1024 &&
        owners.size === expected.length &&
        expected.every((id) => owners.has(id)) &&
        cells.every((cell) => expected.includes(cell.dataset['backups']!) && cell.dataset['backups'] !== cell.dataset['owner']) &&
        expected.every((id) => backups.has(id))
      );
    },
    ids,
    { timeout: 60_000, polling: 200 },
  );
}

async function cartOf(page: Page): Promise<Record<string, string>> {
  await page.waitForSelector('#cart[data-items]');
  return page.$$eval('#cart tbody tr', (rows) => Object.fromEntries(rows.map((row) => [(row as HTMLElement).dataset['sku']!, row.children[1]!.textContent!])));
}

describe('the demo in a browser', () => {
  it('dashboard, shop through two nodes, add and stop nodes under load, screenshot', { timeout: 180_000 }, async () => {
    const dashboard = await context.newPage();
    await dashboard.goto(`${demo.dashboard}/`);
    await dashboard.waitForSelector('#live:not(.off)');
    await clusterShown(dashboard, ['n1', 'n2', 'n3']);
    expect(await dashboard.locator('.node .crown:not([hidden])').count()).toBe(1);
    // The demo's nodes share a store: its session count is shown (a number, once counted).
    await dashboard.waitForFunction(() => /^[\d,]+$/.test(document.getElementById('shared')!.textContent!), undefined, { timeout: 30_000 });

    // Load from the dashboard's button: a few shoppers, through the join and the leave below.
    await dashboard.fill('#load-users', '8');
    await dashboard.fill('#load-seconds', '0');
    await dashboard.click('#load-start');
    await dashboard.waitForFunction(() => Number(document.getElementById('load-requests')!.textContent!.replace(/,/g, '')) > 0, undefined, { timeout: 30_000 });

    // Add a node: it appears, and the grid changes to give it buckets.
    const before = await dashboard.$$eval('#grid .cell', (cells) => cells.map((cell) => (cell as HTMLElement).dataset['owner']));
    await dashboard.click('#add-node');
    await clusterShown(dashboard, ['n1', 'n2', 'n3', 'n4']);
    const after = await dashboard.$$eval('#grid .cell', (cells) => cells.map((cell) => (cell as HTMLElement).dataset['owner']));
    expect(after.filter((owner) => owner === 'n4').length).toBeGreaterThan(0);
    expect(after.filter((owner, bucket) => owner !== before[bucket]).length).toBeGreaterThan(0);

    // One shopper, two nodes, one cart. (Cookies are per host, not per port: both nodes get it.)
    const shop = await context.newPage();
    await shop.goto(`${demo.shops[0]}/`);
    await shop.waitForSelector('#node[data-node="n1"]');
    for (const [sku, quantity] of [['apple', '1'], ['apple', '2'], ['cheese', '1']] as const) {
      await shop.click(`#products button[data-sku="${sku}"]`);
      await shop.waitForFunction(([expectedSku, expected]) => document.querySelector(`#cart tbody tr[data-sku="${expectedSku}"]`)?.children[1]?.textContent === expected, [sku, quantity] as const);
    }
    expect(await cartOf(shop)).toEqual({ apple: '2', cheese: '1' });
    const sessionId = await shop.textContent('#session');
    await shop.goto(`${demo.shops[1]}/`);
    await shop.waitForSelector('#node[data-node="n2"]');
    expect(await shop.textContent('#session')).toBe(sessionId);
    expect(await cartOf(shop)).toEqual({ apple: '2', cheese: '1' });

    // Where is it? The dashboard's lookup names the node holding the cart.
    await dashboard.fill('#where-id', sessionId!);
    await dashboard.click('#where-form button');
    await dashboard.waitForSelector('#where-result tr.location td[data-node]:not([data-node=""])');
    const holder = await dashboard.$eval('#where-result tr.location td[data-node]:not([data-node=""])', (cell) => (cell as HTMLElement).dataset['node']!);
    expect(['n1', 'n2', 'n3', 'n4']).toContain(holder);
    expect(await dashboard.locator('#grid .cell.found').count()).toBe(1);

    // Stop that node gracefully: its sessions move, the cart is intact on another node.
    await dashboard.click(`.node[data-node="${holder}"] button.stop`);
    await dashboard.waitForSelector(`.node[data-node="${holder}"][data-state="stopped"]`, { timeout: 90_000 });
    const remaining = ['n1', 'n2', 'n3', 'n4'].filter((id) => id !== holder);
    await clusterShown(dashboard, remaining);
    const other = demo.shops[Number(remaining[0]!.slice(1)) - 1] ?? demo.shops[0]!;
    await shop.goto(`${other}/`);
    await shop.waitForSelector(`#node[data-node="${remaining[0]}"]`);
    expect(await shop.textContent('#session')).toBe(sessionId);
    expect(await cartOf(shop)).toEqual({ apple: '2', cheese: '1' });

    // The load ran through the join and the graceful leave without a failed request.
    await dashboard.waitForTimeout(1_000);
    mkdirSync(ARTIFACTS, { recursive: true });
    await dashboard.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
    expect(await dashboard.textContent('#load-failures')).toBe('0');
    expect(await dashboard.textContent('#load-mismatches')).toBe('0');
    await dashboard.click('#load-stop');
    await dashboard.waitForSelector('#load-start:not([disabled])');
  });
});
