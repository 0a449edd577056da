// The overview: what is configured, whether the broker is ready, and the last day's
// decisions by result and reason.

import { api, open, query } from '../api.js';
import { badge, failure, h, href, seg, svg, table } from '../dom.js';

/** Most audit records read for the chart; past this the chart says it counted a part. */
const CHART_PAGES = 4;
const PAGE = 500;

export async function overview(ctx) {
  ctx.main.append(h('h1', {}, 'Overview'));
  const grid = h('div', { class: 'grid' });
  const cards = {
    ready: card('Readiness', 'ready'),
    issuers: card('Issuers', 'issuers'),
    policies: card('Policies', 'policies'),
    keys: card('Signing keys', 'keys'),
  };
  const chart = card('Decisions, last 24 hours', 'decisions');
  chart.classList.add('wide');
  grid.append(cards.ready, cards.issuers, cards.policies, cards.keys, chart);
  ctx.main.append(grid);

  const settle = (promise, el, draw, what) => promise.then(
    (r) => ctx.live() && el.append(draw(r.body)),
    (e) => ctx.live() && el.append(failure(what, e)),
  );
  await Promise.all([
    // Not ready answers 503 with a body: show it as it is.
    open('/readyz').then((r) => r, (e) => (e.body ? { body: e.body } : Promise.reject(e)))
      .then((r) => ctx.live() && cards.ready.append(readiness(r.body)),
        (e) => ctx.live() && cards.ready.append(failure('Readiness unknown:', e))),
    settle(api('GET', '/issuers'), cards.issuers, (b) => names(b.items, 'issuers', (d) => d.url), 'Issuers unavailable:'),
    settle(api('GET', '/policies'), cards.policies, (b) => names(b.items, 'policies', (d) => d.description), 'Policies unavailable:'),
    settle(api('GET', '/keys'), cards.keys, (b) => keyStates(b.keys), 'Keys unavailable:'),
    decisions(ctx).then((d) => ctx.live() && chart.append(d),
      (e) => ctx.live() && chart.append(failure('Audit unavailable:', e))),
  ]);
}

function card(title, id) {
  return h('section', { class: 'card', 'aria-labelledby': `card-${id}` }, h('h2', { id: `card-${id}` }, title));
}

function readiness(body) {
  const status = body.status || 'unknown';
  const kind = status === 'ready' ? 'good' : status === 'degraded' ? 'warn' : 'bad';
  return h('div', {},
    h('p', { class: 'big' }, badge(status, kind)),
    body.database ? h('p', {}, `Database: ${body.database}`) : null,
    body.audit ? h('p', {}, `Audit: ${body.audit}`) : null,
    body.signing_key ? h('p', { class: 'muted' }, 'Signing with ', h('code', {}, body.signing_key)) : null);
}

function names(items, kind, detail) {
  if (items.length === 0) return h('p', { class: 'muted' }, `None stored. `, h('a', { href: `#/${kind}` }, 'Open the list'));
  const shown = items.slice(0, 8);
  return h('div', {},
    h('p', { class: 'big' }, String(items.length)),
    h('ul', { class: 'plain' }, shown.map((item) => h('li', {},
      h('a', { href: `#/${kind}/${seg(item.document.name)}` }, item.document.name),
      detail(item.document) ? h('span', { class: 'muted' }, ` — ${detail(item.document)}`) : null))),
    items.length > shown.length ? h('p', {}, h('a', { href: `#/${kind}` }, `All ${items.length} ${kind}`)) : null);
}

function keyStates(keys) {
  const order = { next: 0, active: 1, retired: 2 };
  const sorted = [...keys].sort((a, b) => (order[a.state] ?? 3) - (order[b.state] ?? 3));
  return h('div', {},
    h('ul', { class: 'plain keys' }, sorted.map((k) => h('li', {},
      stateBadge(k.state), ' ',
      h('code', { title: k.kid }, `${k.kid.slice(0, 16)}…`), ' ',
      h('span', { class: 'muted small' }, k.alg)))),
    h('p', {}, h('a', { href: '#/keys' }, 'Key timeline')));
}

/** A key state's badge. */
export function stateBadge(state) {
  return badge(state, state === 'active' ? 'good' : state === 'next' ? 'info' : 'muted');
}

/** Reads the last day's exchange records (at most CHART_PAGES pages) and draws them. */
async function decisions(ctx) {
  const now = Date.now();
  const since = new Date(now - 24 * 3600 * 1000).toISOString();
  const events = [];
  let cursor = null;
  let more = false;
  for (let page = 0; page < CHART_PAGES; page++) {
    const r = await api('GET', `/audit${query({ kind: 'exchange', since, limit: PAGE, cursor })}`);
    events.push(...r.body.events);
    cursor = r.body.next;
    if (!cursor || !ctx.live()) break;
    more = page === CHART_PAGES - 1;
  }
  const hours = Array.from({ length: 24 }, () => ({ allow: 0, deny: 0 }));
  const reasons = new Map();
  for (const e of events) {
    const age = Math.floor((now - new Date(e.time).getTime()) / 3600000);
    const slot = hours[Math.min(23, Math.max(0, 23 - age))];
    const result = e.decision === 'allow' ? 'allow' : 'deny';
    slot[result]++;
    const key = `${result}\u0000${e.reason}`;
    reasons.set(key, (reasons.get(key) || 0) + 1);
  }
  const allowed = events.filter((e) => e.decision === 'allow').length;
  const denied = events.length - allowed;
  return h('div', {},
    h('p', { class: 'totals' },
      badge(`${allowed} allowed`, 'good'), ' ', badge(`${denied} denied`, denied ? 'bad' : 'muted'),
      ' ', h('a', { href: href('/audit', { kind: 'exchange', since }) }, 'Open in the audit trail')),
    more ? h('p', { class: 'muted' }, `Counted the newest ${events.length} decisions; the last 24 hours hold more.`) : null,
    hourly(hours, allowed, denied),
    reasonTable(reasons, since));
}

/** 24 columns, one an hour, allowed (green) under denied (red). */
function hourly(hours, allowed, denied) {
  const peak = Math.max(1, ...hours.map((s) => s.allow + s.deny));
  const W = 480;
  const H = 120;
  const bar = W / 24;
  const scale = (H - 16) / peak;
  const columns = hours.map((s, i) => {
    const x = i * bar + 2;
    const ha = s.allow * scale;
    const hd = s.deny * scale;
    const label = `${23 - i === 0 ? 'the last hour' : `${23 - i} to ${24 - i} hours ago`}: ${s.allow} allowed, ${s.deny} denied`;
    return svg('g', {},
      svg('title', {}, label),
      svg('rect', { x, y: H - 12 - ha, width: bar - 4, height: ha, class: 'allow' }),
      svg('rect', { x, y: H - 12 - ha - hd, width: bar - 4, height: hd, class: 'deny' }),
      svg('rect', { x: i * bar, y: 0, width: bar, height: H, class: 'hit' }));
  });
  return svg('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
    'aria-label': `Decisions per hour over the last 24 hours: ${allowed} allowed, ${denied} denied; busiest hour ${peak}.`,
  },
  svg('line', { x1: 0, x2: W, y1: H - 12, y2: H - 12, class: 'axis' }),
  svg('text', { x: 0, y: H - 1, class: 'tick' }, '24 h ago'),
  svg('text', { x: W, y: H - 1, class: 'tick end' }, 'now'),
  svg('text', { x: 0, y: 10, class: 'tick' }, `${peak}/h`),
  columns);
}

/** Counts by result and reason code, each with a bar and a link to those records. */
function reasonTable(reasons, since) {
  const rows = [...reasons.entries()].sort((a, b) => b[1] - a[1]);
  if (rows.length === 0) return h('p', { class: 'muted' }, 'No exchanges in the last 24 hours.');
  const top = rows[0][1];
  return table(['Result', 'Reason', 'Count', ''], rows.map(([key, count]) => {
    const [result, reason] = key.split('\u0000');
    const meter = h('span', { class: `meter ${result}` });
    meter.style.width = `${Math.max(2, Math.round((count / top) * 100))}%`;
    return h('tr', {},
      h('td', {}, badge(result, result === 'allow' ? 'good' : 'bad')),
      h('td', {}, h('a', { href: href('/audit', { reason, since, kind: 'exchange' }) }, reason)),
      h('td', { class: 'num' }, String(count)),
      h('td', { class: 'bar' }, meter));
  }), { class: 'reasons' });
}
