//! Read-modify-write with optimistic concurrency, in one place: read the current rows, build the
//! transaction with `Expect::Version` on them, commit; when another writer (another instance, or
//! a write outside the owning actor) changed a row in between, the commit conflicts and the whole
//! attempt runs again on fresh state.

use std::future::Future;

use super::{ClaimKind, Store, StoreError, Table, Transaction};
use crate::domain::{DomainError, DomainResult};

/// Attempts of a read-modify-write before giving up with 503 (the caller may retry). Within
/// one instance the owning actor serialises writes of an entity; these rounds are for writers
/// on other instances, where each lost round means another writer's commit landed: two
/// instances writing one entity without pause leave a writer losing every round about once in
/// 2^12 (the pause between rounds spreads them).
pub const WRITE_ATTEMPTS: usize = 12;

/// Conflicts on the audit trail's head a write may meet before giving up, counted apart from
/// [`WRITE_ATTEMPTS`]: every audited change takes the one head, so changes audited at once
/// conflict there, and each round lets one of them through. One round per write that can be
/// audited at the same time (owner workers of every kind, settings) is enough; this is more.
pub const AUDIT_APPEND_ATTEMPTS: usize = 64;

/// Runs `attempt` (read, check, build) and commits what it returns, again on a version
/// conflict, up to [`WRITE_ATTEMPTS`] times (conflicts on the audit head up to
/// [`AUDIT_APPEND_ATTEMPTS`] more). A taken claim is answered with `on_claim`; any
/// other store failure with its domain error. `attempt` answers the transaction and the value to
/// return once it committed.
pub async fn read_modify_write<T, F, Fut>(
    store: &dyn Store,
    on_claim: impl Fn(ClaimKind) -> DomainError,
    mut attempt: F,
) -> DomainResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = DomainResult<(Transaction, T)>>,
{
    let (mut conflicts, mut audit_conflicts) = (0, 0);
    while conflicts < WRITE_ATTEMPTS {
        let (transaction, value) = attempt().await?;
        match store.commit(transaction).await {
            Ok(_) => return Ok(value),
            Err(StoreError::Conflict {
                table: Table::Audit,
                ..
            }) if audit_conflicts < AUDIT_APPEND_ATTEMPTS => audit_conflicts += 1,
            Err(StoreError::Conflict { .. }) => {
                conflicts += 1;
                conflict_pause(conflicts).await;
            }
            Err(StoreError::ClaimTaken { kind, .. }) => return Err(on_claim(kind)),
            Err(other) => return Err(other.into()),
        }
    }
    Err(DomainError::Unavailable(
        "the entity changed concurrently too often".into(),
    ))
}

/// A short random pause after the `n`th conflict (up to 2^n ms, at most 32): two instances
/// writing one entity in lockstep would otherwise read, conflict and read again at the same
/// moments, and the same one would lose every round. Within one instance the owning actor
/// serialises writes, so only writers elsewhere meet this.
async fn conflict_pause(n: usize) {
    let ceiling_us = 1_000u64 << n.min(5);
    let pause = rand::random_range(0..ceiling_us);
    tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
}

/// For writes that take no claims: a taken claim cannot happen, and would be a bug.
pub fn no_claims(kind: ClaimKind) -> DomainError {
    DomainError::internal(anyhow::anyhow!("unexpected {} claim conflict", kind.name()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::storage::redb_store::RedbStore;
    use crate::storage::testing::FaultyStore;
    use crate::storage::{Expect, Table};

    fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(&dir.path().join("store.redb")).expect("open");
        (dir, Arc::new(store))
    }

    fn put(key: &str, expect: Expect) -> Transaction {
        let mut transaction = Transaction::default();
        transaction.put(Table::User, key, json!({}), expect);
        transaction
    }

    #[tokio::test]
    async fn a_conflict_runs_the_attempt_again_on_fresh_state() {
        let (_dir, inner) = store();
        let (faulty, faults) = FaultyStore::new(inner);
        faults.inject_conflicts(2);
        let mut attempts = 0;
        let value = read_modify_write(&faulty, no_claims, || {
            attempts += 1;
            let n = attempts;
            async move { Ok((put("k", Expect::Any), n)) }
        })
        .await
        .expect("the third attempt commits");
        assert_eq!(value, 3);
        assert_eq!(
            faults.commits(),
            1,
            "only the last attempt reached the engine"
        );
    }

    #[tokio::test]
    async fn endless_conflicts_give_up_with_503() {
        let (_dir, inner) = store();
        let (faulty, faults) = FaultyStore::new(inner);
        faults.inject_conflicts(WRITE_ATTEMPTS);
        let outcome = read_modify_write(&faulty, no_claims, || async {
            Ok((put("k", Expect::Any), ()))
        })
        .await;
        assert!(
            matches!(outcome, Err(DomainError::Unavailable(_))),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_taken_claim_is_answered_by_the_caller() {
        let (_dir, store) = store();
        let mut first = Transaction::default();
        first.claim(ClaimKind::Email, "token", "someone");
        store.commit(first).await.expect("claim");
        let outcome = read_modify_write(
            &*store,
            |kind| DomainError::already_exists(kind.name()),
            || async {
                let mut transaction = Transaction::default();
                transaction.claim(ClaimKind::Email, "token", "me");
                Ok((transaction, ()))
            },
        )
        .await;
        match outcome {
            Err(DomainError::Rule(rule)) => assert_eq!(rule.message, "email already exists"),
            other => panic!("expected the caller's claim error, got {other:?}"),
        }
    }
}
