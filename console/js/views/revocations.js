// Revocations: revoke one token by its id, or every token of a policy and/or subject; and
// the rules in force.

import { api } from '../api.js';
import { canWrite } from '../session.js';
import { confirmDialog, failure, field, fill, h, notify, table, time } from '../dom.js';

export async function revocations(ctx) {
  ctx.main.append(h('h1', {}, 'Revocations'));
  const listOut = h('div', { id: 'revocations' });
  if (canWrite()) ctx.main.append(h('div', { class: 'grid' }, byJti(refresh), byMatch(refresh)));
  ctx.main.append(h('h2', {}, 'Rules in force'), listOut);

  async function refresh() {
    try {
      const list = (await api('GET', '/revocations')).body.revocations;
      if (!ctx.live()) return;
      fill(listOut, list.length === 0
        ? h('p', { class: 'muted' }, 'No token is revoked.')
        : table(['Tokens', 'Issued', 'Rule expires', 'Created', 'Reason'], list.map((r) => h('tr', {},
          h('td', {}, describe(r)),
          h('td', {}, issued(r)),
          h('td', {}, time(r.expires_at)),
          h('td', {}, time(r.created_at), h('div', { class: 'muted small' }, r.created_by)),
          h('td', {}, r.reason || '—'))), { id: 'revocation-table' }));
    } catch (e) {
      fill(listOut, failure('The revocations could not be read:', e));
    }
  }
  await refresh();
}

/** The issue times a rule covers: from its start (none: any time) until it was made. */
function issued(r) {
  const start = new Date(r.issued_since).getTime();
  return start > 0 ? [time(r.issued_since), ' – ', time(r.issued_until)] : ['any time before ', time(r.issued_until)];
}

function describe(r) {
  const parts = [];
  if (r.jti) parts.push(['token ', h('code', {}, r.jti)]);
  if (r.policy) parts.push(['policy ', h('code', {}, r.policy)]);
  if (r.subject) parts.push(['subject ', h('code', {}, r.subject)]);
  return parts.flatMap((p, i) => (i ? [', ', ...p] : p));
}

function byJti(refresh) {
  const jti = h('input', { id: 'revoke-jti', type: 'text', autocomplete: 'off', required: true });
  const reason = h('input', { id: 'revoke-jti-reason', type: 'text', autocomplete: 'off' });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'card', 'aria-labelledby': 'by-jti' },
    h('h2', { id: 'by-jti' }, 'Revoke one token'),
    field('Token id (jti)', jti, 'The jti of a token this broker issued (see the audit record of its exchange).'),
    field('Reason', reason),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button danger' }, 'Revoke…')),
    out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = jti.value.trim();
    if (!id) return;
    const sure = await confirmDialog({
      title: 'Revoke this token?',
      body: [h('p', {}, 'Token ', h('code', {}, id), ' is refused from now on, by introspection and as an admin credential.')],
      confirm: 'Revoke',
    });
    if (!sure) return;
    try {
      await api('POST', `/tokens/${encodeURIComponent(id)}/revoke`, { body: reason.value.trim() ? { reason: reason.value.trim() } : {} });
      notify('Revoked.');
      form.reset();
      fill(out);
      await refresh();
    } catch (err) {
      fill(out, failure('Not revoked:', err));
    }
  });
  return form;
}

function byMatch(refresh) {
  const policy = h('input', { id: 'revoke-policy', type: 'text', autocomplete: 'off' });
  const subject = h('input', { id: 'revoke-subject', type: 'text', autocomplete: 'off' });
  const since = h('input', { id: 'revoke-since', type: 'datetime-local' });
  const reason = h('input', { id: 'revoke-reason', type: 'text', autocomplete: 'off' });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'card', 'aria-labelledby': 'by-match' },
    h('h2', { id: 'by-match' }, 'Revoke by policy or subject'),
    field('Policy', policy), field('Subject (issued sub)', subject),
    field('Issued since (local time)', since, 'Empty: every live token that matches.'),
    field('Reason', reason),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'button danger' }, 'Revoke…')),
    out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {};
    if (policy.value.trim()) body.policy = policy.value.trim();
    if (subject.value.trim()) body.subject = subject.value.trim();
    if (since.value) body.since = new Date(since.value).toISOString();
    if (reason.value.trim()) body.reason = reason.value.trim();
    if (!body.policy && !body.subject) {
      fill(out, h('p', { class: 'field-error', role: 'alert' }, 'Name a policy, a subject, or both.'));
      return;
    }
    const what = [body.policy && `policy ${body.policy}`, body.subject && `subject ${body.subject}`].filter(Boolean).join(' and ');
    const sure = await confirmDialog({
      title: 'Revoke these tokens?',
      body: [h('p', {}, `Every live token of ${what}${body.since ? ` issued since ${body.since}` : ''} is refused from now on.`)],
      confirm: 'Revoke',
    });
    if (!sure) return;
    try {
      await api('POST', '/tokens/revoke', { body });
      notify('Revoked.');
      form.reset();
      fill(out);
      await refresh();
    } catch (err) {
      fill(out, failure('Not revoked:', err));
    }
  });
  return form;
}
