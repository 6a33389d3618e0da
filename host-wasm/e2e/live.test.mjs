// The visualiser's live mode against a real brlockd, in Debian's Chromium (playwright-core).
// Starts `brlockd --web-root dist` on 127.0.0.1 (ephemeral ports, memory store), opens the page it
// serves with ?live, sends NLM calls with `nlm-script`, and asserts what a person would see: a lock
// and a queued waiter appear within 1 s of their calls, a share reservation is drawn, the wait-for
// graph has its edge; pausing holds what happens and resuming applies it; the downloaded trace is
// replayed by `brlock replay`; the console stays clean. Stops every process it started, by PID.
// Environment: BRLOCKD, NLM_SCRIPT, BRLOCK (binaries), BRLOCK_WEB (the built page), BRLOCK_E2E_OUT.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const need = (name) => process.env[name] ?? (() => { throw new Error(`${name} is not set (see test.sh)`); })();
const out = process.env.BRLOCK_E2E_OUT ?? join(here, 'out');
mkdirSync(out, { recursive: true });
const FOLLOW_MS = 1000; // the bound: a call shows on the page within 1 s

/** Lines a child prints, one promise at a time. */
function lines(stream) {
  const queue = [];
  const waiting = [];
  createInterface({ input: stream }).on('line', (l) => (waiting.length ? waiting.shift()(l) : queue.push(l)));
  return (ms = 10000) => (queue.length ? Promise.resolve(queue.shift()) : new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no line within ${ms} ms`)), ms);
    waiting.push((l) => { clearTimeout(t); resolve(l); });
  }));
}

const started = [];
function stopAll() {
  for (const child of started.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGTERM');
  }
}
process.on('exit', stopAll);

const server = spawn(need('BRLOCKD'), ['--listen', '127.0.0.1:0', '--store', 'memory', '--grace', '0',
  '--rpcbind', 'none', '--statd', 'none', '--portmap-port', '1', '--metrics', '127.0.0.1:0',
  '--web-root', need('BRLOCK_WEB')], { stdio: ['ignore', 'pipe', 'pipe'] });
started.push(server);
let serverLog = '';
server.stderr.on('data', (d) => { serverLog += d; });
const serverLine = lines(server.stdout);
let nlmAddr = null;
let httpAddr = null;
while (!nlmAddr || !httpAddr) {
  const line = await serverLine(30000);
  if (line.startsWith('listening on ')) nlmAddr = line.slice('listening on '.length).trim();
  if (line.startsWith('metrics on ')) httpAddr = line.slice('metrics on '.length).trim();
}

const client = spawn(need('NLM_SCRIPT'), [nlmAddr], { stdio: ['pipe', 'pipe', 'inherit'] });
started.push(client);
const answer = lines(client.stdout);
/** Sends one NLM call (nlm-script's command language) and returns brlockd's answer. */
async function call(command) {
  client.stdin.write(`${command}\n`);
  return answer();
}

const browser = await chromium.launch({
  executablePath: process.env.BRLOCK_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const problems = [];
const page = await browser.newPage({ viewport: { width: 1440, height: 1000 }, acceptDownloads: true });
page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });

let passed = 0;
async function check(name, body) {
  try {
    await body();
    passed += 1;
    console.log(`ok - ${name}`);
  } catch (e) {
    await page.screenshot({ path: join(out, 'live-failure.png'), fullPage: true }).catch(() => {});
    console.log(`not ok - ${name}\n${e.stack}\n--- brlockd stderr ---\n${serverLog}`);
    await browser.close();
    stopAll();
    process.exit(1);
  }
}

const file = (f) => `.file[data-file="${f}"]`;
/** Runs `command` and waits for `selector` on the page; returns the milliseconds from sending to seeing. */
async function shows(command, expect, selector) {
  const sent = Date.now();
  const said = await call(command);
  assert.ok(said.startsWith(expect), `${command}: ${said}`);
  await page.waitForSelector(selector, { timeout: FOLLOW_MS });
  return Date.now() - sent;
}

await check('brlockd serves the page, and ?live follows it from a snapshot', async () => {
  const wasm = page.waitForResponse((r) => r.url().endsWith('.wasm'));
  await page.goto(`http://${httpAddr}/?live`);
  const response = await wasm;
  assert.equal(response.headers()['content-type'], 'application/wasm');
  await page.waitForSelector('body[data-live=following]');
  assert.match(await page.locator('#live-status').innerText(), /Following .*: 0 events since the snapshot/);
  assert.equal(await page.locator('#steps li').first().locator('.what').innerText(), "the server's state, epoch 1");
  assert.ok(!(await page.locator('#request-card').isVisible()), 'no form that would add events of the page\'s own');
});

const timings = {};
await check('a lock taken over NLM appears within 1 s', async () => {
  timings.lock = await shows('lock host-a 101 editor fh-live 1 0 4096 0 0 1', 'granted',
    `${file('fh-live')} .lane[data-owner^="host-a/"] rect.held[data-kind=exclusive][data-range="0–4095"]`);
  assert.match(await page.locator(`${file('fh-live')} .lane-label`).first().textContent(), /host-a: svid 101 oh editor/);
});

await check('a blocked request appears as a queued waiter within 1 s, with its wait-for edge', async () => {
  timings.waiter = await shows('lock host-b 202 indexer fh-live 1 1024 1024 1 0 1', 'blocked',
    `${file('fh-live')} .lane[data-owner^="host-b/"] rect.waiter[data-order="1"]`);
  assert.match(await page.locator(`${file('fh-live')} .queue`).innerText(), /host-b: svid 202 oh indexer/);
  assert.equal(await page.locator('#graph .edge').count(), 1);
  assert.match(await page.getAttribute('#graph .edge', 'data-from'), /^host-b\//);
  assert.match(await page.getAttribute('#graph .edge', 'data-to'), /^host-a\//);
});

await check('a share reservation is drawn within 1 s', async () => {
  // NLM_SHARE fsh_mode 2 = deny write, fsh_access 1 = read.
  timings.share = await shows('share host-c viewer fh-live 2 1 0', 'granted',
    `${file('fh-live')} .shares .chip.share[data-access=read][data-deny=write]`);
  assert.match(await page.locator(`${file('fh-live')} .shares`).innerText(), /host-c: svid 0 oh viewer|host-c/);
  const stats = await page.locator('#stats').innerText();
  assert.match(stats, /1\s*held locks/);
  assert.match(stats, /1\s*waiters/);
  await page.screenshot({ path: join(out, 'live.png'), fullPage: true });
});

await check('pausing holds what happens; resuming applies it', async () => {
  await page.click('#live-pause');
  await page.waitForSelector('body[data-live=paused]');
  assert.equal(await call('unlock host-a 101 editor fh-live 0 0'), 'granted');
  await page.waitForFunction(() => /\d+ more held while paused/.test(document.querySelector('#live-status').textContent));
  assert.equal(await page.locator(`${file('fh-live')} .lane[data-owner^="host-a/"] rect.held`).count(), 1, 'paused: still drawn as it was');
  await page.click('#live-pause');
  await page.waitForSelector('body[data-live=following]');
  // The unlock released host-a and granted host-b's waiter (its GRANTED callback is now pending).
  await page.waitForSelector(`${file('fh-live')} .lane[data-owner^="host-b/"] rect.held`, { timeout: FOLLOW_MS });
  assert.equal(await page.locator(`${file('fh-live')} .lane[data-owner^="host-a/"] rect.held`).count(), 0);
});

await check('the downloaded trace is replayed by brlock replay', async () => {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#live-download')]);
  const path = join(out, 'live-trace.jsonl');
  await download.saveAs(path);
  const replayed = spawnSync(need('BRLOCK'), ['replay', path], { encoding: 'utf8' });
  assert.equal(replayed.status, 0, replayed.stderr);
  const outputs = replayed.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const shown = await page.evaluate(() => document.querySelector('#position').textContent);
  const [, , of] = shown.match(/step (\d+) of (\d+)/);
  assert.equal(outputs.length, Number(of), `${shown}; replay printed ${outputs.length} steps`);
  assert.ok(replayed.stdout.includes('"send_granted"'), 'the grant after the unlock is in the replay');
});

await check('the console stayed clean', async () => {
  assert.deepEqual(problems, []);
});

await browser.close();
client.stdin.end();
stopAll();
writeFileSync(join(out, 'live-timings.json'), JSON.stringify(timings));
console.log(`${passed} checks passed; sent → shown (ms): ${JSON.stringify(timings)}; screenshot: ${join(out, 'live.png')}`);
