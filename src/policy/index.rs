//! Which of an issuer's policies can possibly admit a token, found without trying them all.
//!
//! Large policy sets are mostly one policy per repository (or project, or namespace), each
//! pinning an immutable id exactly (`repository_id: "123"`). For each issuer the claim that
//! the most policies match exactly becomes the key: a token is judged only by the policies
//! keyed by its value of that claim, and by those that do not match it exactly. The others
//! require a different value and could never admit it, so skipping them changes no decision.
//! Candidates keep name order, so the first policy that admits still wins.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value};

use super::claim_path::ClaimKey;
use super::matcher::{Matcher, scalar_text};
use super::trust::TrustPolicy;

/// The claim the subject matcher tests.
static SUB: LazyLock<ClaimKey> = LazyLock::new(|| ClaimKey::name("sub"));

/// An issuer's policies in name order, indexed by one exactly-matched claim.
#[derive(Debug, Default)]
pub struct IssuerPolicies {
    all: Vec<Arc<TrustPolicy>>,
    key: Option<KeyIndex>,
}

#[derive(Debug)]
struct KeyIndex {
    /// The claim (`sub` for the subject matcher), as one of the policies writes it: `x` and
    /// `/x` are the same claim, and key the same policies.
    claim: ClaimKey,
    /// Positions in `all` (ascending) of the policies that require each value.
    by_value: HashMap<String, Vec<u32>>,
    /// Positions in `all` (ascending) of the policies that do not match `claim` exactly.
    unkeyed: Vec<u32>,
}

impl IssuerPolicies {
    /// Indexes `all`, which must be in name order.
    pub fn build(all: Vec<Arc<TrustPolicy>>) -> Self {
        let key = choose_key(&all).map(|claim| {
            let mut by_value: HashMap<String, Vec<u32>> = HashMap::new();
            let mut unkeyed = Vec::new();
            for (pos, policy) in all.iter().enumerate() {
                let pos = pos as u32;
                match exact_values(policy, &claim) {
                    Some(values) => {
                        for value in values {
                            let list = by_value.entry(value.clone()).or_default();
                            if list.last() != Some(&pos) {
                                list.push(pos);
                            }
                        }
                    }
                    None => unkeyed.push(pos),
                }
            }
            KeyIndex {
                claim,
                by_value,
                unkeyed,
            }
        });
        Self { all, key }
    }

    /// Every policy, in name order.
    pub fn all(&self) -> &[Arc<TrustPolicy>] {
        &self.all
    }

    /// The policies that could admit a token with these claims, in name order.
    pub fn candidates<'a>(
        &'a self,
        claims: &Map<String, Value>,
    ) -> Box<dyn Iterator<Item = &'a Arc<TrustPolicy>> + 'a> {
        let Some(key) = &self.key else {
            return Box::new(self.all.iter());
        };
        let keyed: &[u32] = match key.claim.resolve(claims) {
            // An array matches when any element does: judge them all rather than merge
            // several lists (claims used as keys are scalars in practice).
            Some(Value::Array(_)) => return Box::new(self.all.iter()),
            Some(value) => scalar_text(value)
                .and_then(|text| key.by_value.get(text.as_ref()))
                .map_or(&[], Vec::as_slice),
            None => &[],
        };
        let merged = MergeAscending {
            a: keyed,
            b: &key.unkeyed,
        };
        Box::new(merged.map(|pos| &self.all[pos as usize]))
    }
}

/// The claim that leaves the fewest candidates for the worst-case token: the one whose
/// largest group of policies requiring one value, plus the policies that do not match it
/// exactly, is smallest. `repository_id` wins over `repository_owner_id` when every policy
/// pins both, since it tells the policies apart. `None` when no claim narrows the list.
fn choose_key(policies: &[Arc<TrustPolicy>]) -> Option<ClaimKey> {
    let mut names: Vec<&ClaimKey> = policies
        .iter()
        .flat_map(|p| matchers(p).filter(|(_, m)| m.is_exact()).map(|(n, _)| n))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| (worst_case_candidates(policies, name), name))
        .filter(|&(cost, _)| cost < policies.len())
        // Fewest candidates first; ties broken by name so the choice is deterministic.
        .min()
        .map(|(_, name)| name.clone())
}

fn worst_case_candidates(policies: &[Arc<TrustPolicy>], claim: &ClaimKey) -> usize {
    let mut per_value: HashMap<&str, usize> = HashMap::new();
    let mut unkeyed = 0;
    for policy in policies {
        match exact_values(policy, claim) {
            Some(values) => {
                for value in values {
                    *per_value.entry(value).or_default() += 1;
                }
            }
            None => unkeyed += 1,
        }
    }
    unkeyed + per_value.values().max().copied().unwrap_or(0)
}

/// Every matcher of a policy with the claim it tests.
fn matchers(policy: &TrustPolicy) -> impl Iterator<Item = (&ClaimKey, &Matcher)> {
    policy
        .subject
        .iter()
        .map(|m| (&*SUB, m))
        .chain(policy.claims.iter().map(|(n, m)| (n, m)))
}

/// The only values of `claim` this policy can admit, when it matches the claim exactly.
fn exact_values<'p>(policy: &'p TrustPolicy, claim: &ClaimKey) -> Option<&'p [String]> {
    matchers(policy)
        .filter(|(name, _)| *name == claim)
        .find_map(|(_, matcher)| match matcher {
            Matcher::Exact(v) => Some(std::slice::from_ref(v)),
            Matcher::OneOf(values) => Some(values.as_slice()),
            _ => None,
        })
}

/// The union of two ascending lists, ascending, without duplicates.
struct MergeAscending<'a> {
    a: &'a [u32],
    b: &'a [u32],
}

impl Iterator for MergeAscending<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let next = match (self.a.first(), self.b.first()) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => return None,
        };
        if self.a.first() == Some(&next) {
            self.a = &self.a[1..];
        }
        if self.b.first() == Some(&next) {
            self.b = &self.b[1..];
        }
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{IssuerDoc, Limits, PolicySet, TrustPolicyDoc};
    use serde_json::json;
    use std::time::Duration;

    fn set(policies: &[serde_json::Value]) -> PolicySet {
        let issuer: IssuerDoc = serde_json::from_value(json!({
            "name": "gh", "url": "https://token.actions.githubusercontent.com",
            "audiences": ["sts"],
        }))
        .unwrap();
        let docs: Vec<TrustPolicyDoc> = policies
            .iter()
            .map(|p| serde_json::from_value(p.clone()).unwrap())
            .collect();
        let limits = Limits {
            max_ttl: Duration::from_secs(3600),
            allow_insecure_loopback_issuers: false,
            read_app_keys: false,
        };
        PolicySet::compile(&[issuer], &docs, &limits).unwrap()
    }

    fn policy(name: &str, claims: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "issuer": "gh", "claims": claims,
               "grant": {"audience": ["api"], "scopes": ["read"]}})
    }

    fn names(set: &PolicySet, claims: serde_json::Value) -> Vec<String> {
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        set.candidates("gh", &claims)
            .map(|p| p.name.clone())
            .collect()
    }

    #[test]
    fn candidates_are_the_keyed_and_the_unkeyed_in_name_order() {
        let set = set(&[
            policy("a", json!({"repository_id": "1"})),
            policy("b", json!({"repository_id": {"one_of": ["2", "1"]}})),
            policy("c", json!({"repository_id": {"regex": "[0-9]+"}})),
            policy("d", json!({"repository_id": "2"})),
            policy("e", json!({"ref": "refs/heads/main"})),
        ]);
        assert_eq!(
            names(&set, json!({"repository_id": "1"})),
            ["a", "b", "c", "e"]
        );
        assert_eq!(
            names(&set, json!({"repository_id": "2"})),
            ["b", "c", "d", "e"]
        );
        assert_eq!(names(&set, json!({"repository_id": "3"})), ["c", "e"]);
        assert_eq!(names(&set, json!({"ref": "x"})), ["c", "e"]);
        // Numbers compare by their JSON text, as the matchers do.
        assert_eq!(
            names(&set, json!({"repository_id": 2})),
            ["b", "c", "d", "e"]
        );
        // Arrays are judged by every policy.
        assert_eq!(names(&set, json!({"repository_id": ["1"]})).len(), 5);
    }

    #[test]
    fn the_key_is_the_claim_that_tells_policies_apart() {
        let set = set(&[
            policy(
                "a",
                json!({"repository_owner_id": "7", "repository_id": "1"}),
            ),
            policy(
                "b",
                json!({"repository_owner_id": "7", "repository_id": "2"}),
            ),
            policy(
                "c",
                json!({"repository_owner_id": "7", "repository_id": "3"}),
            ),
        ]);
        let token = json!({"repository_owner_id": "7", "repository_id": "2"});
        assert_eq!(names(&set, token), ["b"]);
    }

    #[test]
    fn without_a_shared_exact_claim_every_policy_is_a_candidate() {
        let set = set(&[
            policy("a", json!({"repository_id": "1"})),
            policy("b", json!({"ref": {"glob": "refs/heads/*"}})),
        ]);
        assert_eq!(names(&set, json!({"repository_id": "9"})), ["a", "b"]);
    }

    #[test]
    fn a_name_and_its_pointer_key_the_same_policies() {
        let set = set(&[
            policy("a", json!({"repository_id": "1"})),
            policy("b", json!({"/repository_id": "2"})),
            policy("c", json!({"/repository_id": "1", "ref": "x"})),
            policy("d", json!({"/kubernetes.io/namespace": "payments"})),
        ]);
        assert_eq!(names(&set, json!({"repository_id": "1"})), ["a", "c", "d"]);
        assert_eq!(names(&set, json!({"repository_id": "2"})), ["b", "d"]);
    }

    #[test]
    fn a_nested_claim_can_be_the_key() {
        let set = set(&[
            policy("a", json!({"/kubernetes.io/namespace": "payments"})),
            policy("b", json!({"/kubernetes.io/namespace": "billing"})),
            policy("c", json!({"/kubernetes.io/namespace": "web"})),
        ]);
        let token = |ns: &str| json!({"kubernetes.io": {"namespace": ns}});
        assert_eq!(names(&set, token("billing")), ["b"]);
        assert!(names(&set, token("other")).is_empty());
        assert!(names(&set, json!({"kubernetes.io": "billing"})).is_empty());
    }

    #[test]
    fn merge_is_an_ascending_union() {
        let merged: Vec<u32> = MergeAscending {
            a: &[1, 4, 6],
            b: &[0, 4, 7],
        }
        .collect();
        assert_eq!(merged, [0, 1, 4, 6, 7]);
    }
}
