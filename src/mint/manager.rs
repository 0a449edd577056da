//! The signing-key life cycle: `next` (published, not yet signing) → `active` (signing) →
//! `retired` (published until every token it signed has expired) → forgotten.
//!
//! A key is published at least one JWKS cache period before it signs, and stays published
//! for `max_ttl` plus leeway after it stops, so no relying party with a cached JWKS ever sees
//! a token it cannot verify.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::KeyRing;
use super::SigningAlgorithm;
use super::sealing::{Kek, SealError};
use super::signing_key::{KeyError, SigningKey};
use crate::storage::{KeyState, Storage, StorageError, StoredKey};

/// Extra time a retired key stays published past `max_ttl` (relying parties' clock leeway).
const RETIRED_LEEWAY: Duration = Duration::from_secs(300);

/// How keys are made and rotated.
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy {
    /// Algorithm of new keys.
    pub alg: SigningAlgorithm,
    /// Longest lifetime of an issued token.
    pub max_ttl: Duration,
    /// How long a key is published before it may sign (the JWKS `max-age`).
    pub publish_lead: Duration,
    /// Rotate the active key after this long.
    pub rotation_period: Duration,
}

/// Why keys could not be loaded or rotated.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A key is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A sealed key does not open (wrong KEK), or sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The change was made but its audit record could not be committed.
    #[error(transparent)]
    Audit(#[from] crate::trail::AuditError),
    /// The next key has not been published long enough to sign safely.
    #[error(
        "the next key has been published for only {published}s; rotating now could fail verifiers with a cached JWKS (retry in {wait}s)"
    )]
    TooSoon {
        /// Seconds it has been published.
        published: i64,
        /// Seconds to wait.
        wait: i64,
    },
}

/// A key as `keys list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub alg: String,
    /// `next`, `active` or `retired`.
    pub state: KeyState,
    /// Unix seconds.
    pub created_at: i64,
    /// When it started signing.
    pub activated_at: Option<i64>,
    /// When it stopped signing.
    pub retired_at: Option<i64>,
    /// When it leaves the JWKS (retired keys).
    pub unpublish_at: Option<i64>,
}

/// Loads, creates and rotates signing keys.
pub struct KeyManager {
    kek: Kek,
    policy: KeyPolicy,
}

impl KeyManager {
    /// A manager sealing keys under `kek`.
    pub fn new(kek: Kek, policy: KeyPolicy) -> Self {
        Self { kek, policy }
    }

    /// The rotation policy.
    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    /// Loads the ring, creating keys on first start, sealing legacy plaintext keys, and
    /// forgetting retired keys whose tokens have all expired.
    pub async fn load(&self, store: &dyn Storage, now: i64) -> Result<KeyRing, KeyRingError> {
        // Replicas starting at once race to create the first keys. The store keeps one
        // active and one next key, so a loser's insert is a `Conflict`: read again and use
        // the winner's. Each retry follows another's insert, and there are two key states.
        let mut attempts = 3;
        loop {
            attempts -= 1;
            match self.load_once(store, now).await {
                Err(KeyRingError::Storage(StorageError::Conflict { .. })) if attempts > 0 => {}
                result => return result,
            }
        }
    }

    async fn load_once(&self, store: &dyn Storage, now: i64) -> Result<KeyRing, KeyRingError> {
        let mut rows = store.signing_keys().await?;
        // A wrong KEK must stop everything before anything is written: never "recover" by
        // generating keys that relying parties have not seen.
        for row in rows.iter().filter(|r| r.sealed) {
            self.kek.open(&row.kid, &row.alg, &row.private_key)?;
        }
        for row in rows.iter_mut().filter(|r| !r.sealed) {
            let sealed = self.kek.seal(&row.kid, &row.alg, &row.private_key)?;
            store.reseal_signing_key(&row.kid, &sealed).await?;
            row.private_key = sealed;
            row.sealed = true;
        }
        for row in rows.iter().filter(|r| self.unpublished(r, now)) {
            store.delete_signing_key(&row.kid).await?;
            tracing::info!(kid = %row.kid, "retired signing key left the JWKS");
        }
        rows.retain(|r| !self.unpublished(r, now));
        // A next key of another algorithm (the configuration changed) never signed: drop it.
        for row in rows
            .iter()
            .filter(|r| r.state == KeyState::Next && r.alg != self.policy.alg.as_str())
        {
            store.delete_signing_key(&row.kid).await?;
        }
        rows.retain(|r| !(r.state == KeyState::Next && r.alg != self.policy.alg.as_str()));
        if !rows.iter().any(|r| r.state == KeyState::Active) {
            // First start: nothing was ever published, so the first key may sign at once.
            let row = self.new_key(KeyState::Active, now)?;
            store.insert_signing_key(&row).await?;
            tracing::info!(kid = %row.kid, alg = %row.alg, "generated the first signing key");
            rows.push(row);
        }
        if !rows.iter().any(|r| r.state == KeyState::Next) {
            let row = self.new_key(KeyState::Next, now)?;
            store.insert_signing_key(&row).await?;
            rows.push(row);
        }
        self.ring(&rows)
    }

    /// The ring as stored, writing nothing: what another replica just put there. Creating,
    /// rotating and forgetting keys stay with [`load`](Self::load) on each replica's timer, so
    /// replicas that disagree (on the algorithm, during a rolling configuration change) never
    /// trade writes through each other's notifications at network speed.
    pub async fn read(&self, store: &dyn Storage, now: i64) -> Result<KeyRing, KeyRingError> {
        let mut rows = store.signing_keys().await?;
        rows.retain(|r| !self.unpublished(r, now));
        self.ring(&rows)
    }

    /// Promotes the published next key, retires the active one, publishes a new next key.
    pub async fn rotate(&self, store: &dyn Storage, now: i64) -> Result<KeyRing, KeyRingError> {
        let rows = store.signing_keys().await?;
        let active = rows
            .iter()
            .find(|r| r.state == KeyState::Active)
            .ok_or_else(|| KeyError("no active key".into()))?;
        let next = rows
            .iter()
            .find(|r| r.state == KeyState::Next)
            .ok_or_else(|| KeyError("no next key".into()))?;
        let published = now - next.created_at;
        // Whole seconds: `now - created_at` may round a 0.1 s interval up to 1 s, so one more.
        let lead = self.policy.publish_lead.as_secs_f64().ceil() as i64 + 1;
        if published < lead {
            return Err(KeyRingError::TooSoon {
                published,
                wait: lead - published,
            });
        }
        let new_next = self.new_key(KeyState::Next, now)?;
        store
            .rotate_signing_keys(&active.kid, &next.kid, &new_next, now)
            .await?;
        tracing::info!(retired = %active.kid, active = %next.kid, next = %new_next.kid, "rotated signing keys");
        self.load(store, now).await
    }

    /// Emergency replacement: forgets every key (active, next, retired) and signs from now
    /// on with a new one. Tokens signed so far stop verifying here at once and at relying
    /// parties when they next fetch the JWKS; tokens signed from now on verify there only
    /// after that fetch (at most `jwks_max_age` later; at once where an unknown `kid`
    /// triggers a fetch). For a compromised key, where that outage is the lesser harm.
    /// Returns the new ring and the kids it forgot.
    pub async fn replace(
        &self,
        store: &dyn Storage,
        now: i64,
    ) -> Result<(KeyRing, Vec<String>), KeyRingError> {
        let active = self.new_key(KeyState::Active, now)?;
        let next = self.new_key(KeyState::Next, now)?;
        let removed = store.replace_signing_keys(&active, &next).await?;
        tracing::warn!(active = %active.kid, next = %next.kid, removed = ?removed, "replaced every signing key");
        Ok((self.load(store, now).await?, removed))
    }

    /// Rotates when the active key is older than the rotation period or of another algorithm
    /// than configured, and the next key has been published long enough.
    pub async fn rotate_if_due(
        &self,
        store: &dyn Storage,
        now: i64,
    ) -> Result<Option<KeyRing>, KeyRingError> {
        let rows = store.signing_keys().await?;
        let Some(active) = rows.iter().find(|r| r.state == KeyState::Active) else {
            return Ok(None);
        };
        let since = active.activated_at.unwrap_or(active.created_at);
        let due = now - since >= self.policy.rotation_period.as_secs() as i64
            || active.alg != self.policy.alg.as_str();
        if !due {
            return Ok(None);
        }
        match self.rotate(store, now).await {
            Ok(ring) => Ok(Some(ring)),
            Err(KeyRingError::TooSoon { .. }) => Ok(None),
            Err(KeyRingError::Storage(StorageError::Conflict { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every key with its state and dates.
    pub async fn list(&self, store: &dyn Storage) -> Result<Vec<KeyInfo>, KeyRingError> {
        Ok(store
            .signing_keys()
            .await?
            .into_iter()
            .map(|r| KeyInfo {
                unpublish_at: r.retired_at.map(|t| t + self.retired_window()),
                kid: r.kid,
                alg: r.alg,
                state: r.state,
                created_at: r.created_at,
                activated_at: r.activated_at,
                retired_at: r.retired_at,
            })
            .collect())
    }

    fn retired_window(&self) -> i64 {
        (self.policy.max_ttl + RETIRED_LEEWAY).as_secs() as i64
    }

    fn unpublished(&self, row: &StoredKey, now: i64) -> bool {
        row.state == KeyState::Retired
            && row
                .retired_at
                .is_some_and(|t| now >= t + self.retired_window())
    }

    fn new_key(&self, state: KeyState, now: i64) -> Result<StoredKey, KeyRingError> {
        let (key, pkcs8) = SigningKey::generate(self.policy.alg)?;
        let alg = self.policy.alg.as_str();
        Ok(StoredKey {
            private_key: self.kek.seal(&key.kid, alg, &pkcs8)?,
            kid: key.kid,
            alg: alg.to_owned(),
            sealed: true,
            state,
            created_at: now,
            activated_at: (state == KeyState::Active).then_some(now),
            retired_at: None,
        })
    }

    fn ring(&self, rows: &[StoredKey]) -> Result<KeyRing, KeyRingError> {
        let mut active = None;
        let mut published = Vec::new();
        // Order: next, active, retired (newest first) — the JWKS lists the future first.
        let mut ordered: Vec<&StoredKey> = rows.iter().collect();
        ordered.sort_by_key(|r| (r.state, -r.created_at));
        for row in ordered {
            let Some(alg) = parse_alg(&row.alg) else {
                continue;
            };
            let pkcs8 = self.kek.open(&row.kid, &row.alg, &row.private_key)?;
            let key = Arc::new(SigningKey::from_pkcs8(alg, &pkcs8)?);
            if row.state == KeyState::Active {
                active = Some(key.clone());
            }
            published.push(key);
        }
        let active = active.ok_or_else(|| KeyError("no active key".into()))?;
        Ok(KeyRing::new(active, published))
    }
}

fn parse_alg(name: &str) -> Option<SigningAlgorithm> {
    match name {
        "ES256" => Some(SigningAlgorithm::ES256),
        "RS256" => Some(SigningAlgorithm::RS256),
        "EdDSA" => Some(SigningAlgorithm::EdDSA),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SqliteStore;

    const HOUR: i64 = 3600;

    fn manager(alg: SigningAlgorithm) -> KeyManager {
        KeyManager::new(
            Kek::development(),
            KeyPolicy {
                alg,
                max_ttl: Duration::from_secs(HOUR as u64),
                publish_lead: Duration::from_secs(300),
                rotation_period: Duration::from_secs(24 * HOUR as u64),
            },
        )
    }

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("keys.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        (dir, store)
    }

    fn kids(ring: &KeyRing) -> Vec<String> {
        ring.published.iter().map(|k| k.kid.clone()).collect()
    }

    #[tokio::test]
    async fn keys_move_through_their_life_cycle_on_schedule() {
        let (_dir, store) = store().await;
        let keys = manager(SigningAlgorithm::ES256);
        let t0 = 1_000_000;
        let first = keys.load(&store, t0).await.unwrap();
        let (active, next) = (first.active.kid.clone(), kids(&first)[0].clone());
        assert_ne!(active, next);

        assert!(
            keys.rotate_if_due(&store, t0 + 60).await.unwrap().is_none(),
            "not due"
        );
        let day = t0 + 24 * HOUR;
        let rotated = keys.rotate_if_due(&store, day).await.unwrap().expect("due");
        assert_eq!(rotated.active.kid, next, "the published next key signs");
        assert!(
            kids(&rotated).contains(&active),
            "retired key still published"
        );
        assert_eq!(rotated.published.len(), 3);

        // Retired for max_ttl + leeway: still there one second before, gone after.
        let window = HOUR + RETIRED_LEEWAY.as_secs() as i64;
        let before = keys.load(&store, day + window - 1).await.unwrap();
        assert!(kids(&before).contains(&active));
        let after = keys.load(&store, day + window).await.unwrap();
        assert!(
            !kids(&after).contains(&active),
            "unpublished once its tokens expired"
        );
        assert_eq!(after.published.len(), 2);
    }

    #[tokio::test]
    async fn a_fresh_next_key_cannot_sign_before_caches_have_it() {
        let (_dir, store) = store().await;
        let keys = manager(SigningAlgorithm::EdDSA);
        keys.load(&store, 0).await.unwrap();
        let err = keys.rotate(&store, 300).await.unwrap_err();
        assert!(matches!(err, KeyRingError::TooSoon { .. }), "{err}");
        keys.rotate(&store, 302).await.unwrap();
    }

    #[tokio::test]
    async fn a_new_algorithm_is_published_before_it_signs() {
        let (_dir, store) = store().await;
        let es = manager(SigningAlgorithm::ES256)
            .load(&store, 0)
            .await
            .unwrap();
        let rs = manager(SigningAlgorithm::RS256);
        let ring = rs.load(&store, 10).await.unwrap();
        assert_eq!(
            ring.active.kid, es.active.kid,
            "the old key keeps signing for now"
        );
        assert_eq!(ring.algorithms(), vec!["RS256", "ES256"]);
        assert!(
            rs.rotate_if_due(&store, 100).await.unwrap().is_none(),
            "too soon"
        );
        let ring = rs
            .rotate_if_due(&store, 400)
            .await
            .unwrap()
            .expect("due: wrong alg");
        assert_eq!(ring.active.alg, SigningAlgorithm::RS256);
    }

    #[tokio::test]
    async fn a_wrong_kek_writes_nothing() {
        let (_dir, store) = store().await;
        manager(SigningAlgorithm::ES256)
            .load(&store, 0)
            .await
            .unwrap();
        let before = store.signing_keys().await.unwrap().len();
        let other = crate::secret::Secret::new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        let wrong = KeyManager::new(
            Kek::parse(&other).unwrap(),
            *manager(SigningAlgorithm::ES256).policy(),
        );
        assert!(matches!(
            wrong.load(&store, 10).await,
            Err(KeyRingError::Seal(_))
        ));
        assert_eq!(store.signing_keys().await.unwrap().len(), before);
    }
}
