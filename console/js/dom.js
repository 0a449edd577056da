// Building the page from data. Every value goes in as text (a Text node, or an attribute),
// never as HTML: the page's Content-Security-Policy requires Trusted Types, so assigning an
// HTML string (innerHTML and kin) would throw rather than run markup from a token or a policy.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  let value;
  for (const [key, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), v);
    else if (key === 'value') value = v;
    else if (key === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(key === 'className' ? 'class' : key, v === true ? '' : String(v));
  }
  append(el, children);
  // After the children: a select's value needs its options.
  if (value !== undefined) el.value = value;
  return el;
}

/** An HTML element: `h('a', {href: '#/'}, 'text', child…)`. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Appends children: nodes as they are, anything else as text. */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A time (RFC 3339 text or Unix seconds) as `2026-12-07 01:36:21 UTC`. */
export function when(value) {
  if (value === null || value === undefined || value === '') return '—';
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

/** A `<time>` element for `value`. */
export function time(value) {
  const text = when(value);
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  const iso = Number.isNaN(date.getTime()) ? undefined : date.toISOString();
  return h('time', { datetime: iso }, text);
}

/** A small coloured label. `kind`: good, bad, warn, info or muted. */
export function badge(text, kind = 'muted') {
  return h('span', { class: `badge ${kind}` }, text);
}

/** A labelled form control: `<div class="field"><label>…</label>control hint</div>`. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const parts = [h('label', { for: id }, label), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute('aria-describedby', hintId);
    parts.push(h('p', { class: 'hint', id: hintId }, hint));
  }
  return h('div', { class: 'field' }, parts);
}

/** A table inside a scrolling wrapper (wide tables scroll on a phone, not the page). */
export function table(headers, rows, attrs = {}) {
  return h('div', { class: 'scroll' },
    h('table', attrs,
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows)));
}

/** An error box for a failed request: what failed, why, and the request id to look up. */
export function failure(what, error) {
  const body = error && error.body;
  const reason = (body && body.error_description) || (error && error.message) || 'failed';
  return h('div', { class: 'notice bad', role: 'alert' },
    h('strong', {}, what), ' ', reason,
    error && error.requestId ? h('span', { class: 'muted' }, ` (request ${error.requestId})`) : null);
}

/**
 * Asks for a confirmation in a modal dialog; resolves to true when confirmed. The focus
 * starts on Cancel, so Enter alone never confirms a change.
 */
export function confirmDialog({ title, body, confirm, danger = true }) {
  return new Promise((resolve) => {
    const cancel = h('button', { type: 'button', class: 'button' }, 'Cancel');
    const ok = h('button', { type: 'button', class: danger ? 'button danger' : 'button primary', id: 'confirm' }, confirm);
    const titleId = `dlg-${Math.random().toString(36).slice(2, 9)}`;
    const dialog = h('dialog', { 'aria-labelledby': titleId, class: 'dialog' },
      h('h2', { id: titleId }, title),
      append(h('div', {}), body),
      h('div', { class: 'actions' }, cancel, ok));
    const close = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    cancel.addEventListener('click', () => close(false));
    ok.addEventListener('click', () => close(true));
    dialog.addEventListener('cancel', (e) => {
      e.preventDefault();
      close(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** A short message in the status line (read out by screen readers). */
export function notify(message, kind = 'good') {
  const status = document.getElementById('status');
  fill(status, h('span', { class: `badge ${kind}` }, message));
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => status.replaceChildren(), 6000);
}

/** Builds the `#/…` address of a view. */
export function href(path, query) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') params.set(k, v);
  }
  const q = params.toString();
  return `#${path}${q ? `?${q}` : ''}`;
}

/** The path segment of a document name. */
export function seg(name) {
  return encodeURIComponent(name);
}
