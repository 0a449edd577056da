// The console's frame: sign-in, the navigation, and the views behind `#/…` addresses. Every
// view draws from the admin API's own answers (see api.js); nothing is kept but the token.

import { h, fill, notify } from './dom.js';
import { current, resume, signIn, signOut } from './session.js';
import { overview } from './views/overview.js';
import { documentList, documentView } from './views/documents.js';
import { editor } from './views/editor.js';
import { history } from './views/history.js';
import { explain } from './views/explain.js';
import { audit } from './views/audit.js';
import { keys } from './views/keys.js';
import { revocations } from './views/revocations.js';

const main = document.getElementById('main');

const ROUTES = [
  [/^\/$/, () => overview],
  [/^\/(policies|issuers)$/, ([kind]) => (ctx) => documentList(ctx, kind)],
  [/^\/(policies|issuers)\/new$/, ([kind]) => (ctx) => editor(ctx, kind, null)],
  [/^\/(policies|issuers)\/([^/]+)$/, ([kind, name]) => (ctx) => documentView(ctx, kind, name)],
  [/^\/(policies|issuers)\/([^/]+)\/edit$/, ([kind, name]) => (ctx) => editor(ctx, kind, name)],
  [/^\/(policies|issuers)\/([^/]+)\/history$/, ([kind, name]) => (ctx) => history(ctx, kind, name)],
  [/^\/explain$/, () => explain],
  [/^\/audit$/, () => audit],
  [/^\/keys$/, () => keys],
  [/^\/revocations$/, () => revocations],
];

let cleanup = null;
let generation = 0;

/** The `#/path?query` of the address bar. */
function address() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(1) : '/';
  const [path, q = ''] = raw.split('?');
  return { path, query: new URLSearchParams(q) };
}

async function route() {
  if (cleanup) cleanup();
  cleanup = null;
  const mine = ++generation;
  if (!current()) return showSignIn();
  const { path, query } = address();
  const section = path.split('/')[1] || '';
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  let view = null;
  for (const [pattern, make] of ROUTES) {
    const m = pattern.exec(path);
    if (m) {
      view = make(m.slice(1).map(decodeURIComponent));
      break;
    }
  }
  fill(main);
  if (!view) {
    main.append(h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Overview')));
    return;
  }
  const ctx = {
    main,
    query,
    // Whether this view is still the one shown (a slow answer must not draw over the next).
    live: () => mine === generation,
    onLeave: (fn) => {
      cleanup = fn;
    },
  };
  try {
    await view(ctx);
  } catch (e) {
    if (!ctx.live()) return;
    main.append(h('div', { class: 'notice bad', role: 'alert' }, `This page failed: ${e.message || e}`));
  }
  if (ctx.live()) {
    const heading = main.querySelector('h1');
    document.title = `${heading ? heading.textContent : 'Console'} · sts-broker`;
  }
}

function showSignIn(message) {
  document.getElementById('nav').hidden = true;
  document.getElementById('who').hidden = true;
  document.title = 'Sign in · sts-broker';
  const input = h('input', {
    id: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true,
    'aria-describedby': 'token-hint',
  });
  const error = h('p', { id: 'signin-error', class: 'field-error', role: 'alert' }, message || '');
  const submit = h('button', { type: 'submit', class: 'button primary' }, 'Sign in');
  const form = h('form', { class: 'card narrow', id: 'signin' },
    h('h1', {}, 'Sign in'),
    h('div', { class: 'field' },
      h('label', { for: 'token' }, 'Admin token'),
      input,
      h('p', { class: 'hint', id: 'token-hint' },
        'The bootstrap admin token, or a broker token issued for ',
        h('code', {}, `${location.origin}/admin`),
        ' with scope admin:read or admin:write. It stays in this tab (session storage) and is sent only as the bearer of the console\'s API calls.')),
    error,
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    error.textContent = '';
    try {
      await signIn(input.value.trim());
      input.value = '';
      showShell();
      await route();
    } catch (err) {
      error.textContent = err.message;
      submit.disabled = false;
      input.focus();
    }
  });
  fill(main, form);
  input.focus();
}

function showShell() {
  const who = current();
  const box = document.getElementById('who');
  const out = h('button', { type: 'button', class: 'button small', id: 'signout' }, 'Sign out');
  out.addEventListener('click', () => {
    signOut();
    showSignIn();
    notify('Signed out.', 'info');
  });
  fill(box,
    h('span', { class: 'name', title: 'Signed in as' }, who.name),
    who.access === 'write' ? null : h('span', { class: 'badge warn', id: 'read-only' }, 'read-only'),
    out);
  box.hidden = false;
  document.getElementById('nav').hidden = false;
  document.body.classList.toggle('read-only', who.access !== 'write');
}

window.addEventListener('hashchange', () => {
  // `#main`-style fragments are not views.
  if (location.hash === '' || location.hash.startsWith('#/')) route();
});
window.addEventListener('console:unauthorized', () => {
  if (!current()) return;
  signOut();
  showSignIn('The broker no longer accepts the token (expired or revoked). Sign in again.');
});

(async () => {
  if (await resume()) showShell();
  await route();
})();
