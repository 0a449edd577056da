// Line diffs between two versions of a document.

import { h } from './dom.js';

/** The lines of `before` and `after` as `{op, text}`: ' ' kept, '-' removed, '+' added. */
export function diffLines(before, after) {
  const a = before === '' ? [] : before.replace(/\n$/, '').split('\n');
  const b = after === '' ? [] : after.replace(/\n$/, '').split('\n');
  // Longest common subsequence, from the end (documents are short: a table is fine).
  const n = a.length;
  const m = b.length;
  const width = m + 1;
  const lcs = new Uint32Array((n + 1) * width);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * width + j] = a[i] === b[j]
        ? lcs[(i + 1) * width + j + 1] + 1
        : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ op: ' ', text: a[i] });
      i++;
      j++;
    } else if (lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
      out.push({ op: '-', text: a[i++] });
    } else {
      out.push({ op: '+', text: b[j++] });
    }
  }
  while (i < n) out.push({ op: '-', text: a[i++] });
  while (j < m) out.push({ op: '+', text: b[j++] });
  return out;
}

/**
 * A diff as a `<pre>`: removed lines red with `-`, added green with `+`, long runs of
 * unchanged lines folded to `context` lines around each change.
 */
export function renderDiff(before, after, { context = 3, label } = {}) {
  const lines = diffLines(before, after);
  const changed = lines.map((l) => l.op !== ' ');
  const near = (k) => {
    for (let d = -context; d <= context; d++) if (changed[k + d]) return true;
    return false;
  };
  const rows = [];
  let folded = 0;
  const flush = () => {
    if (folded > 0) rows.push(h('span', { class: 'fold' }, `  ⋯ ${folded} unchanged line${folded === 1 ? '' : 's'}\n`));
    folded = 0;
  };
  lines.forEach((line, k) => {
    if (line.op === ' ' && !near(k)) {
      folded++;
      return;
    }
    flush();
    const kind = line.op === '+' ? 'add' : line.op === '-' ? 'del' : 'same';
    rows.push(h('span', { class: kind }, `${line.op} ${line.text}\n`));
  });
  flush();
  if (!changed.some(Boolean)) rows.push(h('span', { class: 'fold' }, '  (no difference)\n'));
  return h('pre', { class: 'diff', 'aria-label': label || 'Differences' }, rows);
}
