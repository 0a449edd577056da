//! Reading the audit trail: pages of records, newest first, and the records of one request.

use std::sync::Arc;

use super::{AuditFilter, AuditRecord};
use crate::storage::{Storage, StorageError};

/// Largest page of audit records.
pub const MAX_PAGE: u32 = 500;

/// One page of records and the cursor of the next (older) page, if there may be one.
#[derive(Debug)]
pub struct AuditPage {
    /// Newest first.
    pub records: Vec<AuditRecord>,
    /// Pass as `before_id` for the next page; `None` on the last page.
    pub next: Option<i64>,
}

/// Queries over the stored audit records.
pub struct AuditTrail {
    store: Arc<dyn Storage>,
}

impl AuditTrail {
    /// The trail kept in `store`.
    pub fn new(store: Arc<dyn Storage>) -> Self {
        Self { store }
    }

    /// The records matching `filter`, a page of at most `filter.limit` (≤ [`MAX_PAGE`]).
    pub async fn page(&self, filter: &AuditFilter) -> Result<AuditPage, StorageError> {
        let mut filter = filter.clone();
        filter.limit = filter.limit.clamp(1, MAX_PAGE);
        let records = self.store.query_audit(&filter).await?;
        // A full page may have a successor; a short one is the last.
        let next = (records.len() == filter.limit as usize)
            .then(|| records.last().map(|r| r.id))
            .flatten();
        Ok(AuditPage { records, next })
    }

    /// The records of one request (an exchange has one; an admin change one per write).
    pub async fn by_request(&self, request_id: &str) -> Result<Vec<AuditRecord>, StorageError> {
        self.store.audit_by_request(request_id).await
    }
}
