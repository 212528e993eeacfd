//! The audit trail's records: who did which sensitive thing to what, as a hash chain in the
//! store. Each entry holds the hash of the one before it, and the head row names the last entry,
//! so `userorg audit verify` finds an entry that was changed, removed or cut off the end.
//!
//! An entry is appended *inside the transaction of the change it records* ([`append`]): the
//! change and its entry commit together or not at all. Two audited changes that commit at once
//! conflict on the head row and the later one is retried from a fresh read, like any
//! read-modify-write. Entries carry ids and operation names, never PII.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::retry::{no_claims, read_modify_write};
use super::{Expect, Store, Table, Transaction, compose_key, key_prefix};
use crate::domain::{DomainResult, Record};

const HEAD: &str = "head";
const ENTRY: &str = "e";

/// One audited operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub sequence: u64,
    pub at: String,
    /// The user id, `service` (internal caller), `anonymous`, or `bootstrap` (the first
    /// administrator's grant at first start).
    pub actor: String,
    pub action: String,
    pub target: String,
    #[serde(default)]
    pub details: Value,
    /// The hash of the previous entry ("" for the first).
    pub previous: String,
    /// SHA-256 of this entry with `hash` empty.
    #[serde(default)]
    pub hash: String,
}

impl AuditEntry {
    fn digest(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash.clear();
        let bytes = serde_json::to_vec(&unhashed).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }
}

/// The last entry: its sequence and hash.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Head {
    sequence: u64,
    hash: String,
}

crate::domain::plain_record!(AuditEntry, Head);

fn entry_key(sequence: u64) -> String {
    compose_key(&[ENTRY, &format!("{sequence:020}")])
}

/// What one audited change is: who did what to which target, with non-PII details.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditNote {
    /// The user id, `service` (internal caller), `anonymous`, or `bootstrap` (the first
    /// administrator's grant at first start).
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: Value,
}

/// Adds the entry of `note` (timestamp `at`) and the new head to `transaction`, expecting the
/// head as read now: the transaction commits only if no other entry was appended meanwhile.
pub async fn append(
    store: &dyn Store,
    transaction: &mut Transaction,
    note: &AuditNote,
    at: &str,
) -> DomainResult<()> {
    let (head, expect) = match store.get(Table::Audit, HEAD).await? {
        Some(row) => (
            Head::from_value(row.doc).unwrap_or_default(),
            Expect::Version(row.version),
        ),
        None => (Head::default(), Expect::Absent),
    };
    let mut entry = AuditEntry {
        sequence: head.sequence + 1,
        at: at.to_string(),
        actor: note.actor.clone(),
        action: note.action.clone(),
        target: note.target.clone(),
        details: note.details.clone(),
        previous: head.hash.clone(),
        hash: String::new(),
    };
    entry.hash = entry.digest();
    let next = Head {
        sequence: entry.sequence,
        hash: entry.hash.clone(),
    };
    transaction.put_record(
        Table::Audit,
        entry_key(entry.sequence),
        &entry,
        Expect::Absent,
    )?;
    transaction.put_record(Table::Audit, HEAD, &next, expect)?;
    Ok(())
}

/// Commits `transaction` together with the entry of `note`, through [`read_modify_write`]:
/// when another audited change took the next entry first, the entry is appended again after it.
/// The transaction must take no claims.
pub async fn commit_with_entry(
    store: &dyn Store,
    transaction: Transaction,
    note: &AuditNote,
    at: &str,
) -> DomainResult<()> {
    let transaction = &transaction;
    read_modify_write(store, no_claims, || async move {
        let mut audited = transaction.clone();
        append(store, &mut audited, note, at).await?;
        Ok((audited, ()))
    })
    .await
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every entry is in place and unchanged.
    Intact { entries: u64 },
    /// The first problem met.
    Broken { sequence: u64, reason: String },
}

/// Walks the whole chain and checks every link and the head.
pub async fn verify(store: &Arc<dyn Store>) -> DomainResult<Verdict> {
    let head = match store.get(Table::Audit, HEAD).await? {
        Some(row) => Head::from_value(row.doc).unwrap_or_default(),
        None => Head::default(),
    };
    let prefix = key_prefix(ENTRY);
    let mut previous = String::new();
    let mut expected = 1u64;
    let mut after: Option<String> = None;
    loop {
        let rows = store
            .scan(Table::Audit, &prefix, after.as_deref(), 1000)
            .await?;
        let Some(last) = rows.last().map(|row| row.key.clone()) else {
            break;
        };
        for row in rows {
            let broken = |reason: &str| Verdict::Broken {
                sequence: expected,
                reason: reason.to_string(),
            };
            let Ok(entry) = AuditEntry::from_value(row.doc) else {
                return Ok(broken("the entry does not parse"));
            };
            if entry.sequence != expected {
                return Ok(broken("an entry is missing before this one"));
            }
            if entry.previous != previous {
                return Ok(broken("the link to the previous entry does not hold"));
            }
            if entry.digest() != entry.hash {
                return Ok(broken("the entry was changed"));
            }
            previous = entry.hash;
            expected += 1;
        }
        after = Some(last);
    }
    let entries = expected - 1;
    if head.sequence != entries || head.hash != previous {
        return Ok(Verdict::Broken {
            sequence: entries + 1,
            reason: format!(
                "the head names entry {} but the chain ends at {entries}: entries were removed from the end",
                head.sequence
            ),
        });
    }
    Ok(Verdict::Intact { entries })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::storage::StoreError;
    use crate::storage::redb_store::RedbStore;

    async fn trail() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.path().join("store.redb")).expect("open"));
        for n in 0..5 {
            let note = AuditNote {
                actor: "service".into(),
                action: "user.block".into(),
                target: format!("u{n}"),
                details: json!({}),
            };
            let mut transaction = Transaction::default();
            append(
                &*store,
                &mut transaction,
                &note,
                "2026-12-01 10:00:00:000+0000",
            )
            .await
            .expect("appended");
            store.commit(transaction).await.expect("recorded");
        }
        (dir, store)
    }

    #[tokio::test]
    async fn two_entries_appended_from_one_head_do_not_both_commit() {
        let (_dir, store) = trail().await;
        let note = AuditNote {
            actor: "service".into(),
            action: "user.unblock".into(),
            target: "u1".into(),
            details: json!({}),
        };
        let (mut first, mut second) = (Transaction::default(), Transaction::default());
        append(&*store, &mut first, &note, "t")
            .await
            .expect("first");
        append(&*store, &mut second, &note, "t")
            .await
            .expect("second");
        store.commit(first).await.expect("the first commits");
        assert!(
            matches!(store.commit(second).await, Err(StoreError::Conflict { .. })),
            "the second must be retried from the new head"
        );
        assert_eq!(
            verify(&store).await.expect("verify"),
            Verdict::Intact { entries: 6 }
        );
    }

    async fn tamper(store: &Arc<dyn Store>, sequence: u64, change: impl FnOnce(&mut Value)) {
        let row = store
            .get(Table::Audit, &entry_key(sequence))
            .await
            .expect("get")
            .expect("entry");
        let mut doc = row.doc;
        change(&mut doc);
        let mut transaction = Transaction::default();
        transaction.put(Table::Audit, entry_key(sequence), doc, Expect::Any);
        store.commit(transaction).await.expect("tampered");
    }

    async fn remove(store: &Arc<dyn Store>, sequence: u64) {
        let mut transaction = Transaction::default();
        transaction.delete(Table::Audit, entry_key(sequence), Expect::Any);
        store.commit(transaction).await.expect("removed");
    }

    #[tokio::test]
    async fn an_intact_chain_verifies() {
        let (_dir, store) = trail().await;
        assert_eq!(
            verify(&store).await.expect("verify"),
            Verdict::Intact { entries: 5 }
        );
    }

    #[tokio::test]
    async fn a_changed_entry_is_found() {
        let (_dir, store) = trail().await;
        tamper(&store, 3, |doc| doc["target"] = json!("someone-else")).await;
        assert_eq!(
            verify(&store).await.expect("verify"),
            Verdict::Broken {
                sequence: 3,
                reason: "the entry was changed".into()
            }
        );
    }

    #[tokio::test]
    async fn a_rehashed_entry_breaks_the_next_link() {
        let (_dir, store) = trail().await;
        tamper(&store, 2, |doc| {
            doc["actor"] = json!("nobody");
            let mut entry = AuditEntry::from_value(doc.clone()).expect("entry");
            entry.hash = entry.digest();
            *doc = entry.to_doc();
        })
        .await;
        assert_eq!(
            verify(&store).await.expect("verify"),
            Verdict::Broken {
                sequence: 3,
                reason: "the link to the previous entry does not hold".into()
            }
        );
    }

    #[tokio::test]
    async fn a_removed_entry_is_found_in_the_middle_and_at_the_end() {
        let (_dir, store) = trail().await;
        remove(&store, 2).await;
        assert_eq!(
            verify(&store).await.expect("verify"),
            Verdict::Broken {
                sequence: 2,
                reason: "an entry is missing before this one".into()
            }
        );
        let (_dir, store) = trail().await;
        remove(&store, 5).await;
        assert!(matches!(
            verify(&store).await.expect("verify"),
            Verdict::Broken { sequence: 5, .. }
        ));
    }
}
