// A decision and, per policy, every check with what was expected and what the token held:
// green when it passed, red when it failed (and said in words, not by colour alone).

import { badge, h, seg, table } from '../dom.js';

const OUTCOMES = {
  selected: ['admits and grants', 'good'],
  not_admitted: ['does not admit', 'bad'],
  audience_not_granted: ['admits, audience not granted', 'warn'],
  audience_required: ['admits, audience required', 'warn'],
  scope_not_granted: ['admits, scope not granted', 'warn'],
};

/** `{decision, reason, message?, policy?, inbound?, policies[], omitted?}` drawn. */
export function renderDecision(d) {
  const allowed = d.decision === 'allow';
  const parts = [
    h('div', { class: `verdict ${allowed ? 'good' : 'bad'}`, id: 'verdict' },
      h('span', { class: 'big' }, allowed ? 'Allowed' : 'Denied'), ' ',
      badge(d.reason, allowed ? 'good' : 'bad'),
      d.policy ? [' by policy ', h('a', { href: `#/policies/${seg(d.policy)}` }, d.policy)] : null),
  ];
  if (d.message) parts.push(h('p', { class: 'message' }, d.message));
  if (d.inbound && (d.inbound.iss || d.inbound.sub)) {
    parts.push(h('dl', { class: 'facts' },
      d.inbound.iss ? [h('dt', {}, 'Issuer'), h('dd', {}, d.inbound.issuer ? `${d.inbound.issuer} (${d.inbound.iss})` : d.inbound.iss)] : null,
      d.inbound.sub ? [h('dt', {}, 'Subject'), h('dd', {}, h('code', {}, d.inbound.sub))] : null,
      d.inbound.jti ? [h('dt', {}, 'Token id'), h('dd', {}, h('code', {}, d.inbound.jti))] : null));
  }
  const policies = d.policies || [];
  if (policies.length) {
    parts.push(h('h2', {}, `Policies (${policies.length})`));
    for (const p of policies) parts.push(policyTrace(p));
  }
  if (d.omitted) parts.push(h('p', { class: 'muted' }, `${d.omitted} more policies were evaluated but not recorded.`));
  return h('div', { id: 'decision' }, parts);
}

function policyTrace(p) {
  const [label, kind] = OUTCOMES[p.outcome] || [p.outcome, 'muted'];
  const checks = p.checks || [];
  const failed = checks.filter((c) => !c.passed).length;
  return h('section', { class: 'trace', dataset: { policy: p.policy } },
    h('h3', {}, h('a', { href: `#/policies/${seg(p.policy)}` }, p.policy), ' ', badge(label, kind),
      checks.length ? h('span', { class: 'muted small' }, ` ${checks.length - failed} of ${checks.length} checks passed`) : null),
    checks.length ? table(['Check', 'Expected', 'Actual', 'Result'], checks.map((c) => h('tr', { class: c.passed ? 'pass' : 'fail' },
      h('td', { 'data-label': 'Check' }, h('code', {}, c.check)),
      h('td', { 'data-label': 'Expected' }, h('code', {}, c.expected)),
      h('td', { 'data-label': 'Actual' }, c.actual === null || c.actual === undefined ? h('em', { class: 'muted' }, '(absent)') : h('code', {}, c.actual)),
      h('td', { class: 'result', 'data-label': 'Result' }, c.passed ? '✓ pass' : '✗ fail')))) : null);
}
