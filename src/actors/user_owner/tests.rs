//! The pure builders of the user owners: from the current state and a command to the
//! transaction, checked write by write.

use serde_json::{Map, Value, json};

use super::contacts::open_external_id;
use super::create::build_create;
use super::roles::{build_role_assignment, plan_roles};
use super::status::{build_status_change, check_change};
use super::update::build_update;
use crate::crypto::{BlindIndex, PiiCipher, PiiVault};
use crate::domain::contact::{Email, Phone};
use crate::domain::membership::MembershipRecord;
use crate::domain::role::RoleGrant;
use crate::domain::user::{
    AssignRoles, CreateRequest, ExternalId, ExternalIdOperation, NewUser, RoleAssignment,
    ScopeChange, StatusChange, UpdateRequest, UserRecord, UserUpdate,
};
use crate::domain::{DomainError, Record};
use crate::storage::{Claim, ClaimKind, Expect, Table, Topic, Transaction, Versioned, Write};

const NOW: &str = "2026-12-01 10:00:00:000+0000";

fn vault() -> PiiVault {
    PiiVault::new(PiiCipher::new(&[7; 32]), BlindIndex::new(&[8; 32]))
}

fn email(raw: &str) -> Email {
    Email::parse(raw).expect("email")
}

fn phone(raw: &str) -> Phone {
    Phone::parse(raw, None, "91").expect("phone")
}

fn external(id: &str) -> ExternalId {
    ExternalId {
        id: id.into(),
        id_type: "staff".into(),
        provider: "Board".into(),
    }
}

fn create_request() -> CreateRequest {
    let mut profile = Map::new();
    profile.insert("firstName".into(), json!("ignored, the typed name wins"));
    profile.insert("framework".into(), json!({"board": ["CBSE"]}));
    CreateRequest {
        profile,
        first_name: "Asha".into(),
        last_name: Some("Rao".into()),
        email: Some(email("asha@example.org")),
        email_verified: true,
        phone: Some(phone("9876543210")),
        phone_verified: false,
        recovery_email: None,
        recovery_phone: None,
        username: None,
        password: None,
        dob: Some("1990-01-01".into()),
        channel: None,
        organisation_id: Some("school".into()),
        roles: vec!["BOOK_CREATOR".into()],
        external_ids: vec![external("E1")],
        managed_by: None,
    }
}

fn new_user() -> NewUser {
    NewUser {
        id: "u1".into(),
        request: create_request(),
        password_hash: Some("$argon2id$hash".into()),
        root_org_id: "tenant".into(),
        channel: "board".into(),
        association_type: 1,
        created_by: Some("admin".into()),
        flags_value: 4,
    }
}

fn puts(transaction: &Transaction, table: Table) -> Vec<(String, Value, Expect)> {
    transaction
        .writes
        .iter()
        .filter_map(|write| match write {
            Write::Put {
                table: t,
                key,
                doc,
                expect,
            } if *t == table => Some((key.clone(), doc.clone(), *expect)),
            _ => None,
        })
        .collect()
}

fn user_of(transaction: &Transaction) -> (UserRecord, Expect) {
    let (_, doc, expect) = puts(transaction, Table::User)
        .into_iter()
        .next()
        .expect("a user row");
    (UserRecord::from_doc(&doc).expect("a user record"), expect)
}

fn kinds(claims: &[Claim]) -> Vec<ClaimKind> {
    claims.iter().map(|c| c.kind).collect()
}

fn created() -> Versioned<UserRecord> {
    let transaction =
        build_create(&vault(), NOW, &new_user(), "asharao_ab12", None).expect("create");
    Versioned {
        key: "u1".into(),
        version: 3,
        record: user_of(&transaction).0,
    }
}

#[test]
fn a_create_seals_pii_claims_in_sunbird_order_and_writes_memberships_roles_and_the_event() {
    let vault = vault();
    let transaction = build_create(&vault, NOW, &new_user(), "asharao_ab12", None).expect("create");
    let (record, expect) = user_of(&transaction);
    assert_eq!(expect, Expect::Absent);
    assert_eq!(record.first_name.as_deref(), Some("Asha"));
    assert_eq!(record.profile["framework"], json!({"board": ["CBSE"]}));
    assert!(
        !record.profile.contains_key("firstName"),
        "profile never shadows a typed field"
    );
    let sealed = record.email.clone().expect("sealed email");
    assert!(!sealed.contains("asha@example.org"));
    assert_eq!(
        vault.open("u1", "email", &sealed).expect("opens"),
        "asha@example.org"
    );
    assert_eq!(record.masked_email.as_deref(), Some("as**@example.org"));
    assert_eq!(record.masked_phone.as_deref(), Some("******3210"));
    assert_eq!(
        record.pii_tokens["email"],
        vault.token("email", "asha@example.org")
    );
    assert_eq!(record.pii_tokens["userName"], record.pii_tokens["loginId"]);
    assert_eq!(
        (
            record.status,
            record.flags_value,
            record.root_org_id.as_str()
        ),
        (1, 4, "tenant")
    );
    assert_eq!(
        kinds(&transaction.claims),
        vec![
            ClaimKind::Phone,
            ClaimKind::Email,
            ClaimKind::Username,
            ClaimKind::ExternalId
        ]
    );
    // External ids are sealed like contacts: the claim is a token, the row keeps ciphertext
    // bound to the user and to the id's provider and type.
    assert_eq!(
        transaction.claims[3].value,
        vault.token("externalId", "e1@staff@board")
    );
    let stored = &record.external_ids[0];
    // Ciphertext, not the id (a substring test would fail on the odd base64 "E1").
    assert_ne!(stored.id, "E1", "{stored:?}");
    assert!(stored.id.len() > 16, "{stored:?}");
    assert_eq!(
        (stored.id_type.as_str(), stored.provider.as_str()),
        ("staff", "Board")
    );
    assert_eq!(stored.id_token, vault.token("externalIds.id", "e1"));
    assert_eq!(stored.claim_token, transaction.claims[3].value);
    assert_eq!(open_external_id(&vault, "u1", stored), Some(external("E1")));
    assert_eq!(open_external_id(&vault, "u2", stored), None, "another row");
    let mut moved = stored.clone();
    moved.id_type = "teacher".into();
    assert_eq!(open_external_id(&vault, "u1", &moved), None, "another slot");
    let memberships: Vec<String> = puts(&transaction, Table::UserOrganisation)
        .into_iter()
        .map(|(_, doc, _)| {
            MembershipRecord::from_doc(&doc)
                .expect("membership")
                .organisation_id
        })
        .collect();
    assert_eq!(
        memberships,
        vec!["school", "tenant"],
        "requested, then root"
    );
    let roles = puts(&transaction, Table::UserRoles);
    let grant = RoleGrant::from_doc(&roles[0].1).expect("grant");
    assert_eq!(
        (grant.role.as_str(), grant.organisations()),
        ("BOOK_CREATOR", vec!["tenant".to_string()])
    );
    assert_eq!(transaction.events.len(), 1);
    assert_eq!(
        (transaction.events[0].topic, transaction.events[0].version),
        (Topic::User, 1)
    );
    // The hash is kept apart from the (cached) user row.
    assert!(!record.to_doc().to_string().contains("argon2"));
    let credentials = puts(&transaction, Table::UserCredential);
    assert_eq!(credentials.len(), 1);
    assert_eq!(credentials[0].1["passwordHash"], "$argon2id$hash");
    assert_eq!(credentials[0].2, Expect::Absent);
}

#[test]
fn stored_records_round_trip_and_rows_of_the_old_token_name_still_load() {
    let record = created().record;
    assert_eq!(UserRecord::from_doc(&record.to_doc()), Some(record.clone()));
    let mut old = record.to_doc();
    let tokens = old
        .as_object_mut()
        .and_then(|doc| doc.remove("piiTokens"))
        .expect("tokens");
    old["_index"] = tokens;
    let loaded = UserRecord::from_doc(&old).expect("an old row loads");
    assert_eq!(loaded.pii_tokens, record.pii_tokens);
    assert!(!loaded.profile.contains_key("_index"));
}

fn update(request: impl FnOnce(&mut UpdateRequest)) -> UserUpdate {
    let mut update = UpdateRequest {
        user_id: "u1".into(),
        profile: Map::new(),
        email: None,
        email_verified: None,
        phone: None,
        phone_verified: None,
        recovery_email: None,
        recovery_phone: None,
        dob: None,
        organisation_id: None,
        external_ids: Vec::new(),
    };
    request(&mut update);
    UserUpdate {
        request: update,
        updated_by: Some("admin".into()),
    }
}

#[test]
fn an_update_moves_a_changed_contact_claim_and_keeps_an_unchanged_one() {
    let vault = vault();
    let current = created();
    let same = build_update(
        &vault,
        NOW,
        &current,
        &update(|r| r.email = Some(email("asha@example.org"))),
    )
    .expect("update");
    assert!(
        same.claims.is_empty() && same.releases.is_empty(),
        "same email: no claim moves"
    );

    let moved = build_update(
        &vault,
        NOW,
        &current,
        &update(|r| r.email = Some(email("new@example.org"))),
    )
    .expect("update");
    assert_eq!(
        moved.releases[0].value,
        vault.token("email", "asha@example.org")
    );
    assert_eq!(
        moved.claims[0].value,
        vault.token("email", "new@example.org")
    );
    let (record, expect) = user_of(&moved);
    assert_eq!(expect, Expect::Version(3), "written at the version read");
    assert_eq!(record.masked_email.as_deref(), Some("ne*@example.org"));
    assert_eq!(record.updated_by.as_deref(), Some("admin"));
    assert_eq!(moved.events[0].version, 4);
}

#[test]
fn a_managed_user_who_gains_a_contact_graduates() {
    let mut current = created();
    current.record.managed_by = Some("parent".into());
    let transaction = build_update(
        &vault(),
        NOW,
        &current,
        &update(|r| r.phone = Some(phone("9123456789"))),
    )
    .expect("update");
    assert_eq!(user_of(&transaction).0.managed_by, None);
}

#[test]
fn external_id_edits_release_the_old_claim_and_removals_free_it() {
    let current = created();
    let edited = build_update(
        &vault(),
        NOW,
        &current,
        &update(|r| r.external_ids = vec![(ExternalIdOperation::Edit, external("E2"))]),
    )
    .expect("edit");
    let keys = vault();
    let claim = |id: &str| keys.token("externalId", &format!("{id}@staff@board"));
    assert_eq!(edited.releases[0].value, claim("e1"));
    assert_eq!(edited.claims[0].value, claim("e2"));
    let opened: Vec<Option<ExternalId>> = user_of(&edited)
        .0
        .external_ids
        .iter()
        .map(|stored| open_external_id(&keys, "u1", stored))
        .collect();
    assert_eq!(opened, vec![Some(external("E2"))]);
    let removed = build_update(
        &vault(),
        NOW,
        &current,
        &update(|r| r.external_ids = vec![(ExternalIdOperation::Remove, external("E1"))]),
    )
    .expect("remove");
    assert_eq!(removed.releases[0].value, claim("e1"));
    assert!(removed.claims.is_empty());
    assert!(user_of(&removed).0.external_ids.is_empty());
}

#[test]
fn a_delete_frees_every_identifier_and_keeps_no_pii() {
    let current = created();
    let transaction =
        build_status_change(NOW, &current, StatusChange::Delete, Some("u1")).expect("delete");
    assert_eq!(
        transaction.releases.last().map(|claim| claim.value.clone()),
        Some(vault().token("externalId", "e1@staff@board")),
        "the external id's claim token is released"
    );
    let released = kinds(&transaction.releases);
    assert_eq!(
        released,
        vec![
            ClaimKind::Email,
            ClaimKind::Phone,
            ClaimKind::Username,
            ClaimKind::ExternalId
        ]
    );
    let (record, expect) = user_of(&transaction);
    assert_eq!(expect, Expect::Version(3));
    assert!(record.is_deleted() && !record.is_active());
    assert_eq!(record.email.as_deref(), Some(""));
    assert_eq!(record.first_name.as_deref(), Some(""));
    assert!(record.pii_tokens.is_empty());
    assert!(
        transaction.writes.iter().any(|write| matches!(
            write,
            Write::Delete { table: Table::UserCredential, key, .. } if key == "u1"
        )),
        "the password hash is deleted with the user"
    );
    assert!(record.external_ids.is_empty());
    assert_eq!(record.profile["profileLocation"], json!([]));
    let stored = record.to_doc().to_string();
    assert!(
        !stored.contains("v1.") && !stored.contains("argon2"),
        "{stored}"
    );
}

#[test]
fn status_changes_are_refused_as_sunbird_refuses_them() {
    let mut current = created();
    let message = |outcome: Result<(), DomainError>| match outcome {
        Err(DomainError::Rule(rule)) => rule.message,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        message(check_change(&current.record, StatusChange::Unblock)),
        "User is already active."
    );
    let blocked = build_status_change(NOW, &current, StatusChange::Block, None).expect("block");
    current.record = user_of(&blocked).0;
    assert_eq!(
        (current.record.status, current.record.is_blocked),
        (0, Some(true))
    );
    assert_eq!(
        message(check_change(&current.record, StatusChange::Block)),
        "User is already inactive."
    );
    current.record.is_deleted = true;
    assert_eq!(
        message(check_change(&current.record, StatusChange::Unblock)),
        "User is already deleted."
    );
}

fn grant(role: &str, organisations: &[&str], version: u64) -> Versioned<RoleGrant> {
    let organisations: Vec<String> = organisations.iter().map(|o| o.to_string()).collect();
    Versioned {
        key: format!("u1\u{1f}{role}"),
        version,
        record: RoleGrant::new("u1", role, &organisations, None, NOW),
    }
}

fn assignment(assignment: RoleAssignment, single_organisation: bool) -> AssignRoles {
    AssignRoles {
        user_id: "u1".into(),
        assignment,
        by: Some("admin".into()),
        single_organisation,
    }
}

#[test]
fn v1_assignment_is_the_complete_set_for_one_organisation() {
    let grants = vec![grant("A", &["o1", "o2"], 2), grant("B", &["o1"], 5)];
    let plan = plan_roles(
        &grants,
        &assignment(
            RoleAssignment::ReplaceForOrganisation {
                organisation_id: "o1".into(),
                roles: vec!["A".into(), "C".into()],
            },
            false,
        ),
    )
    .expect("plan");
    assert_eq!(plan["A"], vec!["o1", "o2"], "kept");
    assert!(plan["B"].is_empty(), "not in the set: removed from o1");
    assert_eq!(plan["C"], vec!["o1"], "added");
}

#[test]
fn v2_scopes_are_added_and_removed_and_a_single_organisation_is_enforced() {
    let grants = vec![grant("A", &["o1"], 1)];
    let change = |add, organisations: &[&str]| ScopeChange {
        role: "A".into(),
        add,
        organisations: organisations.iter().map(|o| o.to_string()).collect(),
    };
    let plan = plan_roles(
        &grants,
        &assignment(
            RoleAssignment::Scopes(vec![change(true, &["o2"]), change(false, &["o1"])]),
            false,
        ),
    )
    .expect("plan");
    assert_eq!(plan["A"], vec!["o2"]);
    let spanning = plan_roles(
        &grants,
        &assignment(RoleAssignment::Scopes(vec![change(true, &["o2"])]), true),
    );
    assert!(
        matches!(spanning, Err(DomainError::Rule(_))),
        "{spanning:?}"
    );
}

#[test]
fn an_assignment_writes_only_what_changed_at_the_stored_versions() {
    let grants = vec![
        grant("A", &["o1"], 2),
        grant("B", &["o1"], 5),
        grant("D", &["o9"], 1),
    ];
    let members = vec![Versioned {
        key: "u1\u{1f}o1".into(),
        version: 1,
        record: MembershipRecord::new("m1".into(), "u1", "o1", 1, NOW, None),
    }];
    let request = assignment(
        RoleAssignment::Scopes(vec![
            ScopeChange {
                role: "A".into(),
                add: true,
                organisations: vec!["o2".into()],
            },
            ScopeChange {
                role: "B".into(),
                add: false,
                organisations: vec!["o1".into()],
            },
            ScopeChange {
                role: "C".into(),
                add: true,
                organisations: vec!["o1".into()],
            },
        ]),
        false,
    );
    let plan = plan_roles(&grants, &request).expect("plan");
    let transaction =
        build_role_assignment(NOW, 7, &grants, &members, &plan, &request).expect("build");
    let roles = puts(&transaction, Table::UserRoles);
    let written: Vec<(&str, Expect)> = roles
        .iter()
        .map(|(key, _, expect)| (key.rsplit('\u{1f}').next().unwrap_or_default(), *expect))
        .collect();
    assert_eq!(
        written,
        vec![("A", Expect::Version(2)), ("C", Expect::Absent)],
        "D is untouched"
    );
    assert!(transaction.writes.iter().any(|write| matches!(
        write,
        Write::Delete { key, expect: Expect::Version(5), .. } if key.ends_with("B")
    )));
    let memberships: Vec<String> = puts(&transaction, Table::UserOrganisation)
        .into_iter()
        .map(|(_, doc, _)| {
            MembershipRecord::from_doc(&doc)
                .expect("membership")
                .organisation_id
        })
        .collect();
    assert_eq!(memberships, vec!["o2"], "a member of o1 already; o2 is new");
    assert_eq!(
        transaction.events[0].version, 7,
        "the user row is not rewritten"
    );
}
