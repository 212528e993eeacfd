//! Memberships: a user's place in an organisation (Sunbird's `user_organisation` table), with
//! how the user got there (the association bitmask).

use serde::{Deserialize, Serialize};

/// One `user_organisation` row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipRecord {
    pub id: String,
    pub user_id: String,
    pub organisation_id: String,
    pub hash_tag_id: String,
    pub org_join_date: Option<String>,
    #[serde(default)]
    pub org_left_date: Option<String>,
    #[serde(default)]
    pub is_deleted: bool,
    /// Sunbird `AssociationMechanism` bits: 1 SSO, 2 self-declaration, 4 system upload.
    #[serde(default)]
    pub association_type: i64,
    #[serde(default)]
    pub added_by: Option<String>,
}

impl MembershipRecord {
    /// A new, active membership.
    pub fn new(
        id: String,
        user_id: &str,
        organisation_id: &str,
        association_type: i64,
        now: &str,
        by: Option<&str>,
    ) -> MembershipRecord {
        MembershipRecord {
            id,
            user_id: user_id.to_string(),
            organisation_id: organisation_id.to_string(),
            hash_tag_id: organisation_id.to_string(),
            org_join_date: Some(now.to_string()),
            org_left_date: None,
            is_deleted: false,
            association_type,
            added_by: by.map(str::to_string),
        }
    }

    pub fn is_active(&self) -> bool {
        !self.is_deleted
    }
}

crate::domain::plain_record!(MembershipRecord);
