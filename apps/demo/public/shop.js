// The shop page: renders /api/me and sends the cart and profile changes. No framework, no build.
const $ = (id) => document.getElementById(id);
const euros = (cents) => (cents / 100).toFixed(2);
let catalog = {};

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error ?? `HTTP ${response.status}`);
  return data;
}

function render(me) {
  catalog = me.catalog;
  $('node').textContent = me.node;
  $('node').dataset.node = me.node;
  const slot = Number(/\d+/.exec(me.node)?.[0] ?? 10) - 1;
  $('node').style.background = `var(--n${slot % 10})`;
  $('session').textContent = me.session;
  $('bucket').textContent = me.bucket;
  $('views').textContent = me.views;
  if (document.activeElement !== $('name')) $('name').value = me.name;
  $('total').textContent = euros(me.totalCents);
  $('quote').textContent = euros(me.quoteCents);
  if (me.dashboard) $('where').href = `${me.dashboard}/?where=${encodeURIComponent(me.session)}`;
  else $('where').hidden = true;
  const products = $('products');
  products.replaceChildren(
    ...Object.entries(catalog).map(([sku, item]) => {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.textContent = 'Add';
      button.dataset.sku = sku;
      button.addEventListener('click', () => add(sku));
      li.append(`${item.name} — ${euros(item.cents)} € `, button);
      return li;
    }),
  );
  const rows = Object.entries(me.cart).map(([sku, quantity]) => {
    const tr = document.createElement('tr');
    tr.dataset.sku = sku;
    const remove = document.createElement('button');
    remove.textContent = 'Remove';
    remove.addEventListener('click', () => removeItem(sku));
    for (const text of [catalog[sku]?.name ?? sku, String(quantity), euros((catalog[sku]?.cents ?? 0) * quantity)]) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    const td = document.createElement('td');
    td.append(remove);
    tr.append(td);
    return tr;
  });
  $('cart').tBodies[0].replaceChildren(...rows);
  $('cart').dataset.items = String(rows.length);
}

async function renderOthers() {
  const { nodes } = await call('GET', '/api/nodes');
  const here = location.origin;
  const links = nodes.filter((node) => node.url !== here).map((node) => {
    const a = document.createElement('a');
    a.href = `${node.url}/`;
    a.textContent = node.id;
    a.dataset.node = node.id;
    return a;
  });
  $('others').replaceChildren(...(links.length === 0 ? [] : ['Open this shop on another node: ', ...links.flatMap((a, i) => (i === 0 ? [a] : [' · ', a]))]));
}

async function refresh() {
  render(await call('GET', '/api/me'));
}

async function add(sku) {
  await call('POST', '/api/cart', { sku, quantity: 1 });
  await refresh();
}

async function removeItem(sku) {
  await call('DELETE', `/api/cart/${encodeURIComponent(sku)}`);
  await refresh();
}

$('profile').addEventListener('submit', async (event) => {
  event.preventDefault();
  await call('POST', '/api/profile', { name: $('name').value });
  $('name').blur();
  await refresh();
});

$('logout').addEventListener('click', async () => {
  await call('POST', '/api/logout');
  await refresh();
});

await refresh();
await renderOthers();
