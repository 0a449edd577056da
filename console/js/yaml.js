// Documents as YAML: shown as the policy files write them, parsed back for the API (which
// takes JSON with the same fields), and the line of each field, so that an error the API
// reports at `grant.ttl` is shown at that line.

import {
  COLLECTION_STYLE, EVENT_ID, dump, getScalarValue, load, parseEvents, visit,
} from '../vendor/js-yaml.mjs';

/** The order fields are written in, as in the README's examples; others follow, sorted. */
const ORDER = {
  '': [
    'kind', 'name', 'description', 'url', 'jwks_url', 'issuer', 'audiences', 'algorithms',
    'subject_prefix', 'shared', 'replay_protection', 'max_token_lifetime', 'guarded_events',
    'subject', 'claims', 'grant',
  ],
  grant: ['audience', 'github', 'scopes', 'ttl', 'subject', 'claims'],
  'grant.github': ['app', 'owner', 'repositories', 'permissions'],
};

function ordered(value, path) {
  if (Array.isArray(value)) return value.map((v) => ordered(v, null));
  if (value === null || typeof value !== 'object') return value;
  // Claim names keep their own (sorted) order; only a document's own fields are ranked.
  const order = (path !== null && ORDER[path]) || [];
  const rank = (k) => (order.includes(k) ? order.indexOf(k) : order.length);
  const keys = Object.keys(value).sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
  const out = {};
  for (const k of keys) {
    const inner = path === null ? null : path === '' ? k : `${path}.${k}`;
    out[k] = ordered(value[k], inner);
  }
  return out;
}

const MATCHERS = ['glob', 'regex', 'one_of'];

/** Matchers (`{glob: …}`) and lists of plain values on one line, as the examples write them. */
function flowStyle(documents) {
  visit(documents, (node) => {
    if (node.kind === 'sequence' && node.items.every((i) => i.kind === 'scalar')) {
      node.style = COLLECTION_STYLE.FLOW;
    }
    if (node.kind === 'mapping' && node.items.length === 1 && node.items[0].key.kind === 'scalar'
      && MATCHERS.includes(node.items[0].key.value)) {
      node.style = COLLECTION_STYLE.FLOW;
    }
  });
}

/** A document as YAML, `kind` first (`Issuer` or `TrustPolicy`). */
export function toYaml(document, kind) {
  if (document === null || document === undefined) return '';
  return dump(ordered({ kind, ...document }, ''), { lineWidth: -1, transform: flowStyle });
}

/** A problem in the text: its 1-based line (or null) and what is wrong. */
export class YamlProblem extends Error {
  constructor(message, line) {
    super(message);
    this.line = line;
  }
}

/** Parses one YAML document into the JSON the API takes; throws a YamlProblem. */
export function fromYaml(text) {
  let value;
  try {
    value = load(text);
  } catch (e) {
    const line = e && e.mark ? e.mark.line + 1 : null;
    throw new YamlProblem((e && e.reason) || String(e), line);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new YamlProblem('the document must be a mapping of fields (kind, name, …)', 1);
  }
  return value;
}

/**
 * Where each field is: a Map from its path (`grant.audience`, `grant.audience[1]`,
 * `claims.workflow.regex`: the form the API's errors use) to its 1-based line. Empty when
 * the text does not parse.
 */
export function fieldLines(text) {
  const lines = new Map();
  let events;
  try {
    events = parseEvents(text, {});
  } catch {
    return lines;
  }
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === '\n') starts.push(i + 1);
  const lineOf = (offset) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  const join = (path, key) => (path === '' ? key : `${path}.${key}`);
  const stack = [];
  for (const ev of events) {
    if (ev.type === EVENT_ID.DOCUMENT) {
      stack.push({ kind: 'doc', path: '' });
      continue;
    }
    if (ev.type === EVENT_ID.POP) {
      const done = stack.pop();
      const parent = stack[stack.length - 1];
      if (done && done.isKey && parent) parent.key = '?';
      continue;
    }
    const parent = stack[stack.length - 1];
    if (!parent) continue;
    const start = ev.type === EVENT_ID.SCALAR ? ev.valueStart
      : ev.type === EVENT_ID.ALIAS ? ev.anchorStart : ev.start;
    const collection = ev.type === EVENT_ID.MAPPING || ev.type === EVENT_ID.SEQUENCE;
    const frame = (path, isKey) => ({
      kind: ev.type === EVENT_ID.MAPPING ? 'map' : 'seq', path, isKey, expectKey: true, index: 0,
    });
    if (parent.kind === 'map' && parent.expectKey) {
      parent.expectKey = false;
      if (ev.type === EVENT_ID.SCALAR) {
        parent.key = getScalarValue(text, ev);
        lines.set(join(parent.path, parent.key), lineOf(start));
      } else if (collection) {
        stack.push(frame('?', true));
      }
      continue;
    }
    let path = parent.path;
    if (parent.kind === 'map') {
      path = join(parent.path, parent.key);
      parent.expectKey = true;
    } else if (parent.kind === 'seq') {
      path = `${parent.path}[${parent.index++}]`;
      lines.set(path, lineOf(start));
    }
    if (collection) stack.push(frame(path, false));
  }
  return lines;
}

/**
 * The line of `path` in `lines` (from fieldLines), or of its nearest enclosing field that
 * is written (a missing field is reported at the object that lacks it); null if none.
 */
export function lineOfPath(lines, path) {
  let p = path;
  while (p) {
    if (lines.has(p)) return lines.get(p);
    const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
    if (cut <= 0) break;
    p = p.slice(0, cut);
  }
  return null;
}

/**
 * An API error sentence split into its field path and reason: `grant.ttl: above max_ttl`,
 * with the `document 0: ` and `TrustPolicy "name": ` prefixes that apply and policy-set
 * checks add taken off. A reason that names a key under the path (`claims` with
 * `workflow: regex does not compile`) is placed at that key.
 */
export function splitError(sentence, lines) {
  let rest = sentence.replace(/^document \d+: /, '').replace(/^(TrustPolicy|Issuer) "(?:[^"\\]|\\.)*": /, '');
  let path = null;
  const colon = rest.indexOf(': ');
  if (colon > 0 && !/\s/.test(rest.slice(0, colon))) {
    path = rest.slice(0, colon);
    rest = rest.slice(colon + 2);
    const inner = rest.indexOf(': ');
    if (inner > 0 && lines && lines.has(`${path}.${rest.slice(0, inner)}`)) {
      path = `${path}.${rest.slice(0, inner)}`;
      rest = rest.slice(inner + 2);
    }
  }
  return { path, message: rest };
}
