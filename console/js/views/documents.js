// Policies and issuers: the list with a search, and one document as YAML.

import { api } from '../api.js';
import { canWrite } from '../session.js';
import { badge, confirmDialog, failure, field, h, href, notify, seg, table, time } from '../dom.js';
import { toYaml } from '../yaml.js';

/** `policies` or `issuers` → what the API and the YAML call it. */
export const KINDS = {
  policies: { kind: 'TrustPolicy', one: 'policy', title: 'Policies' },
  issuers: { kind: 'Issuer', one: 'issuer', title: 'Issuers' },
};

const list = (v) => (Array.isArray(v) ? v.join(', ') : v === undefined || v === null ? '' : String(v));
const matcher = (m) => (m === undefined || m === null ? '' : typeof m === 'string' ? m
  : Object.entries(m).map(([k, v]) => `${k}: ${list(v)}`).join(', '));

const COLUMNS = {
  policies: [
    ['Issuer', (d) => d.issuer],
    ['Subject', (d) => matcher(d.subject)],
    ['Grants', (d) => (d.grant && d.grant.github ? `github:${d.grant.github.owner}` : list(d.grant && d.grant.audience))],
  ],
  issuers: [
    ['URL', (d) => d.url],
    ['Audiences', (d) => list(d.audiences)],
    ['Shared', (d) => (d.shared ? 'yes' : 'no')],
  ],
};

export async function documentList(ctx, kind) {
  const info = KINDS[kind];
  ctx.main.append(h('div', { class: 'title' },
    h('h1', {}, info.title),
    canWrite() ? h('a', { class: 'button primary', href: `#/${kind}/new`, id: 'new-document' }, `New ${info.one}`) : null));
  const search = h('input', { type: 'search', id: 'search', autocomplete: 'off', value: ctx.query.get('q') || '' });
  const count = h('p', { class: 'muted', id: 'count', 'aria-live': 'polite' });
  ctx.main.append(h('div', { class: 'toolbar' },
    field('Search', search, 'Matches names and any field of the document.'), count));
  let items;
  try {
    items = (await api('GET', `/${kind}`)).body.items;
  } catch (e) {
    ctx.main.append(failure(`${info.title} could not be read:`, e));
    return;
  }
  if (!ctx.live()) return;
  items.sort((a, b) => (a.document.name < b.document.name ? -1 : 1));
  const rows = items.map((item) => {
    const d = item.document;
    const row = h('tr', { dataset: { name: d.name } },
      h('td', {}, h('a', { href: `#/${kind}/${seg(d.name)}` }, d.name),
        d.description ? h('div', { class: 'muted small' }, d.description) : null),
      COLUMNS[kind].map(([, get]) => h('td', {}, get(d) || '—')),
      h('td', { class: 'num' }, `v${item.version}`),
      h('td', {}, time(item.updated_at), h('div', { class: 'muted small' }, item.updated_by)));
    row.searchText = JSON.stringify(d).toLowerCase();
    return row;
  });
  const shown = table(['Name', ...COLUMNS[kind].map(([t]) => t), 'Version', 'Updated'], rows, { id: 'documents' });
  const apply = () => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let n = 0;
    for (const row of rows) {
      row.hidden = !words.every((w) => row.searchText.includes(w));
      if (!row.hidden) n++;
    }
    count.textContent = `${n} of ${rows.length} ${info.title.toLowerCase()}`;
    history.replaceState(null, '', href(`/${kind}`, { q: search.value }));
  };
  search.addEventListener('input', apply);
  ctx.main.append(items.length ? shown : h('p', { class: 'muted' }, `No ${info.title.toLowerCase()} are stored.`));
  apply();
}

export async function documentView(ctx, kind, name) {
  const info = KINDS[kind];
  ctx.main.append(h('p', { class: 'crumbs' }, h('a', { href: `#/${kind}` }, info.title), ' / '));
  ctx.main.append(h('h1', {}, name));
  let doc;
  let versions;
  try {
    [doc, versions] = await Promise.all([
      api('GET', `/${kind}/${seg(name)}`),
      api('GET', `/${kind}/${seg(name)}/history`).then((r) => r.body.versions, () => []),
    ]);
  } catch (e) {
    ctx.main.append(failure(`The ${info.one} could not be read:`, e));
    return;
  }
  if (!ctx.live()) return;
  const last = versions[versions.length - 1];
  const actions = h('div', { class: 'actions' },
    canWrite() ? h('a', { class: 'button primary', href: `#/${kind}/${seg(name)}/edit`, id: 'edit' }, 'Edit') : null,
    h('a', { class: 'button', href: `#/${kind}/${seg(name)}/history` }, 'History'),
    kind === 'policies' ? h('a', { class: 'button', href: href('/audit', { policy: name }) }, 'Decisions') : null,
    kind === 'policies' ? h('a', { class: 'button', href: href('/explain', { policy: name }) }, 'Explain a token') : null,
    canWrite() ? deleteButton(kind, name, doc.etag) : null);
  ctx.main.append(
    h('p', { class: 'meta' },
      badge(doc.etag ? doc.etag.replaceAll('"', '') : 'v?', 'info'), ' ',
      last ? ['changed ', time(last.changed_at), ' by ', h('strong', {}, last.changed_by)] : null),
    actions,
    h('pre', { class: 'yaml', id: 'yaml', tabindex: '0', 'aria-label': `${name} as YAML` }, toYaml(doc.body, info.kind)));
}

function deleteButton(kind, name, etag) {
  const info = KINDS[kind];
  const button = h('button', { type: 'button', class: 'button danger' }, 'Delete');
  button.addEventListener('click', async () => {
    const sure = await confirmDialog({
      title: `Delete ${info.one} ${name}?`,
      body: [h('p', {}, `It stops being in force at once. Its history stays.`)],
      confirm: 'Delete',
    });
    if (!sure) return;
    try {
      await api('DELETE', `/${kind}/${seg(name)}`, { headers: { 'If-Match': etag } });
      notify(`Deleted ${name}.`);
      location.hash = `#/${kind}`;
    } catch (e) {
      button.after(failure('Not deleted:', e));
    }
  });
  return button;
}

