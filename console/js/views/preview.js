// The impact preview of an edit: the recorded exchanges since a time, decided again under
// the edited documents (`POST /admin/v1/policies/preview`). Nothing is stored.

import { api } from '../api.js';
import { badge, failure, h, href, table } from '../dom.js';

/** Runs the preview of `documents` since `since` (`7d`…) and returns what to show. */
export async function preview(documents, since) {
  let answer;
  try {
    answer = await api('POST', '/policies/preview', { body: { documents, since } });
  } catch (e) {
    if (e.status === 404 || e.status === 405) {
      return { view: h('div', { class: 'notice muted', id: 'preview-unavailable' },
        h('strong', {}, 'Impact preview unavailable: '),
        'this broker does not offer it yet (', h('code', {}, 'POST /admin/v1/policies/preview'),
        ' answered ', String(e.status), '). Check and Save still work.') };
    }
    if (e.status === 400 && e.body && e.body.errors) return { errors: e.body.errors };
    return { view: failure('The preview failed:', e) };
  }
  return { view: summary(answer.body) };
}

function summary(r) {
  const changed = r.changed || [];
  const parts = [
    h('p', { class: 'totals' },
      badge(`${r.evaluated} re-decided`, 'info'), ' ',
      badge(`${r.skipped} skipped`, 'muted'), ' ',
      badge(`${changed.length} would change`, changed.length ? 'warn' : 'good')),
  ];
  if (r.truncated) parts.push(h('p', { class: 'muted' }, 'The scan stopped at its limit: older decisions were not re-decided.'));
  if (changed.length === 0) {
    parts.push(h('p', {}, 'No recorded decision would come out differently.'));
  } else {
    parts.push(table(['Request', 'Before', 'After', 'Reason'], changed.map((c) => {
      const lost = c.before.decision === 'allow' && c.after.decision !== 'allow';
      return h('tr', { class: lost ? 'lost' : '' },
        h('td', {}, h('a', { href: href('/explain', { request_id: c.request_id }) }, h('code', {}, c.request_id))),
        h('td', {}, outcome(c.before)),
        h('td', {}, outcome(c.after)),
        h('td', {}, c.after.reason || '—'));
    }), { id: 'preview-changes' }));
  }
  const policies = Object.entries(r.by_policy || {});
  if (policies.length) {
    parts.push(table(['Policy', 'No longer admits', 'Newly admits', 'For example'], policies.map(([name, p]) =>
      h('tr', {},
        h('td', {}, h('code', {}, name)),
        h('td', {}, String(p.lost)),
        h('td', {}, String(p.gained)),
        h('td', {}, (p.examples || []).map((id) => h('code', {}, id, ' '))))), { id: 'preview-policies' }));
  }
  return h('div', { id: 'preview-result' }, parts);
}

function outcome(o) {
  return [badge(o.decision, o.decision === 'allow' ? 'good' : 'bad'), o.policy ? ` ${o.policy}` : ''];
}
