// Editing a policy or an issuer as YAML: checked by the broker without saving, its impact
// previewed, and saved only over the version it started from (`If-Match`): when someone
// else saved meanwhile, their version and the difference are shown, and nothing is
// overwritten until the admin chooses to.

import { api } from '../api.js';
import { canWrite } from '../session.js';
import { failure, fill, h, notify, seg, time } from '../dom.js';
import { YamlProblem, fieldLines, fromYaml, lineOfPath, splitError, toYaml } from '../yaml.js';
import { renderDiff } from '../diff.js';
import { yamlBox } from '../yamlbox.js';
import { KINDS } from './documents.js';
import { preview } from './preview.js';

const TEMPLATES = {
  policies: (issuer) => `kind: TrustPolicy\nname: \ndescription: \nissuer: ${issuer}\nsubject: \nclaims:\n  repository_owner_id: ''\ngrant:\n  audience: []\n  scopes: []\n  ttl: 15m\n`,
  issuers: () => 'kind: Issuer\nname: \nurl: https://\naudiences: []\n',
};

export async function editor(ctx, kind, name) {
  const info = KINDS[kind];
  const creating = name === null;
  ctx.main.append(h('p', { class: 'crumbs' }, h('a', { href: `#/${kind}` }, info.title), ' / ',
    creating ? null : [h('a', { href: `#/${kind}/${seg(name)}` }, name), ' / ']));
  ctx.main.append(h('h1', {}, creating ? `New ${info.one}` : `Edit ${name}`));
  if (!canWrite()) {
    ctx.main.append(h('p', { class: 'notice warn' }, 'Your token is read-only (admin:read): it cannot change documents.'));
    return;
  }
  // What the edit started from: the version to save over, and its text for the diff.
  const base = { etag: null, text: '' };
  let text;
  try {
    if (creating) {
      const issuers = await api('GET', '/issuers').then((r) => r.body.items, () => []);
      text = TEMPLATES[kind](issuers.length ? issuers[0].document.name : 'ISSUER');
    } else {
      const doc = await api('GET', `/${kind}/${seg(name)}`);
      base.etag = doc.etag;
      base.text = toYaml(doc.body, info.kind);
      text = base.text;
    }
  } catch (e) {
    ctx.main.append(failure(`The ${info.one} could not be read:`, e));
    return;
  }
  if (!ctx.live()) return;

  const box = yamlBox({
    id: 'document', label: 'Document (YAML)', text,
    hint: 'The same fields as a file in the policies folder. Check asks the broker without saving.',
  });
  const notes = h('div', { id: 'notes', 'aria-live': 'polite' });
  const conflict = h('div', { id: 'conflict' });
  const since = h('select', { id: 'preview-since' },
    h('option', { value: '24h' }, 'the last 24 hours'),
    h('option', { value: '7d', selected: true }, 'the last 7 days'),
    h('option', { value: '30d' }, 'the last 30 days'));
  const previewOut = h('div', { id: 'preview', 'aria-live': 'polite' });
  const buttons = {
    check: h('button', { type: 'button', class: 'button', id: 'check' }, 'Check'),
    preview: h('button', { type: 'button', class: 'button', id: 'run-preview' }, 'Preview impact'),
    save: h('button', { type: 'submit', class: 'button primary', id: 'save' }, 'Save'),
  };
  const form = h('form', { class: 'editor', id: 'editor' },
    box.element, notes, conflict,
    h('div', { class: 'actions' }, buttons.check, buttons.save,
      h('a', { class: 'button', href: creating ? `#/${kind}` : `#/${kind}/${seg(name)}` }, 'Cancel')),
    h('section', { class: 'card', 'aria-labelledby': 'preview-title' },
      h('h2', { id: 'preview-title' }, 'Impact preview'),
      h('p', { class: 'hint' }, 'Decides the recorded exchanges again under this edit, before you save it.'),
      h('div', { class: 'row' }, h('label', { for: 'preview-since' }, 'Decisions of'), since, buttons.preview),
      previewOut));
  ctx.main.append(form);

  /** The edited document as the API takes it, or null after marking what is wrong. */
  const read = () => {
    fill(notes);
    let doc;
    try {
      doc = fromYaml(box.text());
    } catch (e) {
      box.show([{ line: e instanceof YamlProblem ? e.line : null, path: null, message: e.message }]);
      return null;
    }
    const lines = fieldLines(box.text());
    const at = (path, message) => ({ path, line: lineOfPath(lines, path), message });
    const problems = [];
    if (doc.kind === undefined) doc.kind = info.kind;
    if (doc.kind !== info.kind) problems.push(at('kind', `must be ${info.kind} here`));
    if (!creating && doc.name !== undefined && doc.name !== name) {
      problems.push(at('name', `is ${name}: renaming is not an edit (create a new ${info.one} instead)`));
    }
    if (creating && (typeof doc.name !== 'string' || doc.name === '')) problems.push(at('name', 'a name is required'));
    box.show(problems);
    if (problems.length) return null;
    if (!creating) doc.name = name;
    return doc;
  };
  /** Marks the API's validation errors at their fields. */
  const showErrors = (errors) => {
    const lines = fieldLines(box.text());
    box.show(errors.map((sentence) => {
      const { path, message } = splitError(sentence, lines);
      return { path, message, line: path ? lineOfPath(lines, path) : null };
    }));
  };
  const busy = async (button, work) => {
    button.disabled = true;
    try {
      await work();
    } finally {
      button.disabled = false;
    }
  };

  buttons.check.addEventListener('click', () => busy(buttons.check, async () => {
    const doc = read();
    if (!doc) return;
    try {
      const r = await api('POST', '/apply', { body: { documents: [doc], dry_run: true } });
      const what = r.body.created.length ? 'would be created' : r.body.updated.length ? 'would change' : 'is unchanged';
      fill(notes, h('div', { class: 'notice good', id: 'check-ok' }, `Valid: the ${info.one} ${what}.`),
        creating ? null : h('details', { open: true }, h('summary', {}, 'Your changes'), renderDiff(base.text, box.text(), { label: 'Your changes' })));
    } catch (e) {
      if (e.status === 400 && e.body && e.body.errors) showErrors(e.body.errors);
      else fill(notes, failure('The check failed:', e));
    }
  }));

  buttons.preview.addEventListener('click', () => busy(buttons.preview, async () => {
    const doc = read();
    if (!doc) return;
    fill(previewOut, h('p', { class: 'muted' }, 'Re-deciding…'));
    const r = await preview([doc], since.value);
    if (r.errors) {
      fill(previewOut);
      showErrors(r.errors);
    } else fill(previewOut, r.view);
  }));

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(buttons.save, async () => {
      const doc = read();
      if (!doc) return;
      fill(conflict);
      const target = `/${kind}/${seg(doc.name)}`;
      if (creating) {
        const taken = await api('GET', target).then(() => true, () => false);
        if (taken) {
          box.show([{ path: 'name', line: lineOfPath(fieldLines(box.text()), 'name'), message: `a ${info.one} named ${doc.name} exists already` }]);
          return;
        }
      }
      try {
        const r = await api('PUT', target, { body: doc, headers: base.etag ? { 'If-Match': base.etag } : {} });
        notify(`Saved ${doc.name} (${(r.etag || '').replaceAll('"', '')}).`);
        location.hash = `#/${kind}/${seg(doc.name)}`;
      } catch (e) {
        if (e.status === 400 && e.body && e.body.errors) showErrors(e.body.errors);
        else if (e.status === 412) await showConflict(doc.name);
        else fill(notes, failure('Not saved:', e));
      }
    });
  });

  /** Someone saved (or deleted) the document since it was opened: show theirs, keep ours. */
  async function showConflict(docName) {
    const target = `/${kind}/${seg(docName)}`;
    const [theirs, versions] = await Promise.all([
      api('GET', target).catch((e) => (e.status === 404 ? null : Promise.reject(e))),
      api('GET', `${target}/history`).then((r) => r.body.versions, () => []),
    ]);
    const last = versions[versions.length - 1];
    const theirText = theirs ? toYaml(theirs.body, info.kind) : '';
    const reload = h('button', { type: 'button', class: 'button', id: 'conflict-reload' }, 'Discard my edit and load theirs');
    const keep = h('button', { type: 'button', class: 'button danger', id: 'conflict-keep' }, 'Keep my edit, to save over theirs');
    reload.addEventListener('click', () => {
      base.etag = theirs ? theirs.etag : null;
      base.text = theirText;
      box.setText(theirText);
      box.show([]);
      fill(conflict);
      notify('Loaded their version.', 'info');
    });
    keep.addEventListener('click', () => {
      base.etag = theirs ? theirs.etag : null;
      base.text = theirText;
      fill(conflict, h('p', { class: 'notice warn' }, 'Your edit now replaces their version when you press Save.'));
      box.textarea.focus();
    });
    fill(conflict, h('section', { class: 'notice warn', role: 'alert', id: 'conflict-notice' },
      h('h2', {}, `${docName} changed since you opened it`),
      h('p', {},
        last ? ['Version ', String(last.version), ' was saved ', time(last.changed_at), ' by ', h('strong', {}, last.changed_by), '. '] : null,
        theirs ? '' : 'It was deleted. ',
        'Your edit was not saved: it is still in the editor.'),
      h('h3', {}, 'Their version → your edit'),
      renderDiff(theirText, box.text(), { label: 'Their version compared with your edit' }),
      h('div', { class: 'actions' }, reload, keep)));
  }
}
