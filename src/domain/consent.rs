//! A user's consent to share their data with a consumer organisation, per object (Sunbird's
//! `user_consent` row, reference §8.13): the one shape the consent routes, tenant migration
//! and user deletion write.

use serde_json::{Value, json};

pub const ACTIVE: &str = "ACTIVE";
pub const DELETED: &str = "DELETED";
/// What a client may set (stored upper-cased).
pub const STATUSES: [&str; 3] = [ACTIVE, "REVOKED", DELETED];

/// The row of a consent given or changed at `now`. `created_on` is the first time it was
/// written (`now` for a new one); `categories` carries over what the row held.
pub struct ConsentRow<'a> {
    pub user_id: &'a str,
    pub consumer_id: &'a str,
    pub object_id: &'a str,
    pub consumer_type: &'a str,
    pub object_type: &'a str,
    pub status: &'a str,
    pub expiry: Value,
    pub categories: Value,
    pub created_on: Value,
    pub now: &'a str,
}

impl ConsentRow<'_> {
    pub fn to_doc(&self) -> Value {
        json!({
            "id": format!("usr-consent:{}:{}:{}", self.user_id, self.consumer_id, self.object_id),
            "userId": self.user_id,
            "consumerId": self.consumer_id,
            "objectId": self.object_id,
            "consumerType": self.consumer_type,
            "objectType": self.object_type,
            "status": self.status,
            "expiry": self.expiry,
            "categories": self.categories,
            "createdOn": self.created_on,
            "lastUpdatedOn": self.now,
        })
    }
}

/// A stored consent marked DELETED at `now` (a migration or the user's deletion voids it).
pub fn mark_deleted(doc: &mut Value, now: &str) {
    doc["status"] = json!(DELETED);
    doc["lastUpdatedOn"] = json!(now);
}
