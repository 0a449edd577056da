// A YAML text box with line numbers, where problems are marked at their line: the number
// in the gutter, a band across the line, and a list of messages whose "Line N" buttons
// move the cursor there.

import { h, fill } from './dom.js';

/** `{element, textarea, text(), setText(t), show(problems), goTo(line)}`. */
export function yamlBox({ id, label, text, hint }) {
  const gutter = h('div', { class: 'gutter', 'aria-hidden': 'true' });
  const marks = h('div', { class: 'marks', 'aria-hidden': 'true' });
  const errorsId = `${id}-errors`;
  const hintId = `${id}-hint`;
  const textarea = h('textarea', {
    id, wrap: 'off', spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off',
    'aria-describedby': `${hint ? `${hintId} ` : ''}${errorsId}`,
  });
  const errors = h('ul', { class: 'problems', id: errorsId, 'aria-live': 'polite' });
  const element = h('div', { class: 'field' },
    h('label', { for: id }, label),
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
    h('div', { class: 'code' }, gutter, h('div', { class: 'code-area' }, marks, textarea)),
    errors);
  let bad = new Map();

  const numbers = () => {
    const count = textarea.value.split('\n').length;
    textarea.rows = Math.min(32, Math.max(12, count + 1));
    const spans = [];
    for (let i = 1; i <= count; i++) {
      const problem = bad.get(i);
      spans.push(h('span', problem ? { class: 'bad', title: problem } : {}, String(i)));
    }
    fill(gutter, spans);
    sync();
  };
  const sync = () => {
    gutter.scrollTop = textarea.scrollTop;
    marks.style.transform = `translate(${-textarea.scrollLeft}px, ${-textarea.scrollTop}px)`;
  };
  textarea.addEventListener('input', numbers);
  textarea.addEventListener('scroll', sync);

  const goTo = (line) => {
    const lines = textarea.value.split('\n');
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    textarea.focus();
    textarea.setSelectionRange(start, start + (lines[line - 1] || '').length);
    // Put the line in view: 20px a line (app.css), with a little room above.
    textarea.scrollTop = Math.max(0, (line - 3) * 20);
    sync();
  };

  /** Marks problems `{line, path, message}` (line and path may be null). */
  const show = (problems) => {
    bad = new Map();
    const bands = [];
    for (const p of problems) {
      if (p.line) {
        bad.set(p.line, bad.has(p.line) ? `${bad.get(p.line)}\n${p.message}` : p.message);
        const band = h('div', { class: 'band' });
        band.style.top = `${(p.line - 1) * 20}px`;
        bands.push(band);
      }
    }
    fill(marks, bands);
    fill(errors, problems.map((p) => h('li', {
      class: 'problem', dataset: { path: p.path || '', line: p.line ? String(p.line) : '' },
    },
    p.line ? h('button', { type: 'button', class: 'line-link', onclick: () => goTo(p.line) }, `Line ${p.line}`) : null,
    p.path ? h('code', { class: 'path' }, p.path) : null,
    h('span', { class: 'message' }, p.message))));
    if (problems.length) textarea.setAttribute('aria-invalid', 'true');
    else textarea.removeAttribute('aria-invalid');
    numbers();
  };

  const setText = (t) => {
    textarea.value = t;
    numbers();
  };
  setText(text);
  return { element, textarea, text: () => textarea.value, setText, show, goTo };
}
