// Every version of a document, and the difference between any two.

import { api } from '../api.js';
import { failure, fill, h, seg, table, time, field } from '../dom.js';
import { renderDiff } from '../diff.js';
import { toYaml } from '../yaml.js';
import { KINDS } from './documents.js';

export async function history(ctx, kind, name) {
  const info = KINDS[kind];
  ctx.main.append(
    h('p', { class: 'crumbs' }, h('a', { href: `#/${kind}` }, info.title), ' / ', h('a', { href: `#/${kind}/${seg(name)}` }, name), ' / '),
    h('h1', {}, `History of ${name}`));
  let versions;
  try {
    versions = (await api('GET', `/${kind}/${seg(name)}/history`)).body.versions;
  } catch (e) {
    ctx.main.append(failure('The history could not be read:', e));
    return;
  }
  if (!ctx.live()) return;
  const text = (v) => (v.document ? toYaml(v.document, info.kind) : '');
  const newest = [...versions].reverse();
  ctx.main.append(table(['Version', 'Changed', 'By', ''], newest.map((v) => h('tr', {},
    h('td', { class: 'num' }, `v${v.version}`),
    h('td', {}, time(v.changed_at)),
    h('td', {}, v.changed_by),
    h('td', {}, v.document ? '' : 'deleted')))));

  const options = (selected) => newest.map((v) => h('option', { value: String(v.version), selected: v.version === selected }, `v${v.version}${v.document ? '' : ' (deleted)'}`));
  const latest = newest[0];
  const previous = newest[1] || newest[0];
  const from = h('select', { id: 'diff-from' }, options(previous.version));
  const to = h('select', { id: 'diff-to' }, options(latest.version));
  const out = h('div', { id: 'diff' });
  const draw = () => {
    const a = versions.find((v) => String(v.version) === from.value);
    const b = versions.find((v) => String(v.version) === to.value);
    fill(out, renderDiff(text(a), text(b), { context: 1000, label: `Differences from v${a.version} to v${b.version}` }));
  };
  from.addEventListener('change', draw);
  to.addEventListener('change', draw);
  ctx.main.append(h('section', { class: 'card', 'aria-labelledby': 'compare' },
    h('h2', { id: 'compare' }, 'Compare versions'),
    h('div', { class: 'inline' }, field('From', from), field('To', to)),
    out));
  draw();
}
