//! `userorg keys reseal`: rewrites every sealed value of every user row that is not sealed with
//! the current PII key in the current format (after `userorg keys rotate`, or a key rotated in
//! configuration), so retired keys can eventually be dropped. Each row is rewritten at the
//! version it was read (again from a fresh read on a conflict) with an outbox event, so the
//! search index picks the new ciphertexts up.

use std::sync::Arc;

use serde_json::Value;

use crate::actors::user_owner::{open_external_id, phone_token, seal_external_id};
use crate::crypto::PiiVault;
use crate::domain::contact::Phone;
use crate::domain::user::{ExternalId, SealedExternalId};
use crate::domain::{DomainError, DomainResult};
use crate::search::documents::PII_TOKENS_FIELD;
use crate::services::users::view::{CLEAR_PII, MASKED_PII, sealed_kind};
use crate::storage::retry::{no_claims, read_modify_write};
use crate::storage::{ClaimKind, Expect, Row, Store, Table, Topic, Transaction};

const PAGE: usize = 500;

/// What a reseal did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    pub users_scanned: usize,
    pub users_rewritten: usize,
    pub values_resealed: usize,
    /// Users with a value no configured key opens (their rows are left as they are).
    pub unreadable: Vec<String>,
}

/// A claim that moves from one value to another in the rewrite.
type MovedClaim = (ClaimKind, String, String);

/// A stored row rewritten: its document, how many values were resealed or re-tokenised, and
/// the claims moved (external ids sealed for the first time, a phone token recomputed).
struct Resealed {
    doc: Value,
    count: usize,
    moved_claims: Vec<MovedClaim>,
}

/// The external ids of a row with the stale ones resealed: entries written before external ids
/// were sealed are sealed now (their claim moves from the clear value to the token), entries
/// sealed under a retired key are sealed under the current one.
fn resealed_external_ids(
    vault: &PiiVault,
    row: &Row,
    entries: &mut [Value],
    count: &mut usize,
    moved_claims: &mut Vec<MovedClaim>,
) -> DomainResult<()> {
    for entry in entries.iter_mut() {
        let stored: SealedExternalId = serde_json::from_value(entry.clone()).map_err(|error| {
            DomainError::internal(anyhow::anyhow!("user {}: externalIds: {error}", row.key))
        })?;
        let clear = if stored.is_clear() {
            ExternalId {
                id: stored.id.clone(),
                id_type: stored.id_type.clone(),
                provider: stored.provider.clone(),
            }
        } else if vault.needs_reseal(&stored.id) {
            open_external_id(vault, &row.key, &stored).ok_or_else(|| {
                DomainError::internal(anyhow::anyhow!(
                    "user {}: externalIds: no configured key opens it",
                    row.key
                ))
            })?
        } else {
            continue;
        };
        let fresh = seal_external_id(vault, &row.key, &clear)?;
        if stored.claim() != fresh.claim() {
            moved_claims.push((ClaimKind::ExternalId, stored.claim(), fresh.claim()));
        }
        *entry = serde_json::to_value(&fresh).map_err(DomainError::internal)?;
        *count += 1;
    }
    Ok(())
}

/// Recomputes the primary phone's blind-index token from the sealed number and the row's
/// country code: rows written before the token took the international form hold a token of
/// the national number, which neither lookups nor the uniqueness claim of the same number
/// written since would meet. The claim moves with the token.
fn retokenised_phone(
    vault: &PiiVault,
    row: &Row,
    fields: &mut serde_json::Map<String, Value>,
    count: &mut usize,
    moved_claims: &mut Vec<MovedClaim>,
) -> DomainResult<()> {
    let Some(sealed) = fields.get("phone").and_then(Value::as_str) else {
        return Ok(());
    };
    if sealed.is_empty() {
        return Ok(());
    }
    let country_code = fields
        .get("countryCode")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let number = vault.open(&row.key, "phone", sealed).map_err(|error| {
        DomainError::internal(anyhow::anyhow!("user {}: phone: {error}", row.key))
    })?;
    // A stored number that no longer parses keeps its token: nothing better can be computed.
    let Ok(phone) = Phone::parse(&number, Some(country_code), country_code) else {
        return Ok(());
    };
    let expected = phone_token(vault, &phone);
    let Some(Value::Object(tokens)) = fields.get_mut(PII_TOKENS_FIELD) else {
        return Ok(());
    };
    let stored = tokens
        .get("phone")
        .and_then(Value::as_str)
        .map(str::to_string);
    if stored.as_deref() == Some(expected.as_str()) {
        return Ok(());
    }
    if let Some(old) = stored {
        moved_claims.push((ClaimKind::Phone, old, expected.clone()));
    }
    tokens.insert("phone".into(), Value::String(expected));
    *count += 1;
    Ok(())
}

/// The row with its stale values resealed; `None` when nothing is stale. A value no
/// configured key opens is an error naming the user.
fn resealed(vault: &PiiVault, row: &Row) -> DomainResult<Option<Resealed>> {
    let mut doc = row.doc.clone();
    let Some(fields) = doc.as_object_mut() else {
        return Ok(None);
    };
    let mut count = 0;
    let mut moved_claims = Vec::new();
    if let Some(Value::Array(entries)) = fields.get_mut("externalIds") {
        resealed_external_ids(vault, row, entries, &mut count, &mut moved_claims)?;
    }
    retokenised_phone(vault, row, fields, &mut count, &mut moved_claims)?;
    for field in MASKED_PII.iter().chain(CLEAR_PII.iter()) {
        let Some(Value::String(sealed)) = fields.get(*field) else {
            continue;
        };
        if sealed.is_empty() || !vault.needs_reseal(sealed) {
            continue;
        }
        let Some(kind) = sealed_kind(field) else {
            continue;
        };
        let plain = vault.open(&row.key, kind, sealed).map_err(|error| {
            DomainError::internal(anyhow::anyhow!("user {}: {field}: {error}", row.key))
        })?;
        let fresh = vault
            .seal(&row.key, kind, &plain)
            .map_err(DomainError::internal)?;
        fields.insert((*field).to_string(), Value::String(fresh));
        count += 1;
    }
    Ok((count > 0).then_some(Resealed {
        doc,
        count,
        moved_claims,
    }))
}

/// The next page of `table` after `after`, which moves to its last key; empty at the end.
async fn next_page(
    store: &Arc<dyn Store>,
    table: Table,
    after: &mut Option<String>,
) -> DomainResult<Vec<Row>> {
    let rows = store.scan(table, "", after.as_deref(), PAGE).await?;
    if let Some(last) = rows.last() {
        *after = Some(last.key.clone());
    }
    Ok(rows)
}

/// Commits one row's rewrite (`attempt` reads, reseals and builds; again on a conflict):
/// the values it resealed, or `None` for a row no configured key opens, logged and left as it
/// is.
async fn rewrite<F, Fut>(
    store: &Arc<dyn Store>,
    key: &str,
    attempt: F,
) -> DomainResult<Option<usize>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = DomainResult<(Transaction, usize)>>,
{
    match read_modify_write(&**store, no_claims, attempt).await {
        Ok(count) => Ok(Some(count)),
        Err(DomainError::Internal(error)) => {
            tracing::warn!(row.key = %key, %error, "value not resealed");
            Ok(None)
        }
        Err(other) => Err(other),
    }
}

/// Reseals every user row of `store` under the vault's current key.
pub async fn reseal_all(store: &Arc<dyn Store>, vault: &PiiVault) -> DomainResult<ResealReport> {
    let mut report = ResealReport::default();
    let mut after: Option<String> = None;
    loop {
        let rows = next_page(store, Table::User, &mut after).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            report.users_scanned += 1;
            let id = row.key.clone();
            let attempt = || async {
                let Some(current) = store.get(Table::User, &id).await? else {
                    return Ok((Transaction::default(), 0));
                };
                let Some(Resealed {
                    doc,
                    count,
                    moved_claims,
                }) = resealed(vault, &current)?
                else {
                    return Ok((Transaction::default(), 0));
                };
                let mut transaction = Transaction::default();
                for (kind, released, taken) in moved_claims {
                    transaction.release(kind, released, &id);
                    transaction.claim(kind, taken, &id);
                }
                transaction.put(Table::User, &id, doc, Expect::Version(current.version));
                transaction.event(Topic::User, &id, current.version + 1);
                Ok((transaction, count))
            };
            match rewrite(store, &id, attempt).await? {
                Some(0) => {}
                Some(count) => {
                    report.users_rewritten += 1;
                    report.values_resealed += count;
                }
                None => report.unreadable.push(id),
            }
        }
    }
    Ok(report)
}

/// Sealed values kept outside user rows: one sealed field per row, bound to a row id.
struct SealedRows {
    table: Table,
    /// The field holding the sealed value.
    field: &'static str,
    /// What the value is bound to: the row key, or a field of the row.
    bound_to: Option<&'static str>,
    kind: &'static str,
}

/// The tables with sealed values besides `user`: the messages of the notification outbox and
/// the declared info of self-declarations.
const SEALED_ROWS: [SealedRows; 2] = [
    SealedRows {
        table: Table::Notification,
        field: "sealed",
        bound_to: None,
        kind: crate::actors::dispatcher::SEAL_KIND,
    },
    SealedRows {
        table: Table::UserDeclarations,
        field: "info",
        bound_to: Some("userId"),
        kind: crate::services::declarations::SEAL_KIND,
    },
];

/// What a reseal of the other tables did: rows rewritten, and the keys of rows no configured
/// key opens (left as they are).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RowReport {
    pub rows_rewritten: usize,
    pub unreadable: Vec<String>,
}

/// Reseals the sealed value of every notification and declaration row not sealed with the
/// current key, each row at the version it was read.
pub async fn reseal_rows(store: &Arc<dyn Store>, vault: &PiiVault) -> DomainResult<RowReport> {
    let mut report = RowReport::default();
    for spec in &SEALED_ROWS {
        let mut after: Option<String> = None;
        loop {
            let rows = next_page(store, spec.table, &mut after).await?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let key = row.key.clone();
                let attempt = || async {
                    let Some(current) = store.get(spec.table, &key).await? else {
                        return Ok((Transaction::default(), 0));
                    };
                    let Some(sealed) = current.doc.get(spec.field).and_then(Value::as_str) else {
                        return Ok((Transaction::default(), 0));
                    };
                    if !vault.needs_reseal(sealed) {
                        return Ok((Transaction::default(), 0));
                    }
                    let binding = match spec.bound_to {
                        None => current.key.clone(),
                        Some(field) => current.doc[field].as_str().unwrap_or_default().to_string(),
                    };
                    let unreadable = |error: crate::crypto::CryptoError| {
                        DomainError::internal(anyhow::anyhow!("{}: {error}", current.key))
                    };
                    let plain = vault
                        .open(&binding, spec.kind, sealed)
                        .map_err(unreadable)?;
                    let mut doc = current.doc.clone();
                    doc[spec.field] = Value::String(
                        vault
                            .seal(&binding, spec.kind, &plain)
                            .map_err(unreadable)?,
                    );
                    let mut transaction = Transaction::default();
                    transaction.put(spec.table, &key, doc, Expect::Version(current.version));
                    Ok((transaction, 1))
                };
                match rewrite(store, &key, attempt).await? {
                    Some(rewritten) => report.rows_rewritten += rewritten,
                    None => report.unreadable.push(key),
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::crypto::{BlindIndex, PiiCipher};
    use crate::storage::redb_store::RedbStore;

    fn vault(current: u8, retired: &[u8]) -> PiiVault {
        let retired: Vec<[u8; 32]> = retired.iter().map(|k| [*k; 32]).collect();
        PiiVault::new(
            PiiCipher::with_retired(&[current; 32], &retired),
            BlindIndex::new(&[9u8; 32]),
        )
    }

    #[tokio::test]
    async fn notification_and_declaration_rows_are_resealed_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.path().join("store.redb")).expect("store"));
        let old = vault(1, &[]);
        let mut seed = Transaction::default();
        seed.put(
            Table::Notification,
            "n1",
            json!({"id": "n1", "sealed": old.seal("n1", "notification", "{\"to\":\"a@b.c\"}").expect("seal")}),
            Expect::Absent,
        );
        seed.put(
            Table::UserDeclarations,
            "u1\u{1f}o1\u{1f}default",
            json!({"userId": "u1", "info": old.seal("u1", "declarations.info", "{}").expect("seal")}),
            Expect::Absent,
        );
        store.commit(seed).await.expect("seed");
        let report = reseal_rows(&store, &vault(2, &[1])).await.expect("reseal");
        assert_eq!(
            report,
            RowReport {
                rows_rewritten: 2,
                unreadable: vec![]
            }
        );
        let fresh = vault(2, &[]);
        let message = store
            .get(Table::Notification, "n1")
            .await
            .expect("get")
            .expect("row");
        assert_eq!(
            fresh
                .open(
                    "n1",
                    "notification",
                    message.doc["sealed"].as_str().expect("sealed")
                )
                .expect("opens with the new key"),
            "{\"to\":\"a@b.c\"}"
        );
        let declared = store
            .get(Table::UserDeclarations, "u1\u{1f}o1\u{1f}default")
            .await
            .expect("get")
            .expect("row");
        assert_eq!(
            fresh
                .open(
                    "u1",
                    "declarations.info",
                    declared.doc["info"].as_str().expect("info")
                )
                .expect("opens with the new key"),
            "{}"
        );
        let again = reseal_rows(&store, &vault(2, &[1])).await.expect("reseal");
        assert_eq!(again.rows_rewritten, 0);
    }

    #[tokio::test]
    async fn every_stale_value_is_resealed_under_the_current_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.path().join("store.redb")).expect("store"));
        let old = vault(1, &[]);
        let seal = |id: &str, kind: &str, value: &str| old.seal(id, kind, value).expect("seal");
        let mut seed = Transaction::default();
        seed.put(
            Table::User,
            "u1",
            json!({"id": "u1", "email": seal("u1", "email", "a@b.c"), "phone": seal("u1", "phone", "9876543210"), "userName": seal("u1", "userName", "asha"), "loginId": seal("u1", "userName", "asha"), "prevUsedEmail": ""}),
            Expect::Absent,
        );
        seed.put(
            Table::User,
            "u2",
            json!({"id": "u2", "firstName": "No PII"}),
            Expect::Absent,
        );
        store.commit(seed).await.expect("seed");

        let rotated = vault(2, &[1]);
        let report = reseal_all(&store, &rotated).await.expect("reseal");
        assert_eq!(
            report,
            ResealReport {
                users_scanned: 2,
                users_rewritten: 1,
                values_resealed: 4,
                unreadable: vec![],
            }
        );
        // Readable with the new key alone: the old key can be dropped.
        let fresh = vault(2, &[]);
        let row = store
            .get(Table::User, "u1")
            .await
            .expect("get")
            .expect("row");
        assert_eq!(row.version, 2);
        let open = |field: &str, kind: &str| {
            fresh
                .open("u1", kind, row.doc[field].as_str().expect("sealed"))
                .expect("opens with the new key")
        };
        assert_eq!(open("email", "email"), "a@b.c");
        assert_eq!(open("phone", "phone"), "9876543210");
        assert_eq!(open("loginId", "userName"), "asha");
        assert_eq!(row.doc["prevUsedEmail"], "");
        // A second run finds nothing to do.
        let again = reseal_all(&store, &rotated).await.expect("reseal");
        assert_eq!((again.users_rewritten, again.values_resealed), (0, 0));
        // Without the old key, stale values are reported, not lost.
        let mut stale = Transaction::default();
        stale.put(
            Table::User,
            "u3",
            json!({"id": "u3", "email": seal("u3", "email", "c@d.e")}),
            Expect::Absent,
        );
        store.commit(stale).await.expect("stale");
        let report = reseal_all(&store, &fresh).await.expect("reseal");
        assert_eq!(report.unreadable, vec!["u3".to_string()]);
        let row = store
            .get(Table::User, "u3")
            .await
            .expect("get")
            .expect("row");
        assert_eq!(row.version, 1, "an unreadable row is left as it is");
    }

    #[tokio::test]
    async fn external_ids_from_before_sealing_are_sealed_and_their_claims_moved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.path().join("store.redb")).expect("store"));
        let old = vault(1, &[]);
        let retired_entry = seal_external_id(
            &old,
            "u1",
            &ExternalId {
                id: "KA-77".into(),
                id_type: "staff".into(),
                provider: "board".into(),
            },
        )
        .expect("seal");
        let mut seed = Transaction::default();
        seed.put(
            Table::User,
            "u1",
            json!({"id": "u1", "externalIds": [
                {"id": "AADHAAR-1234", "idType": "national", "provider": "Board"},
                retired_entry,
            ]}),
            Expect::Absent,
        );
        let clear_claim = "aadhaar-1234@national@board";
        seed.claim(ClaimKind::ExternalId, clear_claim, "u1");
        seed.claim(ClaimKind::ExternalId, retired_entry.claim(), "u1");
        store.commit(seed).await.expect("seed");

        let rotated = vault(2, &[1]);
        let report = reseal_all(&store, &rotated).await.expect("reseal");
        assert_eq!((report.users_rewritten, report.values_resealed), (1, 2));
        let row = store
            .get(Table::User, "u1")
            .await
            .expect("get")
            .expect("row");
        assert!(!row.doc.to_string().contains("AADHAAR"), "{}", row.doc);
        let fresh = vault(2, &[]);
        let entries: Vec<SealedExternalId> =
            serde_json::from_value(row.doc["externalIds"].clone()).expect("entries");
        let opened: Vec<String> = entries
            .iter()
            .map(|entry| open_external_id(&fresh, "u1", entry).expect("opens").id)
            .collect();
        assert_eq!(opened, vec!["AADHAAR-1234", "KA-77"]);
        // The clear claim is gone, the token claims it; the other claim did not move.
        assert_eq!(
            store
                .claim_owner(ClaimKind::ExternalId, clear_claim)
                .await
                .expect("owner"),
            None
        );
        for entry in &entries {
            assert_eq!(
                store
                    .claim_owner(ClaimKind::ExternalId, &entry.claim_token)
                    .await
                    .expect("owner")
                    .as_deref(),
                Some("u1")
            );
        }
        assert_eq!(entries[1].claim_token, retired_entry.claim_token);
    }

    #[tokio::test]
    async fn a_phone_token_of_the_national_form_is_recomputed_and_its_claim_moved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.path().join("store.redb")).expect("store"));
        let keys = vault(1, &[]);
        let national = keys.token("phone", "9876543210");
        let international = keys.token("phone", "+919876543210");
        let mut seed = Transaction::default();
        seed.put(
            Table::User,
            "u1",
            json!({"id": "u1", "phone": keys.seal("u1", "phone", "9876543210").expect("seal"),
                   "countryCode": "+91", "piiTokens": {"phone": national}}),
            Expect::Absent,
        );
        seed.claim(ClaimKind::Phone, national.as_str(), "u1");
        store.commit(seed).await.expect("seed");

        let report = reseal_all(&store, &keys).await.expect("reseal");
        assert_eq!((report.users_rewritten, report.values_resealed), (1, 1));
        let row = store
            .get(Table::User, "u1")
            .await
            .expect("get")
            .expect("row");
        assert_eq!(row.doc["piiTokens"]["phone"], international.as_str());
        let owner = |token: String| {
            let store = Arc::clone(&store);
            async move {
                store
                    .claim_owner(ClaimKind::Phone, &token)
                    .await
                    .expect("owner")
            }
        };
        assert_eq!(owner(national).await, None);
        assert_eq!(owner(international).await.as_deref(), Some("u1"));
        let again = reseal_all(&store, &keys).await.expect("reseal");
        assert_eq!(again.users_rewritten, 0, "nothing left to do");
    }
}
