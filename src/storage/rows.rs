//! What the two databases share: reading rows into the stored types, and the audit query.
//!
//! The schemas are the same but for the column types of JSON (`TEXT` on SQLite, `jsonb` on
//! PostgreSQL) and flags (`INTEGER` / `boolean`); [`Columns`] hides exactly that, so each
//! mapping below is written once.

use serde_json::Value;
use sqlx::{Database, Encode, QueryBuilder, Row, Type};

use super::{
    AuditRow, DocumentVersion, KeyState, StorageError, StoredDocument, StoredDocuments, StoredKey,
    StoredRevocation,
};
use crate::audit::{AuditEvent, AuditFilter, AuditKind, Decision};
use crate::policy::Kind;

/// Reading a column, the same way on either database.
pub(super) trait Columns {
    /// A `TEXT` column.
    fn text(&self, column: &str) -> Result<String, StorageError>;
    /// A nullable `TEXT` column.
    fn opt_text(&self, column: &str) -> Result<Option<String>, StorageError>;
    /// An integer column.
    fn int(&self, column: &str) -> Result<i64, StorageError>;
    /// A nullable integer column.
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StorageError>;
    /// A JSON column.
    fn json(&self, column: &str) -> Result<Value, StorageError>;
    /// A nullable JSON column.
    fn opt_json(&self, column: &str) -> Result<Option<Value>, StorageError>;
    /// A flag.
    fn flag(&self, column: &str) -> Result<bool, StorageError>;
    /// A byte column.
    fn bytes(&self, column: &str) -> Result<Vec<u8>, StorageError>;
}

/// Columns of an audit row, in the order [`audit_row`] reads them.
pub(super) const AUDIT_COLUMNS: &str = "id, request_id, time, kind, decision, reason, \
    client_addr, policy, inbound_iss, inbound_sub, inbound_jti, issued_jti, issued_exp, \
    detail, journal_position";

/// Adds one row of `SELECT kind, name, body, updated_by FROM documents` to `docs`.
pub(super) fn collect_document(
    docs: &mut StoredDocuments,
    row: &impl Columns,
) -> Result<(), StorageError> {
    let kind = row.text("kind")?;
    let name = row.text("name")?;
    let body = row.json("body")?;
    let corrupt = |e: serde_json::Error| StorageError::Corrupt(format!("{kind} {name}: {e}"));
    let parsed =
        Kind::parse(&kind).ok_or_else(|| StorageError::Corrupt(format!("unknown kind {kind}")))?;
    match parsed {
        Kind::Issuer => docs
            .issuers
            .push(serde_json::from_value(body).map_err(corrupt)?),
        Kind::TrustPolicy => docs
            .policies
            .push(serde_json::from_value(body).map_err(corrupt)?),
        Kind::GitHubApp => docs
            .apps
            .push(serde_json::from_value(body).map_err(corrupt)?),
    }
    if row.text("updated_by")? == super::FILES_ACTOR {
        docs.from_files.push((parsed, name));
    }
    Ok(())
}

/// A row of `SELECT name, version, body, updated_at, updated_by FROM documents`.
pub(super) fn stored_document(
    kind: Kind,
    row: &impl Columns,
) -> Result<StoredDocument, StorageError> {
    Ok(StoredDocument {
        kind,
        name: row.text("name")?,
        version: row.int("version")?,
        body: row.json("body")?,
        updated_at: row.int("updated_at")?,
        updated_by: row.text("updated_by")?,
    })
}

/// A row of `SELECT version, body, changed_at, changed_by FROM document_versions`.
pub(super) fn document_version(row: &impl Columns) -> Result<DocumentVersion, StorageError> {
    Ok(DocumentVersion {
        version: row.int("version")?,
        body: row.opt_json("body")?,
        changed_at: row.int("changed_at")?,
        changed_by: row.text("changed_by")?,
    })
}

/// A row of the audit table ([`AUDIT_COLUMNS`]): the event, or as much of it as a row
/// indexed from the journal keeps, with its journal position.
pub(super) fn audit_row(row: &impl Columns) -> Result<AuditRow, StorageError> {
    let journal_position = row.opt_int("journal_position")?;
    let kind = row.text("kind")?;
    Ok(AuditRow {
        id: row.int("id")?,
        journal_position,
        event: AuditEvent {
            request_id: row.text("request_id")?,
            time: row.int("time")?,
            kind: AuditKind::parse(&kind)
                .ok_or_else(|| StorageError::Corrupt(format!("audit kind {kind:?}")))?,
            decision: row
                .opt_text("decision")?
                .as_deref()
                .and_then(Decision::parse),
            reason: row.text("reason")?,
            client_addr: row.opt_text("client_addr")?,
            policy: row.opt_text("policy")?,
            inbound_iss: row.opt_text("inbound_iss")?,
            inbound_sub: row.opt_text("inbound_sub")?,
            inbound_jti: row.opt_text("inbound_jti")?,
            issued_jti: row.opt_text("issued_jti")?,
            issued_exp: row.opt_int("issued_exp")?,
            detail: match journal_position {
                Some(_) => Value::Null,
                None => row.json("detail")?,
            },
            claims_text: None,
        },
    })
}

/// A row of the signing keys.
pub(super) fn stored_key(row: &impl Columns) -> Result<StoredKey, StorageError> {
    let state = row.text("state")?;
    Ok(StoredKey {
        kid: row.text("kid")?,
        alg: row.text("alg")?,
        private_key: row.bytes("private_key")?,
        sealed: row.flag("sealed")?,
        state: KeyState::parse(&state)
            .ok_or_else(|| StorageError::Corrupt(format!("signing key state {state:?}")))?,
        created_at: row.int("created_at")?,
        activated_at: row.opt_int("activated_at")?,
        retired_at: row.opt_int("retired_at")?,
    })
}

/// A row of the revocations.
pub(super) fn stored_revocation(row: &impl Columns) -> Result<StoredRevocation, StorageError> {
    Ok(StoredRevocation {
        jti: row.opt_text("jti")?,
        policy: row.opt_text("policy")?,
        subject: row.opt_text("subject")?,
        issued_since: row.int("issued_since")?,
        issued_until: row.int("issued_until")?,
        expires_at: row.int("expires_at")?,
        created_at: row.int("created_at")?,
        created_by: row.text("created_by")?,
        reason: row.opt_text("reason")?,
    })
}

/// `SELECT … FROM audit_events` with `filter`, newest first; each database binds its own way.
pub(super) fn audit_query<DB>(filter: &AuditFilter) -> QueryBuilder<DB>
where
    DB: Database,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> String: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE 1 = 1"
    ));
    if let Some(since) = filter.since {
        q.push(" AND time >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        q.push(" AND time < ").push_bind(until);
    }
    if let Some(decision) = filter.decision {
        q.push(" AND decision = ")
            .push_bind(decision.as_str().to_owned());
    }
    if let Some(policy) = &filter.policy {
        q.push(" AND policy = ").push_bind(policy.clone());
    }
    if let Some(subject) = &filter.subject {
        q.push(" AND inbound_sub = ").push_bind(subject.clone());
    }
    if let Some(reason) = &filter.reason {
        q.push(" AND reason = ").push_bind(reason.clone());
    }
    if let Some(kind) = filter.kind {
        q.push(" AND kind = ").push_bind(kind.as_str().to_owned());
    }
    if filter.by_time {
        if let (Some(time), Some(id)) = (filter.before_time, filter.before_id) {
            q.push(" AND (time < ")
                .push_bind(time)
                .push(" OR (time = ")
                .push_bind(time)
                .push(" AND id < ")
                .push_bind(id)
                .push("))");
        }
        q.push(" ORDER BY time DESC, id DESC LIMIT ");
    } else {
        if let Some(before) = filter.before_id {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ");
    }
    q.push_bind(i64::from(filter.limit));
    q
}

/// A column of any type the row decodes.
fn get<'r, R, T>(row: &'r R, column: &str) -> Result<T, StorageError>
where
    R: Row,
    T: sqlx::Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
{
    row.try_get(column).map_err(StorageError::from)
}

fn parse_json(column: &str, text: &str) -> Result<Value, StorageError> {
    serde_json::from_str(text).map_err(|e| StorageError::Corrupt(format!("{column}: {e}")))
}

/// The columns both databases decode the same way; `json`, `opt_json` and `flag` are each
/// database's own.
macro_rules! common_columns {
    () => {
        fn text(&self, column: &str) -> Result<String, StorageError> {
            get(self, column)
        }
        fn opt_text(&self, column: &str) -> Result<Option<String>, StorageError> {
            get(self, column)
        }
        fn int(&self, column: &str) -> Result<i64, StorageError> {
            get(self, column)
        }
        fn opt_int(&self, column: &str) -> Result<Option<i64>, StorageError> {
            get(self, column)
        }
        fn bytes(&self, column: &str) -> Result<Vec<u8>, StorageError> {
            get(self, column)
        }
    };
}

/// SQLite keeps JSON as `TEXT` and flags as `INTEGER`.
impl Columns for sqlx::sqlite::SqliteRow {
    common_columns!();
    fn json(&self, column: &str) -> Result<Value, StorageError> {
        parse_json(column, &self.text(column)?)
    }
    fn opt_json(&self, column: &str) -> Result<Option<Value>, StorageError> {
        (self.opt_text(column)?)
            .map(|text| parse_json(column, &text))
            .transpose()
    }
    fn flag(&self, column: &str) -> Result<bool, StorageError> {
        Ok(self.int(column)? != 0)
    }
}

/// PostgreSQL has `jsonb` and `boolean`.
impl Columns for sqlx::postgres::PgRow {
    common_columns!();
    fn json(&self, column: &str) -> Result<Value, StorageError> {
        get(self, column)
    }
    fn opt_json(&self, column: &str) -> Result<Option<Value>, StorageError> {
        get(self, column)
    }
    fn flag(&self, column: &str) -> Result<bool, StorageError> {
        get(self, column)
    }
}
