// End-to-end test of the brlock visualiser in Debian's Chromium, driven by playwright-core.
// Expects the built page served at BRLOCK_URL (test.sh builds it and serves it on 127.0.0.1).
// Asserts what a person would see: the deadlock refusal and its cycle, lanes changing after a request
// from the form, a refusing holder highlighted, the grace period ending, a trace downloaded, loaded
// back and stepped through both ways, a bad trace reported on the page, and no console errors.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const base = process.env.BRLOCK_URL ?? 'http://127.0.0.1:8000/';
const out = process.env.BRLOCK_E2E_OUT ?? join(dirname(fileURLToPath(import.meta.url)), 'out');
mkdirSync(out, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.BRLOCK_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 1000 }, acceptDownloads: true });
const problems = [];
page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });

let passed = 0;
async function check(name, body) {
  try {
    await body();
    passed += 1;
    console.log(`ok - ${name}`);
  } catch (e) {
    await page.screenshot({ path: join(out, 'failure.png'), fullPage: true }).catch(() => {});
    console.log(`not ok - ${name}\n${e.stack}`);
    await browser.close();
    process.exit(1);
  }
}

const text = (selector) => page.locator(selector).first().innerText();
const count = (selector) => page.locator(selector).count();
const lane = (file, owner) => `.file[data-file="${file}"] .lane[data-owner="${owner}"]`;
/** Held ranges of every file as "file owner kind range", the lanes as a person reads them. */
const lanes = () => page.$$eval('.file', (files) => files.flatMap((f) => [...f.querySelectorAll('.lane')].flatMap((l) =>
  [...l.querySelectorAll('rect.held')].map((r) => `${f.dataset.file} ${l.dataset.owner} ${r.dataset.kind} ${r.dataset.range}`))));

await check('the page loads its wasm, served as application/wasm', async () => {
  const wasm = page.waitForResponse((r) => r.url().endsWith('.wasm'));
  await page.goto(base);
  const response = await wasm;
  assert.equal(response.status(), 200);
  assert.equal(response.headers()['content-type'], 'application/wasm');
  await page.waitForSelector('body[data-ready=true]');
  assert.match(await text('#outcome'), /Nothing has happened yet/);
});

await check('the deadlock example shows the refusal and the cycle', async () => {
  await page.selectOption('#example', 'deadlock');
  assert.equal(await text('#position'), 'step 0 of 8');
  await page.click('#steps li[data-outcome=deadlock]');
  assert.equal(await text('#position'), 'step 6 of 8');
  assert.equal(await page.getAttribute('#outcome .badge', 'data-outcome'), 'deadlock');
  assert.match(await text('#outcome .explain'), /Refused as a deadlock: waiting would close the cycle carol → alice → bob → carol\./);
  assert.equal(await text('#cycle'), 'Deadlock refused: carol → alice → bob → carol');
  assert.equal(await count('#graph .node.cycle'), 3);
  assert.equal(await count('#graph .edge.cycle'), 3);
  assert.equal(await page.getAttribute('#graph .edge.refused', 'data-from'), 'carol/carol');
  assert.equal(await page.getAttribute('#graph .edge.refused', 'data-to'), 'alice/alice');
  assert.equal(await count(`${lane('ledger', 'carol/carol')} .ghost`), 1, 'the refused request is drawn in carol\'s lane');
  // One step on, carol backs off: the cycle is gone and bob holds index.
  await page.click('#forward');
  assert.equal(await count('#cycle'), 0);
  assert.ok((await lanes()).includes('index bob/bob exclusive 0–99'));
});

await check('a request from the form changes the lanes, and a refusal highlights the holder', async () => {
  await page.selectOption('#profile', 'brlock');
  await page.click('#new-session');
  assert.equal(await text('#position'), 'step 0 of 0');
  const send = async (owner, kind, offset, length, wait = false) => {
    await page.selectOption('#op', 'lock');
    await page.fill('#file', 'notes.txt');
    await page.fill('#owner', owner);
    await page.check(`#kind-${kind}`, { force: true });
    await page.fill('#offset', String(offset));
    await page.fill('#length', String(length));
    await page.setChecked('#wait', wait);
    await page.click('#send');
  };
  await send('alice', 'exclusive', 0, 100);
  assert.deepEqual(await lanes(), ['notes.txt alice/alice exclusive 0–99']);
  assert.equal(await page.getAttribute('#outcome .badge', 'data-outcome'), 'granted');

  await send('bob', 'shared', 50, 100);
  assert.equal(await page.getAttribute('#outcome .badge', 'data-outcome'), 'denied');
  assert.match(await text('#outcome .explain'), /bob's shared 50–149 of notes\.txt conflicts with alice's exclusive lock over 0–99/);
  assert.equal(await count(`${lane('notes.txt', 'alice/alice')} rect.held.refuser`), 1);
  assert.equal(await count(`${lane('notes.txt', 'bob/bob')} .ghost`), 1);

  await send('bob', 'shared', 100, 100);
  assert.deepEqual(await lanes(), ['notes.txt alice/alice exclusive 0–99', 'notes.txt bob/bob shared 100–199']);
  assert.equal(await count('.refuser'), 0, 'a granted request highlights nobody');

  await send('carol', 'exclusive', 0, 150, true);
  assert.equal(await page.getAttribute('#outcome .badge', 'data-outcome'), 'blocked');
  assert.equal(await page.getAttribute(`${lane('notes.txt', 'carol/carol')} rect.waiter`, 'data-order'), '1');
  assert.equal(await page.getAttribute('#graph .edge', 'data-from'), 'carol/carol');
  assert.match(await text('.queue'), /carol X 0–149/);

  await page.click('[data-advance="1000"]');
  assert.equal(await text('#now'), '1 s');
  assert.equal(await text('#position'), 'step 5 of 5');
});

let downloaded;
await check('the trace downloads in the documented JSON-lines format', async () => {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  downloaded = join(out, download.suggestedFilename());
  await download.saveAs(downloaded);
  const lines = readFileSync(downloaded, 'utf8').trim().split('\n');
  const header = JSON.parse(lines[0]);
  assert.equal(header.brlock_trace, 1);
  assert.equal(header.epoch, 1);
  const steps = lines.slice(1).map((l) => JSON.parse(l));
  assert.deepEqual(steps.map((s) => (typeof s.event === 'string' ? s.event : Object.keys(s.event)[0])), ['lock', 'lock', 'lock', 'lock', 'tick']);
  assert.deepEqual(steps[1].event.lock.range, { offset: 50, length: 100 });
});

await check('a loaded trace file steps back and forth to the same pictures', async () => {
  await page.setInputFiles('#load-trace', downloaded);
  // The page reads the file asynchronously: wait for it to take the trace (or time out and fail).
  await page.waitForFunction(() => document.querySelector('#position')?.innerText === 'step 0 of 5');
  assert.equal(await text('#position'), 'step 0 of 5');
  assert.deepEqual(await lanes(), []);
  const seen = [];
  for (let i = 1; i <= 5; i += 1) {
    await page.click('#forward');
    seen.push(await lanes());
  }
  assert.equal(await text('#position'), 'step 5 of 5');
  assert.ok(await page.isDisabled('#forward'));
  await page.keyboard.press('ArrowLeft');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await text('#position'), 'step 3 of 5');
  assert.deepEqual(await lanes(), seen[2]);
  assert.deepEqual(await lanes(), ['notes.txt alice/alice exclusive 0–99', 'notes.txt bob/bob shared 100–199']);
  await page.click('#steps li[data-index="2"]');
  assert.equal(await page.getAttribute('#outcome .badge', 'data-outcome'), 'denied');
  assert.equal(await count('.refuser'), 1);
  await page.click('#first');
  assert.deepEqual(await lanes(), []);
  await page.keyboard.press('End');
  assert.deepEqual(await lanes(), seen[4]);
  assert.equal(await count('.file .waiter'), 1);
});

await check('the grace period counts down and ends when the clock reaches it', async () => {
  await page.selectOption('#example', 'grace');
  await page.click('#steps li[data-index="2"]');
  assert.equal(await text('#grace-remaining'), '28 s left');
  assert.match(await text('#grace-body'), /reclaimed\s+1 of 2/);
  assert.match(await text('#grace-body'), /nfs-b/);
  await page.click('#to-timer');
  assert.match(await text('#grace-body'), /not in grace/i);
  assert.match(await text('#outcome .explain'), /grace period ended; 2 unreclaimed lock\(s\) released/);
});

await check('a broken trace is reported on the page, not thrown', async () => {
  const bad = join(out, 'broken.jsonl');
  writeFileSync(bad, '{"brlock_trace":1}\n{"now":0,"event":"jump"}\n');
  await page.setInputFiles('#load-trace', bad);
  await page.waitForSelector('#error:not([hidden])');
  assert.match(await text('#error'), /line 2: unknown variant `jump`/);
  await page.click('#error button');
});

await check('the screenshot is taken and the console stayed clean', async () => {
  await page.selectOption('#example', 'deadlock');
  await page.click('#steps li[data-outcome=deadlock]');
  await page.screenshot({ path: join(out, 'visualiser.png'), fullPage: true });
  assert.deepEqual(problems, []);
});

await browser.close();
console.log(`${passed} checks passed; screenshot: ${join(out, 'visualiser.png')}`);
