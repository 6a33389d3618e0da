// End-to-end test of the brlock visualiser in Debian's Chromium, driven by playwright-core.
// Expects the built page served at BRLOCK_URL (test.sh builds it and serves it on 127.0.0.1).
// Asserts what a person would see: the deadlock refusal and its cycle (the refused edge naming its
// file), lanes changing after a request from the form, a refusing holder highlighted, share reservations
// entered and drawn, offsets above 2^53 shown exactly, graph labels that do not overlap, the grace
// period ending, a trace downloaded, loaded back and stepped through both ways, a bad trace reported on
// the page, a layout that works at 390 px, and no console errors.
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
const problems = [];
function watch(p) {
  p.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
  p.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  p.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  p.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  return p;
}
const page = watch(await browser.newPage({ viewport: { width: 1440, height: 1000 }, acceptDownloads: true }));

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
const svgText = (selector) => page.locator(selector).first().textContent();
const count = (selector) => page.locator(selector).count();
const lane = (file, owner) => `.file[data-file="${file}"] .lane[data-owner="${owner}"]`;
/** Held ranges of every file as "file owner kind range", the lanes as a person reads them. */
const lanes = () => page.$$eval('.file', (files) => files.flatMap((f) => [...f.querySelectorAll('.lane')].flatMap((l) =>
  [...l.querySelectorAll('rect.held')].map((r) => `${f.dataset.file} ${l.dataset.owner} ${r.dataset.kind} ${r.dataset.range}`))));
/** Share reservations of every file as "file owner access deny", the chips as a person reads them. */
const shares = (p = page) => p.$$eval('.file', (files) => files.flatMap((f) =>
  [...f.querySelectorAll('.shares .chip.share:not(.ghost)')].map((c) => `${f.dataset.file} ${c.dataset.owner} ${c.dataset.access} ${c.dataset.deny}`)));
/** Pairs of texts in the wait-for graph whose boxes overlap (edge labels and owners' names), by text. */
const overlappingGraphTexts = (p = page) => p.$$eval('#graph svg text', (texts) => {
  const boxes = texts.map((t) => ({ text: t.textContent, r: t.getBoundingClientRect() }));
  const pairs = [];
  boxes.forEach((a, i) => boxes.slice(i + 1).forEach((b) => {
    const w = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
    const h = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
    if (w > 0.5 && h > 0.5) pairs.push(`"${a.text}" × "${b.text}"`);
  }));
  return pairs;
});
async function send(fields) {
  const { op = 'lock', file = 'notes.txt', owner, kind = 'exclusive', offset = 0, length = 100, wait = false, access, deny } = fields;
  await page.selectOption('#op', op);
  await page.fill('#file', file);
  await page.fill('#owner', owner);
  if (op === 'share') {
    await page.selectOption('#access', access);
    await page.selectOption('#deny', deny);
  } else if (op !== 'unshare') {
    await page.check(`#kind-${kind}`, { force: true });
    await page.fill('#offset', String(offset));
    await page.fill('#length', String(length));
    if (op === 'lock') await page.setChecked('#wait', wait);
  }
  await page.click('#send');
}
const outcome = () => page.getAttribute('#outcome .badge', 'data-outcome');

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
  assert.equal(await svgText('#graph .edge-label.refused'), 'ledger · refused', 'the refused edge names the file carol asked for');
  assert.equal(await svgText('#graph .edge-label[data-from="alice/alice"]'), 'journal');
  assert.deepEqual(await overlappingGraphTexts(), []);
  // One step on, carol backs off: the cycle is gone and bob holds index.
  await page.click('#forward');
  assert.equal(await count('#cycle'), 0);
  assert.ok((await lanes()).includes('index bob/bob exclusive 0–99'));
});

await check('a request from the form changes the lanes, and a refusal highlights the holder', async () => {
  await page.selectOption('#profile', 'brlock');
  await page.click('#new-session');
  assert.equal(await text('#position'), 'step 0 of 0');
  await send({ owner: 'alice', kind: 'exclusive', offset: 0, length: 100 });
  assert.deepEqual(await lanes(), ['notes.txt alice/alice exclusive 0–99']);
  assert.equal(await page.getAttribute('#outcome .badge', 'data-outcome'), 'granted');

  await send({ owner: 'bob', kind: 'shared', offset: 50, length: 100 });
  assert.equal(await page.getAttribute('#outcome .badge', 'data-outcome'), 'denied');
  assert.match(await text('#outcome .explain'), /bob's shared 50–149 of notes\.txt conflicts with alice's exclusive lock over 0–99/);
  assert.equal(await count(`${lane('notes.txt', 'alice/alice')} rect.held.refuser`), 1);
  assert.equal(await count(`${lane('notes.txt', 'bob/bob')} .ghost`), 1);

  await send({ owner: 'bob', kind: 'shared', offset: 100, length: 100 });
  assert.deepEqual(await lanes(), ['notes.txt alice/alice exclusive 0–99', 'notes.txt bob/bob shared 100–199']);
  assert.equal(await count('.refuser'), 0, 'a granted request highlights nobody');

  await send({ owner: 'carol', kind: 'exclusive', offset: 0, length: 150, wait: true });
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

await check('share reservations are entered from the form and drawn per file and owner', async () => {
  await page.click('#new-session');
  await send({ op: 'share', file: 'plan.txt', owner: 'alice', access: 'read', deny: 'write' });
  assert.equal(await outcome(), 'granted');
  assert.deepEqual(await shares(), ['plan.txt alice/alice read write']);
  assert.match(await text('.file[data-file="plan.txt"] .shares'), /alice\s+access read\s+deny write/);
  assert.match(await text('.file[data-file="plan.txt"] .file-title'), /1 share reservation/);

  await send({ op: 'share', file: 'plan.txt', owner: 'bob', access: 'write', deny: 'none' });
  assert.equal(await outcome(), 'share_denied');
  assert.match(await text('#outcome .explain'), /bob's access write · deny none on plan\.txt meets alice's share reservation \(access read · deny write\)/);
  assert.equal(await count('.shares .chip.ghost[data-owner="bob/bob"]'), 1, 'the refused reservation is drawn as a ghost');
  assert.equal(await count('.shares .chip.refuser[data-owner="alice/alice"]'), 1, 'the refusing reservation is outlined');
  assert.deepEqual(await shares(), ['plan.txt alice/alice read write'], 'a refusal changes nothing');

  await send({ op: 'share', file: 'plan.txt', owner: 'carol', access: 'both', deny: 'none' });
  assert.equal(await outcome(), 'share_denied', 'carol would write, which alice denies');
  await send({ op: 'share', file: 'plan.txt', owner: 'carol', access: 'read', deny: 'none' });
  await send({ op: 'lock', file: 'plan.txt', owner: 'carol', kind: 'shared', offset: 0, length: 10 });
  assert.deepEqual(await shares(), ['plan.txt alice/alice read write', 'plan.txt carol/carol read none']);
  assert.deepEqual(await lanes(), ['plan.txt carol/carol shared 0–9'], 'shares and byte-range locks side by side');

  await send({ op: 'unshare', file: 'plan.txt', owner: 'alice' });
  assert.equal(await outcome(), 'granted');
  assert.deepEqual(await shares(), ['plan.txt carol/carol read none']);
  assert.match(await text('#steps li[data-index="1"] .what'), /alice share plan\.txt access read deny write/);
  await page.click('#steps li[data-index="2"]');
  assert.deepEqual(await shares(), ['plan.txt alice/alice read write'], 'stepping back redraws the shares of then');

  await page.selectOption('#example', 'shares');
  await page.click('#last');
  assert.deepEqual(await shares(), ['report.docx bob/bob write none', 'report.docx carol/carol read none']);
});

await check('offsets above 2^53 go in, come back and are shown exactly', async () => {
  await page.click('#new-session');
  const big = '9007199254740993'; // 2^53 + 1: a JS number would make it …992
  await send({ file: 'huge.img', owner: 'alice', offset: big, length: 1 });
  assert.equal(await outcome(), 'granted');
  assert.deepEqual(await lanes(), [`huge.img alice/alice exclusive ${big}–${big}`]);
  await send({ file: 'huge.img', owner: 'bob', offset: '9007199254740992', length: 1 });
  assert.equal(await outcome(), 'granted', 'the byte before is free');
  await send({ file: 'huge.img', owner: 'carol', offset: big, length: 0 });
  assert.equal(await outcome(), 'denied');
  assert.match(await text('#outcome .explain'), new RegExp(`carol's exclusive ${big}–EOF of huge\\.img conflicts with alice's exclusive lock over ${big}–${big}`));
  assert.equal(await count(`${lane('huge.img', 'alice/alice')} rect.held.refuser`), 1);
  assert.deepEqual(await lanes(), [`huge.img alice/alice exclusive ${big}–${big}`, 'huge.img bob/bob exclusive 9007199254740992–9007199254740992']);
  assert.match(await text('#steps li[data-index="1"] .what'), new RegExp(`lock X huge\\.img ${big}–${big}`));
  assert.match(await page.locator('#outcome details.json pre').textContent(), new RegExp(`"offset": ${big},`));
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  await download.saveAs(join(out, 'huge.jsonl'));
  assert.match(readFileSync(join(out, 'huge.jsonl'), 'utf8'), new RegExp(`"owner":"alice","file":"huge.img","range":\\{"offset":${big},"length":1\\}`));
  // Back to the start and forward again: the same exact lanes.
  await page.click('#first');
  await page.click('#last');
  assert.deepEqual((await lanes())[0], `huge.img alice/alice exclusive ${big}–${big}`);
});

await check('wait-for graph labels do not overlap when many owners wait', async () => {
  await page.click('#new-session');
  await send({ file: 'queue.dat', owner: 'alice' });
  for (const owner of ['bob', 'carol', 'dave', 'erin', 'frank']) await send({ file: 'queue.dat', owner, wait: true });
  assert.equal(await count('#graph .edge'), 15, 'every waiter waits for the holder and each earlier waiter');
  assert.deepEqual(await overlappingGraphTexts(), []);
  const outside = await page.$$eval('#graph .edge-label text', (texts) => {
    const svg = document.querySelector('#graph svg').getBoundingClientRect();
    return texts.map((t) => t.getBoundingClientRect()).filter((r) => r.left < svg.left - 0.5 || r.right > svg.right + 0.5 || r.top < svg.top - 0.5 || r.bottom > svg.bottom + 0.5).length;
  });
  assert.equal(outside, 0, 'every label inside the graph');
  await page.locator('#graph').screenshot({ path: join(out, 'graph-many.png') });
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

await check('at 390 px wide the layout is one readable column', async () => {
  const phone = watch(await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 }));
  await phone.goto(`${base}#example=deadlock&step=6`);
  await phone.waitForSelector('body[data-ready=true]');
  const widths = await phone.evaluate(() => {
    const w = (sel) => document.querySelector(sel).getBoundingClientRect().width;
    return { page: document.documentElement.scrollWidth, controls: w('.column.controls'), view: w('.column.view'),
      timeline: w('.column.timeline'), files: w('#files'), lanes: w('.file svg.lanes'), graph: w('#graph svg') };
  });
  assert.ok(widths.page <= 390, `no sideways scrolling: ${JSON.stringify(widths)}`);
  assert.ok(widths.view >= 340, `the centre column keeps the width: ${JSON.stringify(widths)}`);
  assert.ok(widths.controls >= 340 && widths.timeline >= 340, `every column full width: ${JSON.stringify(widths)}`);
  assert.ok(widths.lanes <= widths.files + 0.5 && widths.graph <= widths.files + 0.5, `drawings fit: ${JSON.stringify(widths)}`);
  assert.equal(await phone.locator('#cycle').innerText(), 'Deadlock refused: carol → alice → bob → carol');
  assert.deepEqual(await overlappingGraphTexts(phone), []);
  // The lanes' labels are still legible: the SVG is drawn at its own width, not shrunk from 520 px.
  const scale = await phone.$eval('.file svg.lanes', (svg) => svg.getBoundingClientRect().width / svg.viewBox.baseVal.width);
  assert.ok(scale > 0.95, `lanes drawn at scale ${scale}`);
  await phone.screenshot({ path: join(out, 'visualiser-390.png'), fullPage: true });
  await phone.close();
});

await check('the screenshot is taken and the console stayed clean', async () => {
  await page.selectOption('#example', 'deadlock');
  await page.click('#steps li[data-outcome=deadlock]');
  await page.screenshot({ path: join(out, 'visualiser.png'), fullPage: true });
  await page.selectOption('#example', 'shares');
  await page.click('#steps li[data-index="4"]');
  await page.locator('.column.view').screenshot({ path: join(out, 'shares.png') });
  assert.deepEqual(problems, []);
});

await browser.close();
console.log(`${passed} checks passed; screenshot: ${join(out, 'visualiser.png')}`);
