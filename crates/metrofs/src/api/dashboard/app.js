// metrofs dashboard: polls GET /api/status every second and draws it. No framework, no build.
// Text from the API is only ever set with textContent (never parsed as HTML).
'use strict';

const TOKEN_KEY = 'metrofs-token';
const POLL_MS = 1000;
const LATENCY_POINTS = 120;
const SVGNS = 'http://www.w3.org/2000/svg';
const COLORS = {
  ok: { stroke: '#1f9d55', fill: '#e3f4ea' },
  warn: { stroke: '#d68a00', fill: '#fdf1d8' },
  bad: { stroke: '#d1342f', fill: '#fbe4e3' },
  unknown: { stroke: '#8a94a0', fill: '#eef0f2' },
};

const latency = [];
let lastIo = null;
let lastEventsKey = '';
let busy = false;

function $(id) { return document.getElementById(id); }

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

function showTokenState() {
  $('token-state').textContent = token() ? 'token set for this tab' : 'no token (actions will ask)';
}

function askToken(why) {
  const t = window.prompt((why ? why + '\n\n' : '') +
    'API token of this array (the content of its token file, e.g. DATA_DIR/api.token). It is kept in this tab only.', '');
  if (t === null) return false;
  if (t.trim()) sessionStorage.setItem(TOKEN_KEY, t.trim()); else sessionStorage.removeItem(TOKEN_KEY);
  showTokenState();
  return !!t.trim();
}

async function call(method, path) {
  const headers = { 'x-metrofs-client': 'dashboard' };
  if (token()) headers.Authorization = 'Bearer ' + token();
  return fetch(path, { method, headers, cache: 'no-store' });
}

async function errorText(r) {
  try {
    const e = await r.json();
    return e.message + (e.hint ? '\n\n' + e.hint : '');
  } catch (_) {
    return 'HTTP ' + r.status;
  }
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}

function stateClass(state) {
  return { Normal: 'ok', Synchronizing: 'warn', Paused: 'warn', ToBeSynchronized: 'bad' }[state] || 'unknown';
}

// ---------------------------------------------------------------- topology

function node(g, id, x, y, w, h, title, sub, look, state) {
  const c = COLORS[look];
  const n = svg('g', { class: 'node', id: id, 'data-state': state });
  n.appendChild(svg('rect', { x, y, width: w, height: h, rx: 8, fill: c.fill, stroke: c.stroke, 'stroke-width': 2 }));
  n.appendChild(svg('text', { x: x + 10, y: y + 22 }, title));
  sub.forEach((line, i) => n.appendChild(svg('text', { x: x + 10, y: y + 40 + 15 * i, class: 'sub' }, line)));
  g.appendChild(n);
}

function line(g, id, x1, y1, x2, y2, look, state, dash) {
  const attrs = { id, x1, y1, x2, y2, stroke: COLORS[look].stroke, 'stroke-width': 3, 'data-state': state };
  if (dash) attrs['stroke-dasharray'] = '6 5';
  g.appendChild(svg('line', attrs));
}

function drawTopology(st) {
  const root = $('topology');
  root.replaceChildren();
  const d = st.domain;
  const arrays = d.arrays.slice().sort((a, b) => a.name.localeCompare(b.name));
  const pos = [{ x: 400, y: 20 }, { x: 700, y: 20 }];
  const serving = new Set(st.pairs.map((p) => p.serving));
  if (st.pairs.length === 0) serving.add(st.array);

  node(root, 'hosts', 10, 80, 130, 64, 'hosts', ['NFSv3 clients'], 'unknown', 'info');
  const servingArray = arrays.find((a) => serving.has(a.name) && a.state === 'Up');
  const svcAddr = d.service_address || (servingArray && servingArray.nfs_listen) || 'NFS of the serving array';
  node(root, 'service', 180, 80, 180, 64, 'service address', [svcAddr], servingArray ? 'ok' : 'bad',
    servingArray ? 'served' : 'unserved');
  line(root, 'hosts-service', 140, 112, 180, 112, servingArray ? 'ok' : 'bad', servingArray ? 'up' : 'down');

  arrays.forEach((a, i) => {
    const p = pos[i] || pos[0];
    const look = a.state === 'Up' ? 'ok' : 'bad';
    const role = serving.has(a.name) ? 'serves' : 'secondary';
    const sub = [(a.preferred ? 'preferred, ' : '') + role, a.state === 'Up' ? 'up' : 'unreachable'];
    node(root, 'array-' + a.name, p.x, p.y, 180, 80, a.name + (a.relation === 'this' ? ' (this array)' : ''), sub, look, a.state);
    const on = serving.has(a.name) && a.state === 'Up';
    line(root, 'service-' + a.name, 360, 112, p.x + 90, p.y + 80, on ? 'ok' : 'unknown', on ? 'serving' : 'idle', !on);
  });

  if (d.link && arrays.length === 2) {
    const up = d.link.state === 'Up';
    line(root, 'link', 580, 60, 700, 60, up ? 'ok' : 'bad', d.link.state);
    const rtt = d.link.rtt_us != null ? ' ' + (d.link.rtt_us / 1000).toFixed(2) + ' ms' : '';
    root.appendChild(svg('text', { x: 640, y: 50, class: 'sub', 'text-anchor': 'middle' }, up ? 'link up' + rtt : 'link DOWN'));
  }

  const q = d.quorum;
  let qLook = 'unknown';
  let qSub = ['static priority', 'preferred site goes on'];
  let qState = 'static';
  if (q.mode === 'quorum') {
    const reach = q.servers.filter((s) => s.reachable).length;
    qLook = reach === q.servers.length ? 'ok' : reach === 0 ? 'bad' : 'warn';
    qState = reach + '/' + q.servers.length;
    qSub = q.servers.slice(0, 2).map((s) => s.addr + (s.reachable ? ' up' : ' unreachable'));
  }
  node(root, 'quorum', 550, 160, 180, 70, 'quorum', qSub, qLook, qState);
  if (arrays.length === 2) {
    line(root, 'quorum-a', 590, 160, 520, 100, qLook, qState, true);
    line(root, 'quorum-b', 690, 160, 760, 100, qLook, qState, true);
  }
  $('topology-note').textContent = d.name ? 'domain ' + d.name + ', preferred site ' + d.preferred_site +
    (d.recovery ? ', recovery ' + d.recovery : '') : 'an array on its own (no peer configured)';
}

// ---------------------------------------------------------------- pairs

async function action(p, what) {
  const words = {
    pause: 'Pause replication of pair ' + p.id + ' (fs ' + p.fs + ')? ' + p.serving + ' goes on alone and the DCL records every change.',
    resume: 'Resume pair ' + p.id + ' (fs ' + p.fs + ')? What the DCL names is copied from ' + p.serving + ' to ' + p.secondary + '.',
    swap: 'Swap pair ' + p.id + ' (fs ' + p.fs + ')? Service moves from ' + p.serving + ' to ' + p.secondary + '; hosts reconnect through the service address.',
  };
  if (!window.confirm(words[what])) return;
  busy = true;
  try {
    let r = await call('POST', '/api/pairs/' + encodeURIComponent(p.id) + '/' + what);
    if (r.status === 401 && askToken(await errorText(r))) {
      r = await call('POST', '/api/pairs/' + encodeURIComponent(p.id) + '/' + what);
    }
    if (!r.ok && r.status !== 401) window.alert(what + ' refused: ' + await errorText(r));
  } finally {
    busy = false;
    poll();
  }
}

function drawPairs(st) {
  const body = $('pairs').querySelector('tbody');
  body.replaceChildren();
  $('pairs-empty').hidden = st.pairs.length > 0;
  for (const p of st.pairs) {
    const tr = el('tr', { id: 'pair-' + p.id, 'data-state': p.state });
    tr.appendChild(el('td', { class: 'mono' }, p.id));
    tr.appendChild(el('td', {}, p.fs));
    const stateCell = el('td');
    const badge = el('span', { class: 'badge state-' + p.state + ' ' + stateClass(p.state), 'data-state': p.state }, p.state);
    stateCell.appendChild(badge);
    if (p.phase && p.phase !== 'Open') stateCell.appendChild(el('span', { class: 'muted' }, ' ' + p.phase.toLowerCase()));
    tr.appendChild(stateCell);
    tr.appendChild(el('td', {}, p.serving + (p.forced ? ' (forced)' : '')));
    tr.appendChild(el('td', {}, p.data.map((d) => d.array + ' ' + d.status).join(', ')));
    tr.appendChild(el('td', {}, p.dcl.full ? 'full sync' : bytes(p.dcl.bytes)));
    const sync = el('td');
    if (p.sync && p.state === 'Synchronizing') {
      const bar = el('span', { class: 'progress' });
      const fill = el('div');
      fill.style.width = Math.max(0, Math.min(100, p.sync.percent)).toFixed(1) + '%';
      bar.appendChild(fill);
      sync.appendChild(bar);
      sync.appendChild(el('span', { class: 'muted' }, ' ' + p.sync.percent.toFixed(1) + ' %' +
        (p.sync.eta_s != null ? ', ETA ' + p.sync.eta_s + ' s' : '')));
    } else if (!(p.verify && p.verify.status === 'Busy')) {
      sync.textContent = '–';
    }
    if (p.verify && p.verify.status === 'Busy') {
      const v = p.verify;
      if (sync.childNodes.length > 0) sync.appendChild(el('br'));
      const bar = el('span', { class: 'progress' });
      const fill = el('div');
      fill.style.width = Math.max(0, Math.min(100, v.percent)).toFixed(1) + '%';
      bar.appendChild(fill);
      sync.appendChild(bar);
      sync.appendChild(el('span', { class: 'muted' }, ' verify ' + v.percent.toFixed(1) + ' %' +
        (v.eta_s != null ? ', ETA ' + v.eta_s + ' s' : '')));
    }
    tr.appendChild(sync);
    tr.appendChild(el('td', {}, String(p.epoch)));
    const acts = el('td');
    const can = {
      pause: p.state === 'Normal' || p.state === 'Synchronizing',
      resume: p.state === 'Paused' || p.state === 'ToBeSynchronized',
      swap: p.state === 'Normal' && p.link === 'Up',
    };
    for (const what of ['pause', 'resume', 'swap']) {
      const b = el('button', { type: 'button', 'data-action': what }, what);
      b.disabled = !can[what] || busy;
      b.addEventListener('click', () => action(p, what));
      acts.appendChild(b);
      acts.appendChild(document.createTextNode(' '));
    }
    tr.appendChild(acts);
    body.appendChild(tr);
  }
}

// ---------------------------------------------------------------- latency

function sampleLatency(io) {
  if (lastIo) {
    const n = io.dual_writes - lastIo.dual_writes;
    const nr = io.dual_write_remote - lastIo.dual_write_remote;
    latency.push({
      total: n > 0 ? (io.dual_write_total_us - lastIo.dual_write_total_us) / n / 1000 : null,
      local: n > 0 ? (io.dual_write_local_us - lastIo.dual_write_local_us) / n / 1000 : null,
      remote: nr > 0 ? (io.dual_write_remote_us - lastIo.dual_write_remote_us) / nr / 1000 : null,
      n,
    });
    while (latency.length > LATENCY_POINTS) latency.shift();
  }
  lastIo = io;
}

function drawLatency() {
  const c = $('latency');
  const ratio = window.devicePixelRatio || 1;
  const w = c.clientWidth || c.width;
  const h = c.clientHeight || c.height;
  c.width = Math.round(w * ratio);
  c.height = Math.round(h * ratio);
  const g = c.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const values = latency.flatMap((s) => [s.total, s.local, s.remote]).filter((v) => v != null);
  const max = Math.max(0.1, ...values) * 1.15;
  const left = 44;
  const bottom = h - 18;
  g.strokeStyle = '#d9dee4';
  g.fillStyle = '#6b7785';
  g.font = '11px system-ui, sans-serif';
  for (let i = 0; i <= 4; i++) {
    const y = bottom - (bottom - 8) * i / 4;
    g.beginPath(); g.moveTo(left, y); g.lineTo(w - 6, y); g.stroke();
    g.fillText((max * i / 4).toFixed(max < 2 ? 2 : 1), 4, y + 4);
  }
  g.fillText('last ' + LATENCY_POINTS + ' s', w - 80, h - 4);
  const x = (i) => left + (w - 6 - left) * i / (LATENCY_POINTS - 1);
  const y = (v) => bottom - (bottom - 8) * v / max;
  for (const [key, color] of [['local', '#2864c8'], ['remote', '#d68a00'], ['total', '#1d2733']]) {
    g.strokeStyle = color;
    g.lineWidth = key === 'total' ? 2 : 1.5;
    g.beginPath();
    let pen = false;
    const offset = LATENCY_POINTS - latency.length;
    latency.forEach((s, i) => {
      const v = s[key];
      if (v == null) { pen = false; return; }
      if (pen) g.lineTo(x(offset + i), y(v)); else g.moveTo(x(offset + i), y(v));
      pen = true;
    });
    g.stroke();
  }
  const last = latency.length ? latency[latency.length - 1] : null;
  $('latency-now').textContent = last && last.total != null
    ? ' — now ' + last.total.toFixed(2) + ' ms over ' + last.n + ' writes/s' : ' — no dual writes this second';
}

// ---------------------------------------------------------------- alarms, events

function drawAlarms(st) {
  const ul = $('alarms');
  ul.replaceChildren();
  if (st.alarms.length === 0) {
    ul.appendChild(el('li', { class: 'muted', id: 'no-alarms' }, 'no alarms'));
    return;
  }
  for (const a of st.alarms) {
    const li = el('li', { 'data-id': a.id, 'data-severity': a.severity });
    li.appendChild(el('span', { class: 'sev-' + a.severity }, a.severity + ' '));
    li.appendChild(document.createTextNode(a.text));
    li.appendChild(el('span', { class: 'hint' }, a.hint));
    ul.appendChild(li);
  }
}

function drawEvents(st) {
  const key = st.events.map((e) => e.id).join(',');
  if (key === lastEventsKey) return;
  lastEventsKey = key;
  const body = $('events').querySelector('tbody');
  body.replaceChildren();
  for (const e of st.events.slice().reverse()) {
    const tr = el('tr', { 'data-kind': e.kind });
    tr.appendChild(el('td', { class: 'mono' }, String(e.id)));
    tr.appendChild(el('td', { class: 'mono' }, new Date(e.time_ms).toISOString().slice(11, 23)));
    tr.appendChild(el('td', {}, e.kind));
    tr.appendChild(el('td', { class: 'mono' }, e.pair || ''));
    tr.appendChild(el('td', {}, e.actor));
    tr.appendChild(el('td', {}, e.text));
    body.appendChild(tr);
  }
}

// ---------------------------------------------------------------- poll

function setConn(look, state, text) {
  const c = $('conn');
  c.className = 'badge ' + look;
  c.dataset.state = state;
  c.textContent = text;
}

async function poll() {
  let r;
  try {
    r = await call('GET', '/api/status');
  } catch (_) {
    setConn('bad', 'unreachable', 'array unreachable');
    return;
  }
  if (r.status === 401) {
    setConn('warn', 'token', 'reads from here need the token: Set token');
    return;
  }
  if (!r.ok) {
    setConn('bad', 'error', 'HTTP ' + r.status);
    return;
  }
  const st = await r.json();
  document.title = 'metrofs ' + st.array;
  $('array-name').textContent = '— ' + st.array;
  setConn('ok', 'live', 'live');
  sampleLatency(st.io);
  drawTopology(st);
  drawPairs(st);
  drawLatency();
  drawAlarms(st);
  drawEvents(st);
  document.body.dataset.updated = String(st.time);
}

$('token-button').addEventListener('click', () => { askToken(''); });
showTokenState();
poll();
setInterval(poll, POLL_MS);
