//! Unique ids: issued tokens' `jti`, request ids.
//!
//! The random bits come from aws-lc's generator (a per-thread DRBG seeded from the kernel),
//! not from a `getrandom` system call per id as `uuid`'s own constructors make: two ids per
//! exchange cost two system calls, ~1.5 µs each on the benchmark machine.

use std::time::{SystemTime, UNIX_EPOCH};

use uuid::{Builder, Uuid};

/// A random (version 4) UUID.
pub fn random() -> Uuid {
    Builder::from_random_bytes(random_bytes()).into_uuid()
}

/// A version 7 UUID: a millisecond timestamp, then 74 random bits, so that ids grow with
/// time.
pub fn time_ordered() -> Uuid {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let bytes = random_bytes();
    let mut tail = [0u8; 10];
    tail.copy_from_slice(&bytes[..10]);
    Builder::from_unix_timestamp_millis(millis, &tail).into_uuid()
}

fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // aws-lc's generator does not fail once the process runs (it aborts rather than return
    // weak bytes); should it ever, the kernel's generator through `uuid` is the fallback.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return *Uuid::new_v4().as_bytes();
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_version_and_do_not_repeat() {
        let ids: std::collections::HashSet<Uuid> = (0..10_000).map(|_| random()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.get_version_num() == 4));
        let (a, b) = (time_ordered(), time_ordered());
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 7);
        let (ta, _) = a.get_timestamp().expect("v7 carries a time").to_unix();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(ta) <= 1, "{ta} vs {now}");
    }
}
