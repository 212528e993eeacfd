//! User feed (reference §1.9, §8.13): the five feed routes, stored natively in `user_feed`
//! (`userId␟feedId`) where Sunbird proxies them to its notification service. A feed belongs to
//! its user: the user, their managing parent, an ORG_ADMIN of their tenant, an ADMIN and other
//! services may read and change it.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::clock::{Clock, sunbird_timestamp};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::services::access::{Authority, Caller};
use crate::services::json::{Body, opt_nonblank, required_str, success};
use crate::storage::records::user;
use crate::storage::{Expect, Store, Table, Transaction, compose_key, key_prefix};

/// Most feed entries one read lists, newest first.
const MAX_FEED: usize = 1_000;
const STATUSES: [&str; 2] = ["read", "unread"];

#[derive(Clone)]
pub struct FeedService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl FeedService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        FeedService { store, clock }
    }

    /// The user must exist and the caller be allowed to act on them.
    async fn authorise(&self, caller: &Caller, user_id: &str) -> DomainResult<()> {
        let authority = Authority::of(caller).await?;
        let Some(found) = user(&self.store, user_id).await? else {
            authority.require(authority.is_admin())?;
            return Err(DomainError::not_found("user"));
        };
        let record = found.record;
        authority.require(authority.may_act_on_user(
            user_id,
            record.managed_by.as_deref(),
            &record.root_org_id,
        ))
    }

    /// `GET /v1/user/feed/{userId}`: `{response: {userFeed: [...]}}`, newest first.
    pub async fn read(&self, caller: &Caller, user_id: &str) -> DomainResult<Map<String, Value>> {
        self.authorise(caller, user_id).await?;
        let rows = self
            .store
            .scan(Table::UserFeed, &key_prefix(user_id), None, MAX_FEED)
            .await?;
        let mut feed: Vec<Value> = rows.into_iter().map(|row| row.doc).collect();
        feed.sort_by(|a, b| b["createdOnMs"].as_i64().cmp(&a["createdOnMs"].as_i64()));
        for entry in &mut feed {
            if let Some(map) = entry.as_object_mut() {
                map.remove("createdOnMs");
            }
        }
        let mut result = Map::new();
        result.insert("response".into(), json!({"userFeed": feed}));
        Ok(result)
    }

    /// `POST /v1/user/feed/create` and `/private/user/feed/v1/create`:
    /// `{userId, category, priority, data}`.
    pub async fn create(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let user_id = required_str(body, "userId")?;
        let category = required_str(body, "category")?;
        let priority = match body.get("priority") {
            None | Some(Value::Null) => return Err(DomainError::mandatory_missing("priority")),
            Some(Value::Number(number)) if number.as_i64().is_some() => number.as_i64(),
            Some(_) => return Err(DomainError::data_type("priority", "Integer")),
        };
        let data = match body.get("data") {
            None | Some(Value::Null) => json!({}),
            Some(Value::Object(map)) => Value::Object(map.clone()),
            Some(_) => return Err(DomainError::data_type("data", "Map")),
        };
        self.authorise(caller, &user_id).await?;
        let now = self.clock.now();
        // Time-ordered ids: a user's rows come in creation order.
        let id = uuid::Uuid::now_v7().to_string();
        let entry = json!({
            "id": id,
            "userId": user_id,
            "category": category,
            "priority": priority,
            "status": "unread",
            "data": data,
            "createdBy": caller.user_id().unwrap_or("system"),
            "createdOn": sunbird_timestamp(now),
            "updatedOn": Value::Null,
            "createdOnMs": now.timestamp_millis(),
        });
        let mut transaction = Transaction::default();
        transaction.put(
            Table::UserFeed,
            compose_key(&[&user_id, &id]),
            entry,
            Expect::Absent,
        );
        self.store.commit(transaction).await?;
        let mut result = success();
        result.insert("id".into(), json!(id));
        Ok(result)
    }

    /// The stored entry of `{userId, feedId}`, after the caller's right is checked.
    async fn entry(
        &self,
        caller: &Caller,
        body: &Body,
    ) -> DomainResult<(String, crate::storage::Row)> {
        let user_id = required_str(body, "userId")?;
        let feed_id = required_str(body, "feedId")?;
        self.authorise(caller, &user_id).await?;
        let key = compose_key(&[&user_id, &feed_id]);
        let row = self
            .store
            .get(Table::UserFeed, &key)
            .await?
            .ok_or_else(|| DomainError::not_found("feed"))?;
        Ok((key, row))
    }

    /// `PATCH /v1/user/feed/update`: `{userId, feedId, category?, status?}`.
    pub async fn update(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let status = opt_nonblank(body, "status")?;
        if let Some(status) = &status
            && !STATUSES.contains(&status.as_str())
        {
            return Err(DomainError::rule(
                ErrorCode::invalidParameterValue,
                &[status, "status"],
            ));
        }
        let category = opt_nonblank(body, "category")?;
        let (key, row) = self.entry(caller, body).await?;
        let mut doc = row.doc;
        if let Some(status) = status {
            doc["status"] = json!(status);
        }
        if let Some(category) = category {
            doc["category"] = json!(category);
        }
        doc["updatedOn"] = json!(sunbird_timestamp(self.clock.now()));
        let mut transaction = Transaction::default();
        transaction.put(Table::UserFeed, key, doc, Expect::Version(row.version));
        self.store.commit(transaction).await?;
        Ok(success())
    }

    /// `POST /v1/user/feed/delete`: `{userId, feedId, category?}`.
    pub async fn delete(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let (key, row) = self.entry(caller, body).await?;
        let mut transaction = Transaction::default();
        transaction.delete(Table::UserFeed, key, Expect::Version(row.version));
        self.store.commit(transaction).await?;
        Ok(success())
    }
}
