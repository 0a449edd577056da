// Signing keys: their timeline (next → active → retired) and rotation, after a
// confirmation.

import { api } from '../api.js';
import { canWrite } from '../session.js';
import { confirmDialog, failure, fill, h, notify, time } from '../dom.js';
import { stateBadge } from './overview.js';

const ROLE = {
  next: 'published, signs after the next rotation',
  active: 'signs new tokens',
  retired: 'no longer signs; published while tokens it signed may live',
};

export async function keys(ctx) {
  ctx.main.append(h('h1', {}, 'Signing keys'));
  const out = h('div', { id: 'keys' });
  const rotate = h('button', { type: 'button', class: 'button danger', id: 'rotate' }, 'Rotate keys…');
  if (canWrite()) ctx.main.append(h('div', { class: 'actions' }, rotate));
  ctx.main.append(out);
  let list = [];
  const draw = () => fill(out, timeline(list));
  try {
    list = (await api('GET', '/keys')).body.keys;
  } catch (e) {
    fill(out, failure('The keys could not be read:', e));
    return;
  }
  if (!ctx.live()) return;
  draw();

  rotate.addEventListener('click', async () => {
    const next = list.find((k) => k.state === 'next');
    const active = list.find((k) => k.state === 'active');
    const sure = await confirmDialog({
      title: 'Rotate the signing keys?',
      body: [
        h('p', {}, 'The next key, already published, starts signing now; the active key is retired and stays published until the tokens it signed expire. A new next key is published.'),
        h('dl', { class: 'facts' },
          next ? [h('dt', {}, 'Will sign'), h('dd', {}, h('code', {}, next.kid))] : null,
          active ? [h('dt', {}, 'Will retire'), h('dd', {}, h('code', {}, active.kid))] : null),
      ],
      confirm: 'Rotate now',
    });
    if (!sure) return;
    rotate.disabled = true;
    try {
      list = (await api('POST', '/keys/rotate')).body.keys;
      const now = list.find((k) => k.state === 'active');
      notify(`Rotated: ${now ? now.kid.slice(0, 12) : 'the next key'}… signs now.`);
      draw();
    } catch (e) {
      out.prepend(failure('Not rotated:', e));
    } finally {
      rotate.disabled = false;
    }
  });
}

function timeline(keys) {
  const order = { next: 0, active: 1, retired: 2 };
  const sorted = [...keys].sort((a, b) => (order[a.state] ?? 3) - (order[b.state] ?? 3)
    || (b.created_at || 0) - (a.created_at || 0));
  return h('ol', { class: 'timeline' }, sorted.map((k) => h('li', { class: `key ${k.state}`, dataset: { kid: k.kid, state: k.state } },
    h('div', { class: 'key-head' }, stateBadge(k.state), ' ', h('code', { class: 'kid' }, k.kid), ' ', h('span', { class: 'muted' }, k.alg)),
    h('p', { class: 'muted small' }, ROLE[k.state] || ''),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Created'), h('dd', {}, time(k.created_at)),
      k.activated_at ? [h('dt', {}, 'Signing since'), h('dd', {}, time(k.activated_at))] : null,
      k.retired_at ? [h('dt', {}, 'Retired'), h('dd', {}, time(k.retired_at))] : null,
      k.unpublish_at ? [h('dt', {}, 'Published until'), h('dd', {}, time(k.unpublish_at))] : null))));
}
