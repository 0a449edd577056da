// Explain: how the broker decides (or decided) an exchange. A token is decided now, with
// every check of every policy of its issuer (`POST /admin/v1/explain`); a request id shows
// the recorded decision (`GET /admin/v1/audit/{id}`).

import { api } from '../api.js';
import { failure, field, fill, h, href, time } from '../dom.js';
import { renderDecision } from './trace.js';

const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export async function explain(ctx) {
  ctx.main.append(h('h1', {}, 'Explain a decision'));
  const subject = h('textarea', { id: 'subject', rows: 4, spellcheck: 'false', autocomplete: 'off', required: true });
  const audience = h('input', { id: 'audience', type: 'text', autocomplete: 'off' });
  const scope = h('input', { id: 'scope', type: 'text', autocomplete: 'off' });
  const policy = h('input', { id: 'policy', type: 'text', autocomplete: 'off', value: ctx.query.get('policy') || '' });
  const out = h('div', { id: 'explanation', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'button primary', id: 'explain' }, 'Explain');
  const form = h('form', { class: 'card' },
    field('Subject token or request id', subject,
      'A token (as a workload would present it) is decided now; it is sent to the broker only. A request id (X-Request-Id of an exchange) shows the recorded decision.'),
    h('details', { open: Boolean(policy.value) || undefined },
      h('summary', {}, 'Request (optional, for a token)'),
      h('div', { class: 'inline' },
        field('Audience', audience), field('Scope', scope, 'Space-separated.'), field('Policy', policy))),
    h('div', { class: 'actions' }, submit));
  ctx.main.append(form, out);

  const run = async () => {
    const value = subject.value.trim();
    if (!value) return;
    submit.disabled = true;
    fill(out, h('p', { class: 'muted' }, 'Explaining…'));
    try {
      const view = JWT.test(value) && value.length > 20
        ? await byToken(value, { audience: audience.value.trim(), scope: scope.value.trim(), policy: policy.value.trim() })
        : await byRequestId(value);
      if (ctx.live()) fill(out, view);
    } catch (e) {
      if (ctx.live()) fill(out, e.status === 404 ? h('div', { class: 'notice warn', role: 'alert' }, 'No audit record has this request id.') : failure('Not explained:', e));
    } finally {
      submit.disabled = false;
    }
  };
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    run();
  });
  const requestId = ctx.query.get('request_id');
  if (requestId) {
    subject.value = requestId;
    await run();
  }
}

async function byToken(token, request) {
  const body = { subject_token: token };
  for (const [k, v] of Object.entries(request)) if (v) body[k] = v;
  const r = await api('POST', '/explain', { body });
  return h('div', {}, h('p', { class: 'muted' }, 'Decided now, under the policies in force.'), renderDecision(r.body));
}

async function byRequestId(id) {
  const r = await api('GET', `/audit/${encodeURIComponent(id)}`);
  const events = r.body.events;
  const record = events.find((e) => e.kind === 'exchange') || events[0];
  const when = h('p', { class: 'muted' }, 'Recorded ', time(record.time),
    record.client_addr ? ` from ${record.client_addr}` : '', '. ',
    h('a', { href: href('/audit', { request_id: id }) }, 'The audit record'));
  if (record.kind !== 'exchange') {
    return h('div', {}, when, h('p', {}, `An admin change (${record.reason}).`),
      h('pre', { class: 'json' }, JSON.stringify(record.detail, null, 2)));
  }
  const detail = record.detail || {};
  const asked = [
    detail.audience ? `audience ${detail.audience}` : null,
    detail.scope ? `scope ${[].concat(detail.scope).join(' ')}` : null,
    detail.policy ? `policy ${detail.policy}` : null,
  ].filter(Boolean);
  const trace = detail.trace || [];
  return h('div', {}, when,
    asked.length ? h('p', {}, `Asked for ${asked.join(', ')}.`) : null,
    renderDecision({
      decision: record.decision,
      reason: record.reason,
      policy: record.decision === 'allow' ? record.policy : null,
      inbound: record.inbound,
      policies: trace,
      omitted: detail.trace_omitted,
    }),
    record.decision === 'allow' || trace.length
      ? null
      : h('p', { class: 'muted' }, 'This exchange was refused before any policy was judged (the token itself was refused, replayed or rate limited).'),
    record.decision === 'allow'
      ? h('p', { class: 'muted' }, 'Records of allowed exchanges keep no per-check trace; explain the token to see every check.')
      : null);
}
