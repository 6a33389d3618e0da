// The brlock visualiser: draws what the core (compiled to wasm) says, and nothing it decides itself.
// Every outcome, action and view comes from `Simulator`; this file only turns them into pictures.
import init, { Simulator } from './pkg/brlock_wasm.js';

const PALETTE = ['#2f6fed', '#e07b12', '#12977e', '#8e44ad', '#d0488f', '#4d8a1f', '#a66a12', '#41557f'];
const SVG = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);

let sim = null;          // the Simulator
let steps = [];          // sim.steps(), refreshed whenever the trace changes
let traceName = 'brlock-trace';
let colours = new Map(); // "client/owner" -> palette index, in order of first appearance
const TIMELINE_WINDOW = 200; // steps listed either side of the current one

// ---------- small helpers ----------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, v);
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

const ownerKey = (x) => `${x.client}/${x.owner}`;
/** An NLM owner as brlockd names it ("nlm\0", caller_name, svid, oh as length-prefixed bytes, shown in
 * hex): "svid N oh X", so lanes of a live server read like its clients' processes. */
function nlmOwner(owner) {
  if (!owner.startsWith('0x6e6c6d00')) return null;
  const b = owner.slice(2).match(/../g).map((x) => parseInt(x, 16));
  const u32 = (i) => ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
  let at = 4;
  const nameLen = u32(at); at += 4 + nameLen;
  if (at + 8 > b.length) return null;
  const svid = u32(at); at += 4;
  const ohLen = u32(at); at += 4;
  if (at + ohLen !== b.length) return null;
  const oh = b.slice(at);
  const text = oh.every((c) => c >= 0x20 && c < 0x7f) ? String.fromCharCode(...oh) : oh.map((c) => c.toString(16).padStart(2, '0')).join('');
  return `svid ${svid} oh ${text}`;
}
const ownerLabel = (x) => {
  const nlm = nlmOwner(x.owner);
  if (nlm) return `${x.client}: ${nlm}`;
  return x.client === x.owner ? x.owner : `${x.client}/${x.owner}`;
};
const K = (kind) => (kind === 'shared' ? 'S' : 'X');
const kindWord = (kind) => (kind === 'shared' ? 'shared' : 'exclusive');

// Offsets and lengths are u64: JS numbers up to 2^53 − 1 and decimal strings above (bindings.rs), so
// every range sum is done in BigInt; only pixel positions are (rounded) numbers.
/** The inclusive byte span of a range; `end` is null for "to end of file" (length 0). */
function span(r) {
  const start = BigInt(r.offset), length = BigInt(r.length);
  return { start, end: length === 0n ? null : start + length - 1n };
}

function fmtRange(r) {
  const { start, end } = span(r);
  return end === null ? `${start}–EOF` : `${start}–${end}`;
}

function overlaps(a, b) {
  const x = span(a), y = span(b);
  return (y.end === null || x.start <= y.end) && (x.end === null || y.start <= x.end);
}

const MODE_WORDS = { none: 'none', read: 'read', write: 'write', both: 'read+write' };
const fmtShare = (x) => `access ${MODE_WORDS[x.access]} · deny ${MODE_WORDS[x.deny]}`;

function fmtMs(ms) {
  ms = Number(ms);
  if (ms < 1000) return `${ms} ms`;
  return `${+(ms / 1000).toFixed(3)} s`;
}

function colour(who) {
  const key = ownerKey(who);
  if (!colours.has(key)) colours.set(key, colours.size % PALETTE.length);
  return colours.get(key);
}

function tint(hex, amount) {
  const n = parseInt(hex.slice(1), 16);
  const mix = (c) => Math.round(c + (255 - c) * amount);
  return `rgb(${mix(n >> 16)}, ${mix((n >> 8) & 255)}, ${mix(n & 255)})`;
}

function eventOf(step) {
  if (typeof step.event === 'string') return [step.event, {}];
  return Object.entries(step.event)[0];
}

function replyOf(actions) {
  const reply = actions.find((a) => a.reply);
  if (!reply) return null;
  const o = reply.reply.outcome;
  return typeof o === 'string' ? { name: o, detail: {} } : { name: Object.keys(o)[0], detail: Object.values(o)[0] };
}

const OUTCOME_WORDS = {
  granted: 'granted', denied: 'denied', blocked: 'blocked', deadlock: 'deadlock', no_locks: 'no locks',
  too_big: 'too big', denied_grace: 'grace', not_reclaimable: 'not reclaimable', share_denied: 'share denied',
};

function showError(message) {
  const box = $('error');
  box.querySelector('span').textContent = message;
  box.hidden = false;
}

function guard(fn) {
  return (...args) => {
    try {
      $('error').hidden = true;
      return fn(...args);
    } catch (e) {
      showError(e && e.message ? e.message : String(e));
    }
  };
}

// ---------- describing events and actions ----------

function describeEvent(step) {
  const [type, e] = eventOf(step);
  switch (type) {
    case 'lock': return `${ownerLabel(e)} lock ${K(e.kind)} ${e.file} ${fmtRange(e.range)}${e.wait ? ' ·wait' : ''}${e.reclaim ? ' ·reclaim' : ''}`;
    case 'unlock': return `${ownerLabel(e)} unlock ${e.file} ${fmtRange(e.range)}`;
    case 'test': return `${ownerLabel(e)} test ${K(e.kind)} ${e.file} ${fmtRange(e.range)}`;
    case 'cancel': return `${ownerLabel(e)} cancel ${K(e.kind)} ${e.file} ${fmtRange(e.range)}`;
    case 'share': return `${ownerLabel(e)} share ${e.file} access ${e.access} deny ${e.deny}${e.reclaim ? ' ·reclaim' : ''}`;
    case 'unshare': return `${ownerLabel(e)} unshare ${e.file}`;
    case 'tick': return `clock → ${fmtMs(step.now)}`;
    case 'client_connected': return `${e.client} connects (${e.adapter}, ttl ${fmtMs(e.ttl)})`;
    case 'client_disconnected': return `${e.client} disconnects`;
    case 'free_all': return `free all of ${e.client}`;
    case 'reclaim_complete': return `${e.client} reclaim complete`;
    case 'callback_outcome': return `callback of waiter ${e.waiter}: ${e.result}`;
    default: return type;
  }
}

function describeAction(a) {
  const [type, x] = typeof a === 'string' ? [a, {}] : Object.entries(a)[0];
  switch (type) {
    case 'reply': {
      const r = replyOf([a]);
      let more = '';
      if (r.name === 'denied') more = ` by ${ownerLabel(r.detail.holder)} ${K(r.detail.holder.kind)} ${fmtRange(r.detail.holder.range)}${r.detail.holder.queued ? ' (queued)' : ''}`;
      if (r.name === 'blocked') more = ` as waiter ${r.detail.waiter}`;
      if (r.name === 'deadlock') more = `: ${r.detail.cycle.map(ownerLabel).join(' → ')} → ${ownerLabel(r.detail.cycle[0])}`;
      if (r.name === 'no_locks') more = ` (${r.detail.limit})`;
      if (r.name === 'share_denied') more = ` by ${ownerLabel(r.detail.owner)}'s share reservation`;
      return ['reply', h('span', {}, h('b', {}, `reply #${x.request}`), `: ${r.name}${more}`)];
    }
    case 'send_granted': return ['granted', h('span', {}, h('b', {}, 'GRANTED'), ` → ${ownerLabel(x)} ${K(x.kind)} ${x.file} ${fmtRange(x.range)} (waiter ${x.waiter}, attempt ${x.attempt})`)];
    case 'persist': {
      const [op, r] = Object.entries(x.op)[0];
      // A share reservation's record (put_share/delete_share) has modes, not a kind and a range.
      const what = r.range ? `${K(r.kind)} ${r.file} ${fmtRange(r.range)}` : `${r.file} ${fmtShare(r)}`;
      return ['persist', `persist e${x.epoch}#${x.seq} ${op} ${ownerLabel(r)} ${what}`];
    }
    case 'released': return ['released', h('span', {}, h('b', {}, 'released'), ` ${ownerLabel(x)} ${K(x.kind)} ${x.file} ${fmtRange(x.range)} (${x.reason})`)];
    case 'waiter_removed': return ['removed', h('span', {}, h('b', {}, 'waiter removed'), ` ${x.waiter}: ${ownerLabel(x)} ${x.file} ${fmtRange(x.range)} (${x.reason})`)];
    case 'connection_refused': return ['refused', `connection of ${x.client} refused (${x.adapter} limit ${x.limit})`];
    case 'grace_ended': return ['grace', h('span', {}, h('b', {}, 'grace ended'), `: ${x.released} unreclaimed lock(s) released`)];
    default: return [type, type];
  }
}

function explain(step, actions, graph) {
  const [type, e] = eventOf(step);
  const r = replyOf(actions);
  if (!r) {
    const parts = [];
    for (const a of actions) {
      if (a.grace_ended) parts.push(`The grace period ended; ${a.grace_ended.released} unreclaimed lock(s) released.`);
      if (a.send_granted) parts.push(`${ownerLabel(a.send_granted)} was granted ${fmtRange(a.send_granted.range)} of ${a.send_granted.file}; a GRANTED callback goes out.`);
      if (a.released) parts.push(`${ownerLabel(a.released)}'s ${fmtRange(a.released.range)} of ${a.released.file} was released (${a.released.reason.replace('_', ' ')}).`);
      if (a.waiter_removed) parts.push(`${ownerLabel(a.waiter_removed)} stopped waiting (${a.waiter_removed.reason.replace('_', ' ')}).`);
    }
    if (parts.length === 0) parts.push(type === 'tick' ? `The clock moved to ${fmtMs(step.now)}; nothing fell due.` : 'Recorded; nothing else changed.');
    return parts.join(' ');
  }
  const who = ownerLabel(e);
  const what = e.range ? `${e.kind ? kindWord(e.kind) + ' ' : ''}${fmtRange(e.range)} of ${e.file}` : e.file;
  switch (r.name) {
    case 'granted':
      if (type === 'lock') return `Granted: ${who} now holds ${what}.`;
      if (type === 'unlock') return `Done: ${who} released whatever it held of ${fmtRange(e.range)} in ${e.file}.`;
      if (type === 'test') return `No conflict: ${who} would be granted ${what}.`;
      if (type === 'cancel') return `Done: ${who} no longer waits for ${what}.`;
      if (type === 'share') return `Granted: ${who} now holds a share reservation on ${e.file}: ${fmtShare(e)}.`;
      if (type === 'unshare') return `Done: ${who} holds no share reservation on ${e.file} now.`;
      return 'Done.';
    case 'denied': {
      const hd = r.detail.holder;
      const by = `${ownerLabel(hd)}'s ${kindWord(hd.kind)} ${hd.queued ? 'queued request' : 'lock'} over ${fmtRange(hd.range)}`;
      return `${type === 'test' ? 'Would be refused' : 'Refused'}: ${who}'s ${what} conflicts with ${by}.`;
    }
    case 'blocked': {
      const mine = graph.filter((g) => g.waiter === r.detail.waiter).map((g) => ownerLabel(g.to));
      return `Queued as waiter ${r.detail.waiter}: ${who} waits${mine.length ? ' for ' + mine.join(', ') : ''} and is granted when they are done.`;
    }
    case 'deadlock': {
      const names = r.detail.cycle.map(ownerLabel);
      return `Refused as a deadlock: waiting would close the cycle ${names.join(' → ')} → ${names[0]}.`;
    }
    case 'denied_grace': return 'Refused: the server is in its grace period, when only reclaims of earlier locks are accepted.';
    case 'not_reclaimable': return `Refused: ${who} did not hold ${what} before the restart, so there is nothing to reclaim.`;
    case 'no_locks': return `Refused: the ${r.detail.limit.replace('_', ' ')} limit would be exceeded.`;
    case 'too_big': return 'Refused: the range reaches past the largest offset this server accepts.';
    case 'share_denied': {
      // A refused event changes nothing, so the refusing reservation is still there to read.
      const theirs = sim.shares(e.file).find((x) => ownerKey(x) === ownerKey(r.detail.owner));
      return `Refused: ${who}'s ${fmtShare(e)} on ${e.file} meets ${ownerLabel(r.detail.owner)}'s share reservation`
        + `${theirs ? ` (${fmtShare(theirs)})` : ''}: an access must not meet another's deny, nor a deny another's access.`;
    }
    default: return r.name;
  }
}

// ---------- loading and stepping ----------

function adopt(next, name) {
  if (sim) sim.free();
  sim = next;
  traceName = name;
  steps = sim.steps();
  colours = new Map();
  for (const rec of sim.header().restore || []) colour(rec);
  for (const st of steps) {
    const [, e] = eventOf(st);
    if (e && e.owner !== undefined) colour(e);
  }
  // Point the form at this trace's first file and owner, so the first request lands somewhere visible.
  const files = [...new Set([...(sim.header().restore || []).map((r) => r.file), ...steps.map((st) => eventOf(st)[1]?.file).filter(Boolean)])];
  if (files.length && !files.includes($('file').value)) $('file').value = files[0];
  if (colours.size && ![...colours.keys()].some((k) => ownerKey(ownerOf(k)) === ownerKey(ownerOf($('owner').value)))) {
    $('owner').value = ownerLabel(ownerOf([...colours.keys()][0]));
  }
  render();
}

function ownerOf(text) {
  const [client, owner] = text.includes('/') ? text.split('/', 2) : [text, text];
  return { client, owner };
}

const loadExample = guard((name) => {
  adopt(Simulator.example(name), name);
  $('example').value = name;
});

const newSession = guard(() => {
  adopt(Simulator.fromProfile($('profile').value), 'brlock-trace');
  $('example').value = '';
});

const seek = guard((position) => {
  // Looking back while live pauses following; Resume comes back to the end.
  if (live.source && !live.paused && position < sim.length) pauseLive();
  sim.seek(Math.max(0, Math.min(sim.length, position)));
  render();
});

const issue = guard((event) => {
  sim.step(sim.now(), event);
  steps = sim.steps();
  const [, e] = eventOf(steps[steps.length - 1]);
  if (e && e.owner !== undefined) colour(e);
  $('example').value = '';
  render();
});

function nextRequestId() {
  let max = 0;
  for (const st of steps.slice(0, sim.position)) {
    const [, e] = eventOf(st);
    if (e && typeof e.request === 'number') max = Math.max(max, e.request);
  }
  return max + 1;
}

function digits(id) {
  const v = $(id).value.trim();
  if (!/^\d+$/.test(v)) throw new Error(`${id}: a whole number of bytes, please (got "${v}")`);
  return BigInt(v).toString();
}

const submitRequest = guard((ev) => {
  ev.preventDefault();
  const op = $('op').value;
  const ownerText = $('owner').value.trim();
  const file = $('file').value.trim();
  if (!ownerText || !file) throw new Error('owner and file are needed');
  const { client, owner } = ownerOf(ownerText);
  const kind = document.querySelector('input[name=kind]:checked').value;
  const who = `"request":${nextRequestId()},"client":${JSON.stringify(client)},"owner":${JSON.stringify(owner)},"file":${JSON.stringify(file)}`;
  let body;
  if (op === 'share') body = `${who},"access":"${$('access').value}","deny":"${$('deny').value}","reclaim":${$('reclaim').checked}`;
  else if (op === 'unshare') body = who;
  else {
    // Built as text so offsets above 2^53 reach the core exactly.
    const common = `${who},"range":{"offset":${digits('offset')},"length":${digits('length')}}`;
    if (op === 'lock') body = `${common},"kind":"${kind}","wait":${$('wait').checked},"reclaim":${$('reclaim').checked},"cookie":[]`;
    else if (op === 'unlock') body = common;
    else body = `${common},"kind":"${kind}"`;
  }
  issue(`{"${op}":{${body}}}`);
});

function tickAt(at) {
  guard(() => {
    sim.step(at, '"tick"');
    steps = sim.steps();
    render();
  })();
}

function clientEvent(type) {
  const client = $('client').value.trim();
  if (!client) return showError('a client name is needed');
  if (type === 'client_connected') {
    const ttl = $('ttl').value.trim();
    if (!/^\d+$/.test(ttl)) return showError('ttl: a whole number of milliseconds, please');
    issue(`{"client_connected":{"client":${JSON.stringify(client)},"adapter":"smb","ttl":${ttl}}}`);
  } else {
    issue({ [type]: { client } });
  }
}

/** Shows the form fields the chosen operation takes: a range and kind for byte-range locks, access and
 * deny modes for a share reservation, only the file and owner for unshare. */
function showFieldsOfOp() {
  const op = $('op').value;
  const ranged = !['share', 'unshare'].includes(op);
  $('range-fields').hidden = !ranged;
  $('share-fields').hidden = op !== 'share';
  document.querySelectorAll('input[name=kind]').forEach((r) => { r.disabled = op === 'unlock'; });
  $('offset').disabled = $('length').disabled = !ranged;
  $('wait').disabled = op !== 'lock';
  $('wait').closest('label').hidden = !ranged;
  $('reclaim').disabled = !['lock', 'share'].includes(op);
}

const download = guard(() => {
  const blob = new Blob([sim.toJsonl()], { type: 'application/x-ndjson' });
  const a = h('a', { href: URL.createObjectURL(blob), download: `${traceName}.jsonl` });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
});

async function loadFile(file) {
  const text = await file.text();
  guard(() => {
    adopt(Simulator.fromTrace(text), file.name.replace(/\.[^.]*$/, '') || 'brlock-trace');
    $('example').value = '';
  })();
}

// ---------- rendering ----------

function render() {
  const position = sim.position;
  const current = position > 0 ? steps[position - 1] : null;
  const graph = sim.waitForGraph();
  const reply = current ? replyOf(current.actions) : null;
  renderOutcome(current, graph);
  renderFiles(current, reply);
  renderGraph(graph, reply, current);
  renderGrace();
  renderClock();
  renderStats();
  renderTimeline();
  renderCallbacks();
  renderDatalists();
  const later = sim.length - position;
  $('branch-hint').hidden = later === 0;
  $('branch-hint').textContent = `You are looking at step ${position} of ${sim.length}: sending replaces the ${later} later step${later === 1 ? '' : 's'}.`;
}

function renderOutcome(current, graph) {
  const box = $('outcome');
  box.replaceChildren();
  if (!current) {
    const initial = sim.initialActions();
    box.append(h('div', { class: 'headline' }, h('span', { class: 'badge event' }, 'start'),
      h('span', { class: 'explain' }, sim.length
        ? 'The start of the trace. Step forward with ▶ (or →) to watch it unfold.'
        : 'Nothing has happened yet. Send a request on the left, or pick an example above.')));
    if (initial.length) {
      box.append(h('p', { class: 'note' }, `Restored after a restart: ${initial.filter((a) => a.persist).length} persist action(s).`));
      box.append(h('ul', { class: 'actions' }, initial.map((a) => { const [k, t] = describeAction(a); return h('li', { class: `k-${k}` }, t); })));
    }
    return;
  }
  const r = replyOf(current.actions);
  const [type] = eventOf(current);
  const badge = r ? h('span', { class: `badge ${r.name}`, 'data-outcome': r.name }, OUTCOME_WORDS[r.name] || r.name)
    : h('span', { class: 'badge event', 'data-outcome': type }, type.replace('_', ' '));
  box.append(
    h('div', { class: 'event' }, `step ${sim.position} · ${fmtMs(current.now)} · ${describeEvent(current)}`),
    h('div', { class: 'headline' }, badge, h('span', { class: 'explain' }, explain(current, current.actions, graph))),
  );
  if (current.note) box.append(h('p', { class: 'note' }, current.note));
  box.append(h('ul', { class: 'actions', 'aria-label': 'Actions the core produced' },
    current.actions.map((a) => { const [k, t] = describeAction(a); return h('li', { class: `k-${k}` }, t); })));
  box.append(h('details', { class: 'json' }, h('summary', {}, 'event and actions as JSON'),
    h('pre', {}, sim.stepJson(sim.position - 1))));
}

function niceStep(extent) {
  const raw = extent / 5;
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
}

function renderFiles(current, reply) {
  const box = $('files');
  const files = sim.filesSeen();
  box.replaceChildren();
  if (files.length === 0) {
    box.append(h('div', { class: 'empty' }, 'No locks yet. Send a request, or start from an example: ',
      ...Simulator.examples().map((ex) => h('button', { type: 'button', class: 'linkish', onclick: () => loadExample(ex.name) }, ex.name))));
    return;
  }
  // What the current step asked for, when it was refused: drawn as a ghost in the requester's lane.
  // A refused share reservation is drawn as a ghost chip next to the file's shares, the same way.
  let ghost = null;
  let refuser = null;
  let shareGhost = null;
  if (current && reply && ['denied', 'deadlock', 'denied_grace', 'not_reclaimable', 'no_locks'].includes(reply.name)) {
    const [type, e] = eventOf(current);
    if ((type === 'lock' || type === 'test') && e.range) ghost = { ...e, outcome: reply.name };
    if (reply.name === 'denied') refuser = reply.detail.holder;
  }
  if (current && reply && reply.name !== 'granted' && eventOf(current)[0] === 'share') {
    shareGhost = { ...eventOf(current)[1], outcome: reply.name, refuser: reply.name === 'share_denied' ? reply.detail.owner : null };
  }
  const width = Math.max(280, box.clientWidth || 700);
  files.forEach((file) => box.append(renderFile(file, width, ghost && ghost.file === file ? ghost : null,
    ghost && ghost.file === file ? refuser : null, shareGhost && shareGhost.file === file ? shareGhost : null)));
}

/** `text` cut to about `px` pixels of 12 px type, with an ellipsis. */
function clip(text, px) {
  const n = Math.max(3, Math.floor(px / 7));
  return text.length <= n ? text : `${text.slice(0, n - 1)}…`;
}

/** Compact axis numbers: 1,500 and 250,000 as written, 2.5e15 above a million. */
function fmtTick(v) {
  if (v < 1e6) return Number.isInteger(v) ? v.toLocaleString('en-US') : String(v);
  return Number(v.toPrecision(3)).toExponential().replace('e+', 'e');
}

function renderFile(file, W, ghost, refuser, shareGhost) {
  const held = sim.heldLocks(file);
  const waiters = sim.waiters(file);
  const shares = sim.shares(file);
  const lanes = new Map();
  const lane = (who) => {
    const key = ownerKey(who);
    if (!lanes.has(key)) lanes.set(key, { who, held: [], waits: [] });
    return lanes.get(key);
  };
  held.forEach((l) => lane(l).held.push(l));
  waiters.forEach((w, i) => lane(w).waits.push({ ...w, order: i + 1 }));
  if (ghost) lane(ghost);
  const ordered = [...lanes.values()].sort((a, b) => colour(a.who) - colour(b.who) || ownerKey(a.who).localeCompare(ownerKey(b.who)));

  // One linear scale per file; "to end of file" runs into a zone past the last tick.
  const all = [...held, ...waiters, ...(ghost ? [ghost] : [])].map((x) => span(x.range));
  let maxEnd = 10n;
  for (const { start, end } of all) maxEnd = [maxEnd, (end ?? start) + 1n].reduce((a, b) => (a > b ? a : b));
  const step = niceStep(Number(maxEnd));
  const D = Math.ceil(Number(maxEnd) / step) * step;
  const narrow = W < 480;
  const labelW = narrow ? 78 : 118, x0 = labelW + 8, eofW = narrow ? 48 : 52, x1 = W - eofW - 14, xEnd = W - 4;
  const sx = (v) => x0 + (v / D) * (x1 - x0);
  const rx = (r) => {
    const { start, end } = span(r);
    const a = sx(Number(start));
    return [a, end === null ? xEnd : Math.max(a + 4, sx(Number(end + 1n)))];
  };

  const axisH = 22, heldH = 22, waitH = 18, pad = 6;
  let y = axisH;
  const rows = ordered.map((l) => {
    const hgt = pad * 2 + heldH + (l.waits.length || (ghost && ownerKey(ghost) === ownerKey(l.who)) ? waitH + 4 : 0);
    const row = { ...l, y, hgt };
    y += hgt + 4;
    return row;
  });
  const H = Math.max(y, axisH + 30) + 2;
  const svg = s('svg', { class: 'lanes', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `byte ranges of ${file}` });

  const axis = s('g', { class: 'axis' });
  for (let v = 0; v <= D + step / 2; v += step) {
    axis.append(s('line', { x1: sx(v), x2: sx(v), y1: axisH - 4, y2: H }));
    axis.append(s('text', { x: sx(v), y: 12, 'text-anchor': v === 0 ? 'start' : 'middle' }, fmtTick(v)));
  }
  axis.append(s('text', { x: xEnd - 2, y: 12, 'text-anchor': 'end' }, '→ EOF'));
  svg.append(axis);

  for (const row of rows) {
    const hue = PALETTE[colour(row.who)];
    const g = s('g', { class: 'lane', 'data-owner': ownerKey(row.who) });
    g.append(s('rect', { class: 'lane-bg', x: 0, y: row.y, width: W, height: row.hgt, rx: 6 }));
    g.append(s('rect', { x: 0, y: row.y, width: 4, height: row.hgt, rx: 2, fill: hue }));
    g.append(s('text', { class: 'lane-label', x: 12, y: row.y + pad + heldH / 2 + 4 }, clip(ownerLabel(row.who), labelW - 12),
      s('title', {}, ownerLabel(row.who))));
    const hy = row.y + pad;
    for (const l of row.held) {
      const [a, b] = rx(l.range);
      const isRefuser = refuser && !refuser.queued && ownerKey(refuser) === ownerKey(l) && overlaps(l.range, refuser.range);
      const cls = `held${isRefuser ? ' refuser' : ''}`;
      let fill = l.kind === 'exclusive' ? hue : `url(#hatch-${colour(l)})`;
      let stroke = hue;
      let dash = null;
      if (l.unreclaimed) { fill = '#eef1f6'; stroke = '#8a94a8'; dash = '1.5 2.5'; }
      g.append(s('rect', { class: cls, 'data-kind': l.kind, 'data-range': fmtRange(l.range), x: a, y: hy, width: b - a, height: heldH, rx: 4, fill, stroke: isRefuser ? null : stroke, 'stroke-width': 1.5, 'stroke-dasharray': dash },
        s('title', {}, `${ownerLabel(l)} holds ${kindWord(l.kind)} ${fmtRange(l.range)}${l.unreclaimed ? ' (restored, not yet reclaimed)' : ''}`)));
      rangeLabel(g, `${l.unreclaimed ? '↻ ' : ''}${K(l.kind)} ${fmtRange(l.range)}`, a, b, hy + heldH / 2 + 4, l.kind === 'exclusive' && !l.unreclaimed, x0, isRefuser ? a : W - 4);
      if (isRefuser) g.append(s('text', { class: 'tag', x: Math.min(b + 6, W - 60), y: hy - 1 + heldH / 2 + 4 }, b + 60 < W ? '◀ refuses' : ''));
    }
    const wy = row.y + pad + heldH + 4;
    for (const w of row.waits) {
      const [a, b] = rx(w.range);
      const queuedRefuser = refuser && refuser.queued && ownerKey(refuser) === ownerKey(w);
      g.append(s('rect', { class: `waiter${queuedRefuser ? ' refuser' : ''}`, 'data-kind': w.kind, 'data-order': w.order, x: a, y: wy, width: b - a, height: waitH, rx: 4, fill: '#fff', stroke: hue, 'stroke-width': 1.5, 'stroke-dasharray': '5 3' },
        s('title', {}, `${ownerLabel(w)} waits (#${w.order} in the queue) for ${kindWord(w.kind)} ${fmtRange(w.range)} since ${fmtMs(w.since)}`)));
      g.append(s('circle', { cx: a + 9, cy: wy + waitH / 2, r: 7, fill: hue }));
      g.append(s('text', { x: a + 9, y: wy + waitH / 2 + 3.5, 'text-anchor': 'middle', style: 'fill:#fff;font-size:10px;font-weight:700' }, w.order));
      rangeLabel(g, `waits ${K(w.kind)} ${fmtRange(w.range)}`, a + 16, b, wy + waitH / 2 + 4, false, x0, W - 4);
    }
    if (ghost && ownerKey(ghost) === ownerKey(row.who)) {
      const [a, b] = rx(ghost.range);
      const label = ghost.outcome === 'deadlock' ? '✕ deadlock' : '✕ refused';
      g.append(s('rect', { class: 'ghost', x: a, y: wy, width: b - a, height: waitH, rx: 4 },
        s('title', {}, `refused: ${kindWord(ghost.kind)} ${fmtRange(ghost.range)}`)));
      // Inside the ghost, else left of it, else right of it; the short label where the long one fits nowhere.
      const place = (text) => {
        const est = text.length * 6.8;
        if (b - a > est + 8) return [a + 6, 'start'];
        if (a - 6 - est >= x0) return [a - 6, 'end'];
        if (b + 6 + est <= W - 2) return [b + 6, 'start'];
        return null;
      };
      const long = `${label} ${K(ghost.kind)} ${fmtRange(ghost.range)}`;
      const text = place(long) ? long : label;
      const [x, anchor] = place(text) ?? [Math.max(x0, a - 6), 'end'];
      g.append(s('text', { class: 'ghost-label', x, 'text-anchor': anchor, y: wy + waitH / 2 + 4 }, text));
    }
    svg.append(g);
  }
  if (rows.length === 0) svg.append(s('text', { x: x0, y: axisH + 20, class: 'range-label', style: 'fill:#64708a;font-style:italic;font-weight:400' }, 'no locks'));
  // A file with only share reservations needs no empty byte axis.
  const drawing = rows.length === 0 && shares.length ? h('div', { class: 'empty small' }, 'no byte-range locks') : svg;

  const counts = `${held.length} lock${held.length === 1 ? '' : 's'}, ${waiters.length} waiting`
    + (shares.length ? `, ${shares.length} share reservation${shares.length === 1 ? '' : 's'}` : '');
  const card = h('div', { class: 'file', 'data-file': file },
    h('div', { class: 'file-title' }, file, h('span', { class: 'muted' }, counts)),
    drawing);
  if (shares.length || shareGhost) card.append(renderShares(file, shares, shareGhost));
  if (waiters.length) {
    card.append(h('div', { class: 'queue', 'aria-label': `queue of ${file}` }, h('span', { class: 'muted' }, 'Queue:'),
      waiters.map((w, i) => h('span', { class: 'chip', 'data-owner': ownerKey(w) },
        h('span', { class: 'num', style: `background:${PALETTE[colour(w)]}` }, i + 1),
        `${ownerLabel(w)} ${K(w.kind)} ${fmtRange(w.range)}`,
        h('span', { class: 'muted' }, `waiting ${fmtMs(Number(sim.now()) - Number(w.since))}`)))));
  }
  return card;
}

/** A file's share reservations, one chip per owner with its access and deny modes; a refused
 * reservation as a ghost chip, and the reservation that refused it outlined in red. */
function renderShares(file, shares, ghost) {
  const modes = (x) => [
    h('span', { class: `mode access-${x.access}`, title: `access: ${MODE_WORDS[x.access]}` }, 'access ', h('b', {}, MODE_WORDS[x.access])),
    h('span', { class: `mode deny-${x.deny}`, title: `deny others: ${MODE_WORDS[x.deny]}` }, 'deny ', h('b', {}, MODE_WORDS[x.deny]))];
  const chips = shares.map((x) => {
    const refusing = ghost && ghost.refuser && ownerKey(ghost.refuser) === ownerKey(x);
    return h('span', { class: `chip share${refusing ? ' refuser' : ''}`, 'data-owner': ownerKey(x), 'data-access': x.access, 'data-deny': x.deny,
      title: `${ownerLabel(x)} holds a share reservation on ${file}: ${fmtShare(x)}` },
    h('span', { class: 'dot', style: `background:${PALETTE[colour(x)]}` }), h('span', { class: 'who' }, ownerLabel(x)), modes(x),
    refusing ? h('span', { class: 'tag' }, '◀ refuses') : null);
  });
  if (ghost) {
    chips.push(h('span', { class: 'chip share ghost', 'data-owner': ownerKey(ghost), 'data-access': ghost.access, 'data-deny': ghost.deny,
      title: `refused (${ghost.outcome.replace('_', ' ')}): ${ownerLabel(ghost)} ${fmtShare(ghost)}` },
    h('span', { class: 'who' }, `✕ ${ownerLabel(ghost)}`), modes(ghost)));
  }
  return h('div', { class: 'shares', 'aria-label': `share reservations of ${file}` }, h('span', { class: 'muted' }, 'Shares:'), chips);
}

/** A range's label: inside its bar when it fits, else beside it (left first, where the "refuses" tag
 * is not) within [lo, hi], else only its first word inside. A 1-byte lock at 2^53 still shows its offset. */
function rangeLabel(g, text, a, b, y, onSolid, lo, hi) {
  const est = text.length * 6.6;
  if (b - a > est + 8) g.append(s('text', { class: `range-label ${onSolid ? 'on-solid' : 'halo'}`, x: a + 6, y }, text));
  else if (a - 6 - est >= lo) g.append(s('text', { class: 'range-label halo', x: a - 6, y, 'text-anchor': 'end' }, text));
  else if (b + 6 + est <= hi) g.append(s('text', { class: 'range-label halo', x: b + 6, y }, text));
  else if (b - a > 16) g.append(s('text', { class: `range-label ${onSolid ? 'on-solid' : 'halo'}`, x: a + 4, y }, text.split(' ')[0]));
}

function renderGraph(graph, reply, current) {
  const box = $('graph');
  box.replaceChildren();
  const cycle = reply && reply.name === 'deadlock' ? reply.detail.cycle : null;
  const nodes = new Map();
  const add = (who) => { if (!nodes.has(ownerKey(who))) nodes.set(ownerKey(who), who); };
  graph.forEach((e) => { add(e.from); add(e.to); });
  if (cycle) cycle.forEach(add);
  if (nodes.size === 0) {
    box.append(h('div', { class: 'empty' }, 'Nobody is waiting. Blocked requests appear here as arrows from the waiter to whoever it waits for.'));
    return;
  }
  // Edges keyed by (from, to); the refused request's edge closes the cycle, over the file it asked for.
  const edges = new Map();
  const edge = (from, to, file, refused) => {
    const key = `${ownerKey(from)}>${ownerKey(to)}`;
    if (!edges.has(key)) edges.set(key, { from, to, files: new Set(), refused: false, cycle: false });
    const e = edges.get(key);
    if (file) e.files.add(file);
    e.refused ||= refused;
    return e;
  };
  graph.forEach((g) => edge(g.from, g.to, g.file, false));
  if (cycle) {
    const asked = current ? eventOf(current)[1].file : null;
    cycle.forEach((who, i) => {
      const next = cycle[(i + 1) % cycle.length];
      edge(who, next, i === 0 ? asked : null, i === 0).cycle = true;
    });
  }
  const W = Math.min(560, Math.max(260, box.clientWidth || 400)), H = 290, R = 20;
  const keys = [...nodes.keys()];
  const n = keys.length;
  const radius = n === 2 ? Math.min(130, W / 2 - 50) : Math.min(H / 2 - 44, W / 2 - 56);
  const pos = new Map(keys.map((k, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / n + (n === 2 ? Math.PI / 2 : 0);
    return [k, { x: W / 2 + radius * Math.cos(angle), y: H / 2 + 4 + radius * Math.sin(angle) }];
  }));
  const svg = s('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'wait-for graph' });
  svg.append(s('defs', {},
    ['grey', '#7b869c', 'red', '#d6304a'].reduce((acc, v, i, arr) => (i % 2 ? acc : [...acc, s('marker', { id: `arrow-${v}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', fill: arr[i + 1] }))]), [])));
  const edgeLayer = s('g'), nodeLayer = s('g'), labelLayer = s('g');
  svg.append(edgeLayer, nodeLayer, labelLayer);
  const labels = [];
  for (const e of edges.values()) {
    const p = pos.get(ownerKey(e.from)), q = pos.get(ownerKey(e.to));
    const dx = q.x - p.x, dy = q.y - p.y, len = Math.hypot(dx, dy) || 1;
    const bend = 26;
    const normal = { x: -dy / len, y: dx / len };
    const c = { x: (p.x + q.x) / 2 + normal.x * bend, y: (p.y + q.y) / 2 + normal.y * bend };
    const unit = (from, to) => { const l = Math.hypot(to.x - from.x, to.y - from.y) || 1; return { x: (to.x - from.x) / l, y: (to.y - from.y) / l }; };
    const u = unit(p, c), v = unit(q, c);
    const a = { x: p.x + u.x * R, y: p.y + u.y * R }, b = { x: q.x + v.x * (R + 3), y: q.y + v.y * (R + 3) };
    const mods = `${e.cycle ? ' cycle' : ''}${e.refused ? ' refused' : ''}`;
    const files = [...e.files].join(', ');
    const label = e.refused ? `${files}${files ? ' · ' : ''}refused` : files;
    const text = s('text', { 'text-anchor': 'middle' }, label);
    edgeLayer.append(s('g', { class: `edge${mods}`, 'data-from': ownerKey(e.from), 'data-to': ownerKey(e.to) },
      s('path', { d: `M${a.x},${a.y} Q${c.x},${c.y} ${b.x},${b.y}`, 'marker-end': `url(#arrow-${e.cycle ? 'red' : 'grey'})` }),
      s('title', {}, `${ownerLabel(e.from)} waits for ${ownerLabel(e.to)}${files ? ` on ${files}` : ''}${e.refused ? ' (refused: it would close a cycle)' : ''}`)));
    labelLayer.append(s('g', { class: `edge-label${mods}`, 'data-from': ownerKey(e.from), 'data-to': ownerKey(e.to) }, text));
    // The point of the curve at t, and the curve's side: where this edge's label may go.
    const at = (t) => ({ x: (1 - t) ** 2 * a.x + 2 * t * (1 - t) * c.x + t ** 2 * b.x, y: (1 - t) ** 2 * a.y + 2 * t * (1 - t) * c.y + t ** 2 * b.y });
    labels.push({ text, at, normal });
  }
  const inCycle = new Set((cycle || []).map(ownerKey));
  const nodeLabels = [];
  for (const [k, who] of nodes) {
    const p = pos.get(k);
    const hue = PALETTE[colour(who)];
    const name = s('text', { x: p.x, y: p.y < H / 2 ? p.y - R - 7 : p.y + R + 16, 'text-anchor': 'middle' }, clip(ownerLabel(who), 140));
    nodeLayer.append(s('g', { class: `node${inCycle.has(k) ? ' cycle' : ''}`, 'data-owner': k },
      s('circle', { cx: p.x, cy: p.y, r: R, fill: tint(hue, 0.78) }),
      s('circle', { cx: p.x, cy: p.y, r: R - 5, fill: hue, style: 'stroke:none' }),
      // Labels sit outside the ring, away from the arrows between nodes.
      name, s('title', {}, ownerLabel(who))));
    nodeLabels.push(name);
  }
  box.append(svg);
  placeLabels(labels, [...pos.values()].map((p) => ({ x: p.x - R - 2, y: p.y - R - 2, w: 2 * R + 4, h: 2 * R + 4 })), nodeLabels, W, H);
  if (cycle) {
    const names = cycle.map(ownerLabel);
    box.append(h('p', { class: 'graph-caption cycle', id: 'cycle' }, `Deadlock refused: ${names.join(' → ')} → ${names[0]}`));
  } else {
    box.append(h('p', { class: 'graph-caption muted' }, `${graph.length} wait${graph.length === 1 ? '' : 's'}; an arrow points from a waiter to whom it waits for.`));
  }
}

/** Puts each edge label near its edge where it covers no node, no owner's name and no label placed
 * before it: it tries points along the curve on either side, nearest the middle first, and takes the
 * first free one (or the least covered). Measured after the SVG is in the page, so text widths are real. */
function placeLabels(labels, nodeBoxes, nodeLabels, W, H) {
  const taken = [...nodeBoxes, ...nodeLabels.map((t) => { const b = t.getBBox(); return { x: b.x - 2, y: b.y - 1, w: b.width + 4, h: b.height + 2 }; })];
  const overlap = (p, q) => Math.max(0, Math.min(p.x + p.w, q.x + q.w) - Math.max(p.x, q.x)) * Math.max(0, Math.min(p.y + p.h, q.y + q.h) - Math.max(p.y, q.y));
  for (const { text, at, normal } of labels) {
    const b = text.getBBox();
    const w = b.width + 6, hgt = b.height + 2;
    let best = null;
    search: for (const t of [0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78]) {
      for (const off of [11, -11, 22, -22, 0]) {
        const m = at(t);
        const cx = m.x + normal.x * off, cy = m.y + normal.y * off;
        const box = { x: cx - w / 2, y: cy - hgt / 2, w, h: hgt };
        const outside = Math.max(0, -box.x) + Math.max(0, box.x + w - W) + Math.max(0, -box.y) + Math.max(0, box.y + hgt - H);
        const cost = taken.reduce((sum, o) => sum + overlap(box, o), 0) + outside * hgt;
        if (!best || cost < best.cost) best = { cost, box, cx, cy };
        if (cost === 0) break search;
      }
    }
    // The text was measured at (0, 0) with its baseline there: centre its box on the chosen point.
    text.setAttribute('x', best.cx);
    text.setAttribute('y', best.cy - b.height / 2 - b.y);
    taken.push(best.box);
  }
}

function renderGrace() {
  const box = $('grace-body');
  const g = sim.grace();
  const epoch = sim.header().epoch;
  box.replaceChildren();
  if (!g) {
    box.append(h('div', { class: 'grace-state' }, h('span', { class: 'badge', style: 'background:#9aa5ba' }, 'not in grace')),
      h('dl', { class: 'kv' }, h('dt', {}, 'epoch'), h('dd', {}, epoch)),
      h('p', { class: 'muted small' }, sim.header().restore ? 'Grace is over: every lock is open to everyone again.'
        : sim.header().snapshot ? 'After a restart the server gives earlier clients time to reclaim their locks; this one is past that.'
          : 'After a restart the server gives earlier clients time to reclaim their locks. Try the "grace" example.'));
    return;
  }
  const total = sim.config().grace || 1;
  const reclaimed = g.expected - g.pending.length;
  box.append(
    h('div', { class: 'grace-state' }, h('span', { class: 'badge denied_grace' }, 'in grace'), h('strong', { id: 'grace-remaining' }, `${fmtMs(g.remaining)} left`)),
    h('div', { class: 'meter', title: `ends at ${fmtMs(g.ends_at)}` }, h('div', { style: `width:${Math.max(0, Math.min(100, (100 * g.remaining) / total))}%` })),
    h('dl', { class: 'kv' },
      h('dt', {}, 'ends at'), h('dd', {}, fmtMs(g.ends_at)),
      h('dt', {}, 'epoch'), h('dd', {}, epoch),
      h('dt', {}, 'expected'), h('dd', {}, `${g.expected} client${g.expected === 1 ? '' : 's'}`),
      h('dt', {}, 'reclaimed'), h('dd', {}, `${reclaimed} of ${g.expected}`),
      h('dt', {}, 'still to come'), h('dd', { class: 'chips' }, g.pending.length ? g.pending.map((c) => h('span', {}, c)) : h('span', { style: 'background:#e3f5ec;color:#17935b' }, 'none'))));
}

function renderClock() {
  const now = sim.now();
  $('now').textContent = fmtMs(now);
  const next = sim.pollTimeout();
  $('next-timer').textContent = next === undefined ? 'No timer armed.' : `Next timer at ${fmtMs(next)} (in ${fmtMs(next - now)}).`;
  $('to-timer').disabled = next === undefined;
}

function renderStats() {
  const st = sim.stats();
  const r = st.lock_replies;
  const items = [
    ['held locks', st.held_locks], ['waiters', st.waiters],
    ['granted', r.granted], ['denied', r.denied + r.denied_grace + r.not_reclaimable + r.no_locks + r.too_big],
    ['blocked', r.blocked], ['deadlocks', r.deadlock],
    ['clients', st.clients], ['callbacks pending', st.pending_callbacks],
  ];
  $('stats').replaceChildren(h('div', { class: 'stats' }, items.map(([k, v]) => h('div', { class: 'stat' }, h('b', {}, v), h('span', {}, k)))));
}

function renderTimeline() {
  const position = sim.position;
  $('description').textContent = sim.description();
  $('position').textContent = `step ${position} of ${sim.length}`;
  $('slider').max = sim.length;
  $('slider').value = position;
  $('first').disabled = $('back').disabled = position === 0;
  $('forward').disabled = $('last').disabled = position === sim.length;
  const list = $('steps');
  const header = sim.header();
  const start = header.snapshot ? `the server's state, epoch ${header.epoch}` : header.restore ? `restart, epoch ${header.epoch}` : 'start';
  const items = [h('li', { class: `start${position === 0 ? ' current' : ''}`, 'data-index': 0, onclick: () => seek(0) },
    h('div', { class: 'line' }, h('span', { class: 'idx' }, '0'), h('span', { class: 'what' }, start), h('span', { class: 'time' }, fmtMs(header.start))))];
  // A long (live) trace lists the steps around the current one, not thousands of rows.
  const from = Math.max(0, position - TIMELINE_WINDOW);
  const to = Math.min(steps.length, position + TIMELINE_WINDOW);
  if (from > 0) items.push(h('li', { class: 'gap muted small' }, `… ${from} earlier steps`));
  steps.slice(from, to).forEach((st, j) => {
    const i = from + j;
    const r = replyOf(st.actions);
    const [type] = eventOf(st);
    const cls = i + 1 === position ? 'current' : i + 1 > position ? 'future' : '';
    items.push(h('li', { class: cls, 'data-index': i + 1, 'data-outcome': r ? r.name : type, onclick: () => seek(i + 1) },
      h('div', { class: 'line' },
        h('span', { class: 'idx' }, i + 1),
        r ? h('span', { class: `badge ${r.name}` }, OUTCOME_WORDS[r.name] || r.name) : h('span', { class: 'badge event' }, type.replace('_', ' ')),
        h('span', { class: 'time' }, fmtMs(st.now))),
      h('div', { class: 'what', title: describeEvent(st) }, describeEvent(st)),
      st.note ? h('div', { class: 'note' }, st.note) : null));
  });
  if (to < steps.length) items.push(h('li', { class: 'gap muted small' }, `… ${steps.length - to} later steps`));
  list.replaceChildren(...items);
  const cur = list.querySelector('li.current');
  if (cur) cur.scrollIntoView({ block: 'nearest' });
}

function renderCallbacks() {
  const pending = sim.pendingCallbacks();
  const box = $('callbacks');
  box.replaceChildren();
  if (!pending.length) return;
  box.append(h('div', { class: 'muted small' }, 'GRANTED callbacks awaiting an answer:'));
  for (const w of pending) {
    box.append(h('div', { class: 'callback' },
      h('span', {}, `${ownerLabel(w)} ${K(w.kind)} ${fmtRange(w.range)} (waiter ${w.waiter})`),
      h('button', { type: 'button', onclick: () => issue({ callback_outcome: { waiter: w.waiter, result: 'delivered' } }) }, 'ack'),
      h('button', { type: 'button', onclick: () => issue({ callback_outcome: { waiter: w.waiter, result: 'failed' } }) }, 'fail')));
  }
}

function renderDatalists() {
  const files = new Set(sim.filesSeen());
  const owners = new Set();
  const clients = new Set();
  for (const st of steps) {
    const [, e] = eventOf(st);
    if (e && e.owner !== undefined) owners.add(ownerLabel(e));
    if (e && e.client !== undefined) clients.add(e.client);
  }
  const fill = (id, values) => $(id).replaceChildren(...[...values].map((v) => h('option', { value: v })));
  fill('known-files', files);
  fill('known-owners', owners);
  fill('known-clients', clients);
}

function buildPatterns() {
  const defs = $('patterns');
  const hatch = (id, hue) => s('pattern', { id, patternUnits: 'userSpaceOnUse', width: 7, height: 7, patternTransform: 'rotate(45)' },
    s('rect', { width: 7, height: 7, fill: tint(hue, 0.82) }),
    s('line', { x1: 0, y1: 0, x2: 0, y2: 7, stroke: tint(hue, 0.35), 'stroke-width': 3 }));
  defs.replaceChildren(...PALETTE.map((hue, i) => hatch(`hatch-${i}`, hue)), hatch('hatch-legend', '#4a6fb5'));
}

// ---------- live mode: following the brlockd that serves this page (GET /events) ----------
//
// The stream is a trace: a header whose snapshot is the server's state when the page joined, then every
// event with the actions the server's core gave. The page's own core starts from the snapshot and
// applies each event, checking it gives the same actions (Simulator.follow), so every view is the
// server's. Pausing keeps what arrives (up to LIVE_HOLD_MAX events) and applies it on resume; past
// that the page lets the stream go and, on resume, starts again from a fresh snapshot.

const LIVE_HOLD_MAX = 10000;
const live = { source: null, paused: false, held: [], stale: false, step: null, count: 0, renderQueued: false };

function setLive(state, text) {
  document.body.dataset.live = state;
  $('live-badge').dataset.state = state;
  $('live-badge').textContent = state;
  $('live-status').textContent = text;
  $('live-pause').textContent = live.paused ? 'Resume' : 'Pause';
}

function liveSummary() {
  const held = live.held.length ? `; ${live.held.length} more held while paused` : '';
  return `Following ${location.host}: ${live.count} event${live.count === 1 ? '' : 's'} since the snapshot${held}.`;
}

function startLive() {
  stopLive();
  document.body.classList.add('live');
  $('live-card').hidden = false;
  Object.assign(live, { paused: false, held: [], stale: false, step: null, count: 0 });
  const source = new EventSource('events');
  live.source = source;
  setLive('connecting', `Connecting to ${location.host}/events…`);
  source.addEventListener('header', (m) => {
    if (live.paused) {
      // The stream restarted while paused: what the page shows would not continue it.
      source.close();
      live.source = null;
      live.stale = true;
      setLive('paused', 'Paused. The server restarted the stream meanwhile: Resume starts again from a fresh snapshot.');
      return;
    }
    guard(() => {
      adopt(Simulator.fromTrace(m.data), `brlockd-${new Date().toISOString().replace(/[:.]/g, '-')}`);
      live.count = 0;
      setLive('following', liveSummary());
    })();
  });
  source.addEventListener('step', (m) => { live.step = m.data; });
  source.addEventListener('actions', (m) => {
    const step = live.step;
    live.step = null;
    if (step === null || !sim) return;
    if (live.paused) return holdLive(step, m.data);
    applyLive(step, m.data);
    queueLiveRender();
  });
  source.addEventListener('end', (m) => {
    const reason = JSON.parse(m.data).reason;
    const why = reason === 'lagged' ? 'the page fell behind' : 'the server rebuilt its core or is stopping';
    setLive('reconnecting', `The server ended the stream (${why}); starting again from a fresh snapshot…`);
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      live.source = null;
      setLive('stopped', `Cannot follow ${location.host}: no /events here, or too many watchers. Serve this page from brlockd (--web-root) and press Live again.`);
    } else if (document.body.dataset.live !== 'reconnecting') {
      setLive('reconnecting', 'Connection lost; reconnecting (the page starts again from a fresh snapshot)…');
    }
  };
}

function applyLive(step, actions) {
  try {
    const view = sim.follow(step, actions);
    steps.push(view);
    const [, e] = eventOf(view);
    if (e && e.owner !== undefined) colour(e);
    live.count += 1;
    return true;
  } catch (e) {
    stopLive();
    setLive('stopped', 'Stopped following.');
    showError(e.message);
    return false;
  }
}

function holdLive(step, actions) {
  if (live.held.length >= LIVE_HOLD_MAX) {
    live.source.close();
    live.source = null;
    live.held = [];
    live.stale = true;
    setLive('paused', `Paused for more than ${LIVE_HOLD_MAX} events: Resume starts again from a fresh snapshot.`);
    return;
  }
  live.held.push([step, actions]);
  if (!live.stale) setLive('paused', `Paused. ${liveSummary()}`);
}

function pauseLive() {
  live.paused = true;
  setLive('paused', `Paused. ${liveSummary()}`);
}

function resumeLive() {
  live.paused = false;
  if (live.stale) return startLive();
  const held = live.held;
  live.held = [];
  for (const [step, actions] of held) if (!applyLive(step, actions)) return;
  if (sim.position < sim.length) sim.seek(sim.length);
  render();
  setLive('following', liveSummary());
}

function stopLive() {
  if (live.source) live.source.close();
  live.source = null;
  live.paused = false;
  live.held = [];
}

function leaveLive() {
  stopLive();
  document.body.classList.remove('live');
  delete document.body.dataset.live;
  $('live-card').hidden = true;
  newSession();
}

/** Many events a second render once per frame. */
function queueLiveRender() {
  if (live.renderQueued) return;
  live.renderQueued = true;
  requestAnimationFrame(() => {
    live.renderQueued = false;
    render();
    if (!live.paused && live.source) setLive('following', liveSummary());
  });
}

// ---------- wiring ----------

async function main() {
  await init();
  buildPatterns();
  for (const ex of Simulator.examples()) $('example').append(h('option', { value: ex.name }, ex.title));
  for (const p of Simulator.profiles()) $('profile').append(h('option', { value: p }, p));

  $('example').addEventListener('change', (e) => { if (e.target.value) loadExample(e.target.value); });
  $('new-session').addEventListener('click', newSession);
  $('download').addEventListener('click', download);
  $('load-trace').addEventListener('change', (e) => { if (e.target.files[0]) loadFile(e.target.files[0]); e.target.value = ''; });
  $('request-form').addEventListener('submit', submitRequest);
  $('op').addEventListener('change', showFieldsOfOp);
  showFieldsOfOp();
  document.querySelectorAll('[data-advance]').forEach((b) => b.addEventListener('click', () => tickAt(sim.now() + BigInt(b.dataset.advance))));
  $('to-timer').addEventListener('click', () => { const t = sim.pollTimeout(); if (t !== undefined) tickAt(t); });
  document.querySelectorAll('[data-client]').forEach((b) => b.addEventListener('click', () => clientEvent(b.dataset.client)));
  $('first').addEventListener('click', () => seek(0));
  $('back').addEventListener('click', () => seek(sim.position - 1));
  $('forward').addEventListener('click', () => seek(sim.position + 1));
  $('last').addEventListener('click', () => seek(sim.length));
  $('slider').addEventListener('input', (e) => seek(Number(e.target.value)));
  $('error').querySelector('button').addEventListener('click', () => { $('error').hidden = true; });
  $('live').addEventListener('click', startLive);
  $('live-pause').addEventListener('click', () => (live.paused ? resumeLive() : pauseLive()));
  $('live-download').addEventListener('click', download);
  $('live-leave').addEventListener('click', leaveLive);
  document.addEventListener('keydown', (e) => {
    if (e.target.closest('input, select, textarea')) return;
    const moves = { ArrowLeft: -1, ArrowRight: 1 };
    if (e.key in moves) seek(sim.position + moves[e.key]);
    else if (e.key === 'Home') seek(0);
    else if (e.key === 'End') seek(sim.length);
    else return;
    e.preventDefault();
  });
  document.addEventListener('dragover', (e) => e.preventDefault());
  document.addEventListener('drop', (e) => { e.preventDefault(); const f = e.dataTransfer.files[0]; if (f) loadFile(f); });
  let resize = null;
  window.addEventListener('resize', () => { clearTimeout(resize); resize = setTimeout(() => sim && render(), 100); });

  // #example=NAME&step=N opens an example at a step (handy for links and tests).
  const params = new URLSearchParams(location.hash.slice(1));
  newSession();
  if (params.has('live') || new URLSearchParams(location.search).has('live')) {
    startLive();
  } else if (params.get('example')) {
    loadExample(params.get('example'));
    if (params.get('step')) seek(Number(params.get('step')));
  }
  document.body.dataset.ready = 'true';
}

main().catch((e) => showError(`could not start: ${e && e.message ? e.message : e}`));
