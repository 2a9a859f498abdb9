// The dashboard page: one server-sent `snapshot` event per poll (every 500 ms) redraws it; the
// buttons post to /api/*. Node cards and grid cells are created once and then only updated, so
// a button being clicked is never replaced under the pointer.
const $ = (id) => document.getElementById(id);
const number = (value) => Math.round(value).toLocaleString('en-US');
const ms = (value) => (value === null || value === undefined || Number.isNaN(value) ? '–' : `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ms`);
const colour = (index) => (index < 0 ? '#d1d5db' : `var(--n${index % 10})`);

const cards = new Map();
let cells = [];
let lastCells = [];
let found = new Set();
let latest = null;
/** The session looked up last: looked up again every 2 s, so the answer follows moves. */
let watching = null;

async function post(method, path, body) {
  const response = await fetch(path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) alert(data.error ?? `HTTP ${response.status}`);
  return data;
}

function button(label, className, onClick) {
  const element = document.createElement('button');
  element.type = 'button';
  element.textContent = label;
  if (className) element.className = className;
  element.addEventListener('click', async () => {
    element.disabled = true;
    try {
      await onClick();
    } finally {
      element.disabled = false;
    }
  });
  return element;
}

function card(node) {
  let entry = cards.get(node.id);
  if (entry !== undefined) return entry;
  const root = document.createElement('article');
  root.className = 'node';
  root.dataset.node = node.id;
  root.style.setProperty('--c', colour(node.index));
  root.innerHTML = `
    <h3><span class="name"></span><span class="state"></span><span class="crown" hidden>coordinator</span></h3>
    <table>
      <tr><td>incarnation</td><td><b class="incarnation"></b> <span class="muted pid"></span></td></tr>
      <tr><td>buckets</td><td><b class="buckets"></b> <span class="muted handoffs"></span></td></tr>
      <tr><td>sessions</td><td><b class="memory"></b> memory · <b class="disk"></b> on disk</td></tr>
      <tr><td>backs up</td><td><b class="backups"></b> buckets</td></tr>
      <tr><td>traffic</td><td><b class="rps"></b> req/s · <b class="cps"></b> session calls/s</td></tr>
      <tr><td>hops</td><td class="hops"></td></tr>
      <tr><td>migrations</td><td><b class="in"></b> in · <b class="out"></b> out · evacuation <b class="evacuation"></b></td></tr>
      <tr><td>cookies</td><td><b class="tampered"></b> tampered · <b class="redirected"></b> redirected · <b class="expired"></b> expired</td></tr>
    </table>
    <div class="actions"></div>`;
  root.querySelector('.name').textContent = node.id;
  const actions = root.querySelector('.actions');
  const link = document.createElement('a');
  link.target = '_blank';
  link.rel = 'noopener';
  link.textContent = 'open shop';
  link.className = 'shop-link';
  const stop = button('Stop gracefully', 'stop', () => post('POST', `/api/nodes/${node.id}/stop`));
  const kill = button('Kill (SIGKILL)', 'danger kill', () => post('POST', `/api/nodes/${node.id}/kill`));
  const restart = button('Restart', 'restart', () => post('POST', `/api/nodes/${node.id}/restart`));
  actions.append(link, stop, kill, restart);
  $('nodes').append(root);
  const q = (selector) => root.querySelector(selector);
  entry = { root, link, stop, kill, restart, q };
  cards.set(node.id, entry);
  return entry;
}

function renderNode(node, coordinator) {
  const { root, link, stop, kill, restart, q } = card(node);
  const alive = node.process === 'running' || node.process === 'stopping' || node.process === 'starting';
  const state = node.process === 'running' ? node.member : node.process;
  root.classList.toggle('gone', !alive);
  root.dataset.state = state;
  const badge = q('.state');
  badge.textContent = state;
  badge.className = `state ${state}`;
  q('.crown').hidden = coordinator !== node.id;
  q('.incarnation').textContent = node.incarnation ?? '–';
  q('.pid').textContent = node.pid === null ? '' : `pid ${node.pid}`;
  q('.buckets').textContent = node.bucketsOwned;
  q('.handoffs').textContent = node.handoffsPending > 0 ? `(${node.handoffsPending} handoffs pending)` : '';
  q('.memory').textContent = number(node.sessions.memory);
  q('.disk').textContent = number(node.sessions.disk);
  q('.backups').textContent = number(node.bucketsBackedUp);
  q('.rps').textContent = number(node.requestsPerSec);
  q('.cps').textContent = number(node.callsPerSec);
  const total = Object.values(node.hops).reduce((sum, n) => sum + n, 0);
  q('.hops').textContent = !alive ? '–' : total === 0 ? 'no calls yet' : ['0', '1', '2'].map((hop) => `${hop}: ${Math.round((100 * (node.hops[hop] ?? 0)) / total)}%`).join(' · ') + ' of calls';
  q('.in').textContent = number(node.migratedIn);
  q('.out').textContent = number(node.migratedOut);
  q('.evacuation').textContent = node.evacuation;
  q('.tampered').textContent = node.http ? number(node.http.tampered) : '–';
  q('.redirected').textContent = node.http ? number(node.http.redirected) : '–';
  q('.expired').textContent = node.http ? number(node.http.expired) : '–';
  link.hidden = !(node.process === 'running' && node.app);
  if (node.app) link.href = `${node.app}/`;
  stop.hidden = node.process !== 'running';
  kill.hidden = !(node.process === 'running' || node.process === 'stopping');
  restart.hidden = alive;
}

function renderGrid(snapshot) {
  const grid = $('grid');
  if (cells.length !== snapshot.buckets) {
    grid.replaceChildren();
    grid.style.setProperty('--cols', String(Math.round(Math.sqrt(snapshot.buckets)) || 32));
    cells = Array.from({ length: snapshot.buckets }, (_, bucket) => {
      const cell = document.createElement('div');
      cell.className = 'cell';
      cell.title = `bucket ${bucket}`;
      grid.append(cell);
      return cell;
    });
    lastCells = [];
  }
  const ids = snapshot.nodes.map((node) => node.id);
  const name = (index) => (index < 0 ? 'nobody' : ids[index]);
  const incoming = new Set(snapshot.incoming.map(([bucket, node]) => `${bucket}/${node}`));
  const replicas = snapshot.replicas;
  snapshot.owners.forEach((owner, bucket) => {
    const cell = cells[bucket];
    const backups = snapshot.backups.slice(bucket * replicas, bucket * replicas + replicas).filter((node) => node >= 0);
    // The owner fills the square, the first backup its lower right corner.
    const key = `${owner}:${backups.join(',')}`;
    const changed = lastCells.length > 0 && lastCells[bucket] !== key;
    if (lastCells[bucket] !== key) {
      cell.style.background = backups.length === 0 ? colour(owner) : `linear-gradient(135deg, ${colour(owner)} 0 58%, #fff 58% 64%, ${colour(backups[0])} 64%)`;
      cell.dataset.owner = owner < 0 ? '' : ids[owner];
      cell.dataset.backups = backups.map(name).join(',');
      const copies = backups.map((node) => `${name(node)}${incoming.has(`${bucket}/${node}`) ? ' (receiving its copy)' : ''}`);
      cell.title = `bucket ${bucket}: owner ${owner < 0 ? 'none' : ids[owner]}${copies.length === 0 ? ', no backup' : `, backup ${copies.join(', ')}`}`;
    }
    if (changed) {
      cell.classList.add('changed');
      setTimeout(() => cell.classList.remove('changed'), 2500);
    }
    cell.classList.toggle('found', found.has(bucket));
  });
  lastCells = snapshot.owners.map((owner, bucket) => `${owner}:${snapshot.backups.slice(bucket * replicas, bucket * replicas + replicas).filter((node) => node >= 0).join(',')}`);
  const counts = new Map();
  for (const owner of snapshot.owners) counts.set(owner, (counts.get(owner) ?? 0) + 1);
  const backed = new Map();
  for (const node of snapshot.backups) if (node >= 0) backed.set(node, (backed.get(node) ?? 0) + 1);
  $('bucket-count').textContent = `(${snapshot.buckets}, epoch ${snapshot.epoch})`;
  $('legend').replaceChildren(
    ...snapshot.nodes
      .filter((node, index) => counts.has(index) || node.process === 'running')
      .map((node) => {
        const span = document.createElement('span');
        span.style.setProperty('--c', colour(node.index));
        const index = snapshot.nodes.indexOf(node);
        span.textContent = `${node.id}: owns ${counts.get(index) ?? 0}${replicas > 0 ? `, backs up ${backed.get(index) ?? 0}` : ''}`;
        return span;
      }),
  );
}

function renderLoad(load) {
  const running = load !== null && load.running;
  $('load-start').disabled = running;
  $('load-stop').disabled = !running;
  const p = load?.progress;
  $('load-state').textContent = running ? `running: ${load.users} shoppers${p ? `, ${p.elapsedSec.toFixed(0)} s` : ''}` : p ? 'finished' : 'idle';
  $('load-rps').textContent = p ? number(p.done ? p.total.perSec : p.perSec) : '–';
  $('load-p50').textContent = p ? ms(p.done ? p.total.p50 : p.p50) : '–';
  $('load-p95').textContent = p ? ms(p.done ? p.total.p95 : p.p95) : '–';
  $('load-p99').textContent = p ? ms(p.done ? p.total.p99 : p.p99) : '–';
  $('load-requests').textContent = p ? number(p.requests) : '–';
  $('load-failures').textContent = p ? number(p.failures) : '–';
  $('load-mismatches').textContent = p ? number(p.mismatches) : '–';
  $('load-retried').textContent = p ? number(p.retried) : '–';
}

function renderEvents(events) {
  const list = $('events');
  const items = events
    .slice(-80)
    .reverse()
    .map((event) => {
      const li = document.createElement('li');
      li.className = event.kind;
      const time = document.createElement('time');
      time.textContent = new Date(event.at).toLocaleTimeString();
      const kind = document.createElement('span');
      kind.className = 'kind';
      kind.textContent = event.kind;
      const text = document.createElement('span');
      text.textContent = event.text;
      li.append(time, kind, text);
      return li;
    });
  list.replaceChildren(...items);
}

function render(snapshot) {
  latest = snapshot;
  const up = snapshot.nodes.filter((node) => node.process === 'running' && node.member === 'up').length;
  $('epoch').textContent = snapshot.epoch;
  $('coordinator').textContent = snapshot.coordinator ?? '–';
  $('up').textContent = `${up} / ${snapshot.nodes.filter((node) => node.process !== 'stopped').length}`;
  $('sessions').textContent = number(snapshot.totals.sessions);
  $('shared').textContent = snapshot.totals.shared === null ? '–' : number(snapshot.totals.shared);
  $('rps').textContent = number(snapshot.totals.requestsPerSec);
  $('cps').textContent = number(snapshot.totals.callsPerSec);
  const hops = snapshot.totals.hops;
  $('hops').textContent = ['0', '1', '2'].map((hop) => number(hops[hop] ?? 0)).join(' / ');
  $('routing').textContent = snapshot.routing;
  for (const node of snapshot.nodes) renderNode(node, snapshot.coordinator);
  renderGrid(snapshot);
  renderLoad(snapshot.load);
  renderEvents(snapshot.events);
  document.body.dataset.epoch = String(snapshot.epoch);
}

async function where(id, quiet = false) {
  watching = id;
  const result = $('where-result');
  if (!quiet) result.textContent = 'looking…';
  const response = await fetch(`/api/where?id=${encodeURIComponent(id)}`);
  const data = await response.json();
  if (!response.ok) {
    result.textContent = data.error;
    return;
  }
  found = new Set([data.bucket]);
  if (latest !== null) renderGrid(latest);
  const table = document.createElement('table');
  table.innerHTML = '<tr><td>group</td><td><code class="group"></code></td></tr><tr><td>bucket</td><td><b class="bucket"></b> (outlined in the grid)</td></tr><tr><td>bucket owner</td><td><b class="owner"></b></td></tr>';
  table.querySelector('.group').textContent = data.group;
  table.querySelector('.bucket').textContent = data.bucket;
  table.querySelector('.owner').textContent = data.owner ?? 'unknown';
  for (const actor of data.actors) {
    const tr = document.createElement('tr');
    tr.className = 'location';
    const name = document.createElement('td');
    name.innerHTML = '<code></code>';
    name.querySelector('code').textContent = actor.id;
    const place = document.createElement('td');
    place.textContent =
      actor.location === null
        ? 'nowhere in memory or on a node\'s disk (never used, in the shared store, or lost)'
        : `on ${actor.location.node}, worker ${actor.location.worker}, ${actor.location.tier === 'disk' ? 'parked on its disk' : 'in memory'}`;
    place.dataset.node = actor.location?.node ?? '';
    tr.append(name, place);
    table.append(tr);
  }
  result.replaceChildren(table);
}

$('add-node').addEventListener('click', async (event) => {
  event.target.disabled = true;
  try {
    await post('POST', '/api/nodes');
  } finally {
    event.target.disabled = false;
  }
});
$('load-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  await post('POST', '/api/load', { users: Number($('load-users').value), seconds: Number($('load-seconds').value) });
});
$('load-stop').addEventListener('click', () => post('DELETE', '/api/load'));
$('where-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const id = $('where-id').value.trim();
  if (id !== '') void where(id);
});

const source = new EventSource('/events');
source.addEventListener('snapshot', (event) => {
  $('live').textContent = 'live';
  $('live').className = 'live';
  render(JSON.parse(event.data));
});
source.addEventListener('error', () => {
  $('live').textContent = 'disconnected: retrying';
  $('live').className = 'live off';
});

setInterval(() => {
  if (watching !== null) void where(watching, true);
}, 2000);

const asked = new URLSearchParams(location.search).get('where');
if (asked) {
  $('where-id').value = asked;
  void where(asked);
}
