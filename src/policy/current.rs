//! The policy set in force: read by every exchange without a lock, replaced whole when an
//! admin, a policy file or another replica changes a document.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::PolicySet;

/// The issuers and policies in force.
pub struct CurrentPolicies(ArcSwap<PolicySet>);

impl CurrentPolicies {
    /// Puts `set` in force.
    pub fn new(set: PolicySet) -> Self {
        Self(ArcSwap::from_pointee(set))
    }

    /// The set in force now; stays valid for as long as it is held, whatever replaces it.
    pub fn get(&self) -> Arc<PolicySet> {
        self.0.load_full()
    }

    /// Replaces the set in force.
    pub fn replace(&self, set: PolicySet) {
        self.0.store(Arc::new(set));
        // Compiling a set frees far more than it keeps; give it back to the OS now.
        crate::memory::release_freed_memory();
    }
}
