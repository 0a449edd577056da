// The audit trail: search by time, decision, policy, subject, reason or request id; page
// back through older records; follow new ones as they come (live tail).

import { api, query } from '../api.js';
import { badge, failure, field, fill, h, href, table, time } from '../dom.js';

const FILTERS = ['since', 'until', 'decision', 'kind', 'policy', 'subject', 'reason', 'request_id'];
const REASONS = ['issued', 'not_admitted', 'audience_required', 'audience_not_granted', 'scope_not_granted',
  'token_replayed', 'rate_limited', 'unavailable', 'put', 'delete', 'apply'];
const PAGE = 50;
const TAIL_EVERY_MS = 2000;

/** `2026-12-07T10:00:00Z` → the value of a `datetime-local` input (local time). */
const toLocal = (iso) => {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};
const fromLocal = (value) => (value ? new Date(value).toISOString() : '');

export async function audit(ctx) {
  ctx.main.append(h('h1', {}, 'Audit trail'));
  const q = Object.fromEntries(FILTERS.map((k) => [k, ctx.query.get(k) || '']));
  const controls = {
    since: h('input', { id: 'since', type: 'datetime-local', value: toLocal(q.since) }),
    until: h('input', { id: 'until', type: 'datetime-local', value: toLocal(q.until) }),
    decision: h('select', { id: 'decision', value: q.decision },
      h('option', { value: '' }, 'any'), h('option', { value: 'allow' }, 'allow'), h('option', { value: 'deny' }, 'deny')),
    kind: h('select', { id: 'kind', value: q.kind },
      h('option', { value: '' }, 'any'), h('option', { value: 'exchange' }, 'exchanges'), h('option', { value: 'admin' }, 'admin changes')),
    policy: h('input', { id: 'policy', type: 'text', autocomplete: 'off', value: q.policy }),
    subject: h('input', { id: 'subject', type: 'text', autocomplete: 'off', value: q.subject }),
    reason: h('input', { id: 'reason', type: 'text', autocomplete: 'off', list: 'reasons', value: q.reason }),
    request_id: h('input', { id: 'request-id', type: 'text', autocomplete: 'off', value: q.request_id }),
  };
  const live = h('input', { id: 'live', type: 'checkbox' });
  const form = h('form', { class: 'card filters', id: 'audit-search' },
    h('datalist', { id: 'reasons' }, REASONS.map((r) => h('option', { value: r }))),
    h('div', { class: 'inline' },
      field('Since (local time)', controls.since), field('Until (local time)', controls.until),
      field('Decision', controls.decision), field('Kind', controls.kind)),
    h('div', { class: 'inline' },
      field('Policy', controls.policy), field('Subject', controls.subject),
      field('Reason', controls.reason), field('Request id', controls.request_id)),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'button primary', id: 'search' }, 'Search'),
      h('a', { class: 'button', href: '#/audit' }, 'Clear'),
      h('label', { class: 'check' }, live, ' Live tail (new records appear as they are written)')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const next = {};
    for (const k of FILTERS) next[k] = controls[k].value.trim();
    next.since = fromLocal(controls.since.value);
    next.until = fromLocal(controls.until.value);
    location.hash = href('/audit', next);
  });
  const out = h('div', { id: 'records', 'aria-live': 'polite' });
  ctx.main.append(form, out);

  if (q.request_id) {
    live.disabled = true;
    try {
      const r = await api('GET', `/audit/${encodeURIComponent(q.request_id)}`);
      if (ctx.live()) fill(out, records(r.body.events));
    } catch (e) {
      if (ctx.live()) fill(out, e.status === 404 ? h('p', { class: 'notice warn', role: 'alert' }, 'No audit record has this request id.') : failure('The audit trail could not be read:', e));
    }
    return;
  }

  const filter = {};
  for (const k of ['since', 'until', 'decision', 'kind', 'policy', 'subject', 'reason']) filter[k] = q[k];
  const shown = [];
  let tbody = null;
  let cursor = null;
  const more = h('button', { type: 'button', class: 'button', id: 'older' }, 'Older records');
  const load = async () => {
    more.disabled = true;
    try {
      const r = await api('GET', `/audit${query({ ...filter, limit: PAGE, cursor })}`);
      if (!ctx.live()) return;
      cursor = r.body.next;
      shown.push(...r.body.events);
      if (!tbody) {
        const t = records(r.body.events);
        fill(out, t, more);
        tbody = t.querySelector('tbody');
      } else {
        for (const e of r.body.events) tbody.append(...row(e));
      }
      more.hidden = !cursor;
    } catch (e) {
      if (ctx.live()) out.append(failure('The audit trail could not be read:', e));
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener('click', load);
  await load();

  // Live tail: every few seconds, the records newer than the newest shown.
  let timer = null;
  const tail = async () => {
    const newest = shown.reduce((m, e) => Math.max(m, e.id), 0);
    const fresh = [];
    let c = null;
    for (let page = 0; page < 5; page++) {
      const r = await api('GET', `/audit${query({ ...filter, limit: PAGE, cursor: c })}`).catch(() => null);
      if (!r || !ctx.live()) return;
      const newer = r.body.events.filter((e) => e.id > newest);
      fresh.push(...newer);
      c = r.body.next;
      if (newer.length < r.body.events.length || !c) break;
    }
    if (!fresh.length || !tbody) return;
    shown.unshift(...fresh);
    const rows = fresh.flatMap((e) => row(e));
    rows.forEach((r) => r.classList.add('fresh'));
    tbody.prepend(...rows);
  };
  live.addEventListener('change', () => {
    clearInterval(timer);
    timer = live.checked ? setInterval(tail, TAIL_EVERY_MS) : null;
  });
  ctx.onLeave(() => clearInterval(timer));
}

function records(events) {
  if (events.length === 0) return h('p', { class: 'muted', id: 'no-records' }, 'No records match.');
  return table(['Time', 'Kind', 'Decision', 'Reason', 'Policy', 'Subject', 'Request', ''],
    events.flatMap((e) => row(e)), { id: 'audit-table' });
}

/** A record's row, and its detail row (hidden until asked for). */
function row(e) {
  const detail = h('tr', { class: 'detail', hidden: true },
    h('td', { colspan: 8 }, h('pre', { class: 'json' }, JSON.stringify(e, null, 2))));
  const toggle = h('button', { type: 'button', class: 'button small', 'aria-expanded': 'false' }, 'Details');
  toggle.addEventListener('click', () => {
    detail.hidden = !detail.hidden;
    toggle.setAttribute('aria-expanded', String(!detail.hidden));
  });
  const decision = e.decision
    ? badge(e.decision, e.decision === 'allow' ? 'good' : 'bad')
    : badge('change', 'info');
  const subject = (e.inbound && e.inbound.sub) || (e.detail && e.detail.actor) || '';
  return [h('tr', { dataset: { requestId: e.request_id } },
    h('td', { class: 'when' }, time(e.time)),
    h('td', {}, e.kind),
    h('td', {}, decision),
    h('td', {}, e.reason),
    h('td', {}, e.policy || '—'),
    h('td', { class: 'subject' }, subject ? h('code', {}, subject) : '—'),
    h('td', { class: 'id' }, h('a', { href: href('/explain', { request_id: e.request_id }), title: `Explain ${e.request_id}` },
      h('code', {}, e.request_id.length > 14 ? `${e.request_id.slice(0, 12)}…` : e.request_id))),
    h('td', {}, toggle)), detail];
}
