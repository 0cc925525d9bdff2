// Browser tests: Debian's Chromium driven by playwright-core against the running stack.
//
//   OPENBANK_UI_URL      the web UI (default: the gateway, which serves frontend/dist).
//                        When it does not serve the built UI, the tests serve dist/ with `vite preview`
//                        proxied to OPENBANK_GATEWAY_URL (default GRAPHQL_URL, as in `.openbank/env`, else
//                        http://localhost:8888).
//   SCREENSHOT_DIR       where each page is saved at 1280 px and 375 px (default test-results/).
//   CHROMIUM             the browser (default /usr/bin/chromium).
//   EMPLOYEE_PASSWORD    or the file ../.openbank/employee-password.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const screenshots = resolve(root, process.env.SCREENSHOT_DIR ?? 'test-results');
const gateway = process.env.OPENBANK_GATEWAY_URL ?? process.env.GRAPHQL_URL ?? 'http://localhost:8888';
const TIMEOUT = 20_000;

let base = process.env.OPENBANK_UI_URL ?? gateway;
let preview;
let browser;

async function servesUi(url) {
  try {
    const html = await (await fetch(url)).text();
    return html.includes('id="root"');
  } catch {
    return false;
  }
}

async function startPreview() {
  const port = 4173 + Math.floor(Math.random() * 500);
  preview = spawn(
    process.execPath,
    [resolve(root, 'node_modules/vite/bin/vite.js'), 'preview', '--port', String(port), '--strictPort'],
    { cwd: root, env: { ...process.env, GATEWAY_URL: gateway }, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const url = `http://localhost:${port}`;
  for (let i = 0; i < 600; i++) {
    if (await servesUi(url)) return url;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`vite preview did not serve ${url}`);
}

function employeePassword() {
  if (process.env.EMPLOYEE_PASSWORD) return process.env.EMPLOYEE_PASSWORD;
  return readFileSync(resolve(root, '../.openbank/employee-password'), 'utf8').trim();
}

async function newPage(width = 1280) {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => console.error('page error:', e.message));
  return page;
}

async function shoot(page, name) {
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: resolve(screenshots, `${name}-${page.viewportSize().width}.png`), fullPage: true });
}

/** Screenshots at 1280 px and at 375 px; at 375 px the page must not scroll sideways. */
async function shootBoth(page, name) {
  await shoot(page, name);
  await page.setViewportSize({ width: 375, height: 800 });
  await page.waitForTimeout(150);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${name} is ${overflow} px wider than 375 px`);
  await shoot(page, name);
  await page.setViewportSize({ width: 1280, height: 900 });
}

const unique = () => `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;

async function register(page, username) {
  await page.goto(`${base}/client`);
  const form = page.locator('form', { has: page.getByRole('heading', { name: 'Open an account' }) });
  await form.getByLabel('User name').fill(username);
  await form.getByLabel('Password').fill('correct horse battery');
  await form.getByRole('button', { name: 'Open an account' }).click();
  const opened = page.getByTestId('balance').filter({ hasText: '€ 0,00' });
  const refused = form.getByRole('alert');
  await opened.or(refused).waitFor();
  if (await refused.count()) throw new Error(`registration refused: ${await refused.textContent()}`);
  return page.getByTestId('iban').getAttribute('data-iban');
}

const balanceText = (page) => page.getByTestId('balance').textContent();

/** Clicks inside the page and measures, in the page, the time until the balance shows `expected`. */
async function clickAndMeasure(page, testId, expected) {
  return page.evaluate(
    ({ testId, expected }) =>
      new Promise((resolvePromise, reject) => {
        const balance = document.querySelector('[data-testid="balance"]');
        const button = document.querySelector(`[data-testid="${testId}"]`);
        if (!balance || !button) return reject(new Error('balance or button missing'));
        let start = 0;
        const observer = new MutationObserver(() => {
          if (balance.textContent === expected) {
            observer.disconnect();
            resolvePromise(performance.now() - start);
          }
        });
        observer.observe(balance, { childList: true, characterData: true, subtree: true });
        setTimeout(() => {
          observer.disconnect();
          reject(new Error(`balance stayed ${balance.textContent}`));
        }, 15000);
        start = performance.now();
        button.click();
      }),
    { testId, expected },
  );
}

before(async () => {
  assert.ok(existsSync(resolve(root, 'dist/index.html')), 'run `npm run build` first');
  if (!(await servesUi(base))) {
    if (process.env.OPENBANK_UI_URL) throw new Error(`${base} does not serve the web UI`);
    base = await startPreview();
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking'],
  });
});

after(async () => {
  await browser?.close();
  preview?.kill();
});

describe('the bank in a browser', () => {
  const alice = `alice-${unique()}`;
  const bob = `bob-${unique()}`;
  let alicePage;
  let bobPage;
  let aliceIban;
  let bobIban;

  test('home shows the company feed and live stats', async () => {
    const page = await newPage();
    await page.goto(base);
    await page.locator('.stat-value').filter({ hasText: /^\d[\d.]*$/ }).first().waitFor();
    // The sparkline fills as the stats are polled every second.
    await page.waitForFunction(() => Number(document.querySelector('.sparkline')?.getAttribute('data-points')) >= 3);
    await page.getByTestId('transactions').locator('tbody tr').first().waitFor();
    await shootBoth(page, 'home');
    await page.context().close();
  });

  test('two users register; a deposit and a transfer update both screens live', async () => {
    alicePage = await newPage();
    bobPage = await newPage();
    [aliceIban, bobIban] = await Promise.all([register(alicePage, alice), register(bobPage, bob)]);
    assert.match(aliceIban, /^NL\d\dOPEN\d{10}$/);
    assert.notEqual(aliceIban, bobIban);
    await shootBoth(alicePage, 'client-signed-in');

    const ms = await clickAndMeasure(alicePage, 'deposit-100', '€ 100,00');
    console.log(`deposit click -> balance in the DOM: ${ms.toFixed(1)} ms`);
    await alicePage.getByTestId('outcome').filter({ hasText: 'done' }).waitFor();

    const form = alicePage.locator('form', { has: alicePage.getByRole('heading', { name: 'Transfer money' }) });
    await form.getByLabel('To (IBAN)').fill(bobIban);
    await form.getByText('Valid IBAN').waitFor();
    await form.getByLabel('Amount in euros').fill('30,25');
    await form.getByText('= € 30,25').waitFor();
    await form.getByLabel('Description').fill('Dinner <b>& drinks</b>');
    await form.getByRole('button', { name: 'Transfer' }).click();
    await alicePage.getByTestId('outcome').and(alicePage.locator('[data-status="CONFIRMED"]')).waitFor();

    // Both screens update without a reload.
    await alicePage.getByTestId('balance').filter({ hasText: '€ 69,75' }).waitFor();
    await bobPage.getByTestId('balance').filter({ hasText: '€ 30,25' }).waitFor();
    await bobPage.getByTestId('transactions').getByText('Dinner <b>& drinks</b>').waitFor();
    await bobPage.getByTestId('transactions').getByText('+ € 30,25').waitFor();
    await alicePage.getByTestId('transactions').getByText('− € 30,25').waitFor();
    assert.equal(await balanceText(alicePage), '€ 69,75');
    await shootBoth(bobPage, 'client-received');
  });

  test('the IBAN is checked while typing and a refused transfer shows its reason', async () => {
    const form = alicePage.locator('form', { has: alicePage.getByRole('heading', { name: 'Transfer money' }) });
    const wrong = bobIban.slice(0, -1) + String((Number(bobIban.slice(-1)) + 1) % 10);
    await form.getByLabel('To (IBAN)').fill(wrong);
    await form.getByText('The check digits do not match').waitFor();
    await form.getByLabel('To (IBAN)').fill(bobIban);
    await form.getByLabel('Amount in euros').fill('1.000.000,00');
    await form.getByRole('button', { name: 'Transfer' }).click();
    const outcome = alicePage.getByTestId('outcome').and(alicePage.locator('[data-status="FAILED"]'));
    await outcome.waitFor();
    const text = await outcome.textContent();
    assert.match(text, /refused/);
    assert.match(text, /INSUFFICIENT_FUNDS|LIMIT/);
    assert.equal(await balanceText(alicePage), '€ 69,75');
    await shootBoth(alicePage, 'client-refused');
  });

  test('the transaction list has "show N" and field toggles', async () => {
    await alicePage.getByTestId('show-count').selectOption('5');
    await alicePage.getByRole('checkbox', { name: 'Description' }).uncheck();
    const headers = await alicePage.getByTestId('transactions').locator('th').allTextContents();
    assert.deepEqual(headers.map((h) => h.toLowerCase()), ['time', 'from / to', 'amount', 'balance after']);
    await alicePage.getByRole('checkbox', { name: 'Description' }).check();
  });

  test('a lost websocket is announced and reconnects', async () => {
    const page = await newPage();
    let sockets = 0;
    let current;
    await page.routeWebSocket(/\/graphql\/ws$/, (ws) => {
      sockets += 1;
      current = ws;
      ws.connectToServer();
    });
    await page.goto(base);
    await page.getByTestId('transactions').locator('tbody tr').first().waitFor();
    assert.equal(await page.getByTestId('link-banner').count(), 0);
    await current.close({ code: 1012, reason: 'service restart' });
    await page.getByTestId('link-banner').waitFor();
    await shoot(page, 'reconnecting');
    await page.getByTestId('link-banner').waitFor({ state: 'detached' });
    assert.ok(sockets >= 2, 'the page opened a new socket');
    await page.context().close();
  });

  test('the employee lists both accounts and follows one live', async () => {
    const page = await newPage();
    await page.goto(`${base}/employee`);
    await page.getByLabel('User name').fill('employee');
    await page.getByLabel('Password').fill(employeePassword());
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('accounts').waitFor();
    const idle = () => page.locator('[data-testid="account-list"][aria-busy="false"]').waitFor();
    await page.getByTestId('page-size').selectOption('100');
    await idle();
    const found = new Set();
    for (let i = 0; i < 200 && found.size < 2; i++) {
      for (const iban of [aliceIban, bobIban]) {
        if (await page.locator(`tr[data-iban="${iban}"]`).count()) found.add(iban);
      }
      const next = page.getByRole('button', { name: 'Next →' });
      if (found.size === 2 || (await next.isDisabled())) break;
      await next.click();
      await idle();
    }
    assert.equal(found.size, 2, 'both accounts are listed');
    // Go back to Alice's page and follow her account.
    while (!(await page.locator(`tr[data-iban="${aliceIban}"]`).count())) {
      await page.getByRole('button', { name: '← Previous' }).click();
      await idle();
    }
    await page.locator(`tr[data-iban="${aliceIban}"]`).getByRole('button', { name: 'Follow' }).click();
    const feed = page.getByRole('region', { name: /^Live: / });
    await feed.getByText('− € 30,25').waitFor();
    await alicePage.getByTestId('withdraw-20').click();
    await feed.getByText('− € 20,00').waitFor();
    await feed.getByText('€ 49,75').waitFor();
    await shootBoth(page, 'employee');
    await page.context().close();
  });

  test('a client signs out; the session survives a reload until then', async () => {
    await bobPage.reload();
    await bobPage.getByTestId('balance').filter({ hasText: '€ 30,25' }).waitFor();
    const stored = await bobPage.evaluate(() => sessionStorage.getItem('openbank.session'));
    assert.ok(stored && !bobPage.url().includes(JSON.parse(stored).token));
    await bobPage.getByRole('button', { name: 'Sign out' }).click();
    await bobPage.getByRole('heading', { name: 'Open an account' }).waitFor();
    assert.equal(await bobPage.evaluate(() => sessionStorage.getItem('openbank.session')), null);
    await shootBoth(bobPage, 'client-signed-out');
    await alicePage.context().close();
    await bobPage.context().close();
  });

  test('the pipeline page shows non-zero rates while the heartbeat runs', async () => {
    const page = await newPage();
    await page.goto(`${base}/pipeline`);
    await page.getByRole('heading', { name: 'Pipeline' }).waitFor();
    // A rate needs two of the gateway's samples (one a second); every stage moves while the heartbeat beats.
    const rates = () =>
      page.evaluate(() =>
        Object.fromEntries(
          ['heartbeat', 'generator', 'handler', 'projection'].map((name) => [
            name,
            Number(document.querySelector(`[data-testid="stage-${name}"]`)?.getAttribute('data-rate') || 0),
          ]),
        ),
      );
    const deadline = Date.now() + 30_000;
    let seen = await rates();
    while (!Object.values(seen).every((r) => r > 0)) {
      assert.ok(Date.now() < deadline, `a stage shows no work after 30 s: ${JSON.stringify(seen)}`);
      await page.waitForTimeout(500);
      seen = await rates();
    }
    console.log(`pipeline rates (records/s): ${JSON.stringify(seen)}`);
    await assert.doesNotReject(
      page.getByTestId('stage-handler').filter({ hasText: /lag \d/ }).waitFor(),
      'the handler shows its lag',
    );
    // The charts scroll: one point a second.
    await page.waitForFunction(() =>
      [...document.querySelectorAll('figure.chart [data-points]')].every((el) => Number(el.getAttribute('data-points')) >= 3),
    );
    assert.equal(await page.locator('figure.chart canvas').count() >= 3, true, 'three uPlot charts');
    await shootBoth(page, 'pipeline');
    await page.context().close();
  });

  test('the results page draws and compares load-test runs', async () => {
    const page = await newPage();
    const listed = await (
      await fetch(`${gateway}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ loadTestRuns { id graphs steps { cost { component } } } }' }),
      })
    ).json();
    const serverRuns = listed.data?.loadTestRuns ?? [];
    await page.goto(`${base}/results`);
    await page.getByRole('heading', { name: 'Load-test results' }).waitFor();
    if (serverRuns.length > 0) {
      // The newest run the gateway lists is drawn at once, its CPU and memory from its samples (loadTestResources)
      // and, when its steps carry a cost, where its CPU goes.
      const id = serverRuns[0].id;
      await page.locator(`tr[data-run="${id}"]`).waitFor();
      await page.waitForFunction(() => document.querySelectorAll('[data-testid="charts"] canvas').length >= 2);
      await page.locator(`figure[aria-label="CPU per component: ${id}"] canvas`).waitFor();
      await page.locator(`figure[aria-label="Memory per component: ${id}"] canvas`).waitFor();
      if (serverRuns[0].steps.some((s) => s.cost.length > 0)) {
        await page.locator(`figure[aria-label="CPU per operation by component: ${id}"] canvas`).waitFor();
      }
    } else {
      await page.getByText("No runs in the gateway's results folder yet").waitFor();
    }
    const run = (id, scale) => ({
      name: `${id}.json`,
      mimeType: 'application/json',
      buffer: Buffer.from(
        JSON.stringify({
          version: 1,
          id,
          mode: 'run',
          config: { slo_kind: 'event', slo_p99_ms: 100 },
          max_sustainable_rate: 500,
          steps: [100, 250, 500, 1000].map((r) => ({
            offered_rate: r,
            achieved_rate: Math.min(r, 800 * scale),
            latency: { event: { count: r * 30, p50_ms: (2 + r / 200) * scale, p99_ms: (8 + r / 20) * scale } },
            cost: {
              postgres: { cpu_us_per_op: 700 * scale },
              kafka: { cpu_us_per_op: 500 * scale },
              'graphql-endpoint': { cpu_us_per_op: 550 * scale },
              'load-test': { cpu_us_per_op: 300 },
            },
            errors_by_kind: r === 1000 ? { OVERLOADED: 120, transport: 3 } : {},
          })),
          resources: Object.fromEntries(
            ['postgres', 'kafka', 'command-handler', 'graphql-endpoint'].map((c, k) => [
              c,
              Array.from({ length: 30 }, (_, t) => ({ t, cpu_percent: 10 * (k + 1) + (t % 5), rss_mib: 30 + 20 * k, processes: 1 })),
            ]),
          ),
        }),
      ),
    });
    await page.getByTestId('run-files').setInputFiles([run('baseline', 1), run('tuned', 0.6)]);
    await page.getByTestId('opened-runs').getByText('tuned').waitFor();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="charts"] canvas').length >= 9);
    // Where the CPU goes, per run, and the bank's cost of both runs in one chart.
    await page.locator('figure[aria-label="CPU per operation by component: tuned"] canvas').waitFor();
    await page.locator('figure[aria-label="The bank\'s CPU per operation against offered load"] canvas').waitFor();
    await page.getByTestId('errors-by-kind').getByText('OVERLOADED 120, transport 3').first().waitFor();
    await page.getByTestId('run-files').setInputFiles([{ name: 'bad.json', mimeType: 'application/json', buffer: Buffer.from('{') }]);
    await page.getByRole('alert').getByText('bad.json: not JSON').waitFor();
    await shootBoth(page, 'results');
    await page.context().close();
  });

  test('GraphiQL is bundled, loads without internet and runs a query', async () => {
    const page = await newPage();
    const external = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(base) && !r.url().startsWith('data:')) external.push(r.url());
    });
    await page.goto(`${base}/graphiql.html`);
    await page.locator('.graphiql-query-editor').getByText('bankStats').waitFor();
    await page.locator('.graphiql-execute-button').click();
    await page.waitForFunction(() => /"transfersPerSecond": \d/.test(document.querySelector('.result-window')?.textContent ?? ''));
    assert.deepEqual(external, [], 'nothing is loaded from outside');
    await shootBoth(page, 'graphiql');
    await page.context().close();
  });
});
