//! Managed (child) users (reference §8.3): the create routes, the list of a parent's children,
//! managed tokens (`withTokens=true`, presented back as `x-authenticated-for`), and
//! graduation, when an update gives a child an email or phone: the child becomes a normal user
//! and a set-password link is queued to the new contact in the update's own commit.
//!
//! The per-parent limit is held by the store: each child claims one of its parent's numbered
//! slots (`actors::user_owner`), so concurrent creates never pass it, on any instance.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::domain::notification::Channel;
use crate::domain::user::{UserRecord, managed_slot};
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::services::access::{Authority, Caller, CallerResolver};
use crate::services::json::{Body, response};
use crate::services::reset::ResetService;
use crate::services::users::UserService;
use crate::services::users::input::{CreateRoute, UpdateRoute, parse_update};
use crate::services::users::view::ReadVersion;
use crate::storage::records::user;
use crate::storage::{ClaimKind, Store, Transaction};

#[derive(Clone)]
pub struct ManagedUserService {
    store: Arc<dyn Store>,
    users: UserService,
    reset: ResetService,
    callers: CallerResolver,
    limit: usize,
    default_country_code: String,
}

/// What a user read asks for besides the id.
pub struct UserRead<'a> {
    /// `?provider=&idType=`: the id is an external id of that provider.
    pub external: Option<(&'a str, Option<&'a str>)>,
    pub version: ReadVersion,
    pub private: bool,
    pub fields: &'a [String],
    /// `?withTokens=true`.
    pub with_tokens: bool,
}

/// How the list of children is ordered (`sortBy`, `order`).
struct Sort {
    field: String,
    descending: bool,
}

impl ManagedUserService {
    pub fn new(
        store: Arc<dyn Store>,
        users: UserService,
        reset: ResetService,
        callers: CallerResolver,
        limit: usize,
        default_country_code: String,
    ) -> Self {
        ManagedUserService {
            store,
            users,
            reset,
            callers,
            limit,
            default_country_code,
        }
    }

    /// `/v4/user/create`, `/v1|v2/manageduser/create`: `{response: SUCCESS, userId}`.
    pub async fn create(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        self.users.create(caller, CreateRoute::Managed, body).await
    }

    /// A user update; a managed child given an email or phone graduates, and its set-password
    /// message is written with the update.
    pub async fn update(
        &self,
        caller: &Caller,
        route: UpdateRoute,
        body: &Body,
    ) -> DomainResult<Map<String, Value>> {
        let notice = self.graduation_notice(route, body).await?;
        self.users.update_with(caller, route, body, notice).await
    }

    /// The set-password link and its message to the new contact, when `body` gives a managed
    /// child an email (preferred) or a phone. A request that does not parse gets no notice:
    /// the update refuses it with its own error.
    async fn graduation_notice(
        &self,
        route: UpdateRoute,
        body: &Body,
    ) -> DomainResult<Option<Transaction>> {
        // Most updates give no contact: they cost no second parse and no read here.
        if !body.contains_key("email") && !body.contains_key("phone") {
            return Ok(None);
        }
        let Ok(request) = parse_update(body, route, &self.default_country_code) else {
            return Ok(None);
        };
        let Some(found) = user(&self.store, &request.user_id).await? else {
            return Ok(None);
        };
        let child = found.record;
        if child.managed_by.is_none() {
            return Ok(None);
        }
        let (channel, address) = match (&request.email, &request.phone) {
            (Some(email), _) => (Channel::Email, email.as_str().to_string()),
            (None, Some(phone)) => (Channel::Sms, phone.index_form()),
            (None, None) => return Ok(None),
        };
        let mut transaction = Transaction::default();
        self.reset
            .send_link(&mut transaction, &child, channel, &address, "graduation")
            .await?;
        Ok(Some(transaction))
    }

    /// `GET /v1/user/managed/{id}?withTokens=&sortBy=&order=`: the parent's live children,
    /// `{response: {content, count}}`, each with a `managedToken` when asked for. Read from the
    /// store (the parent's slots), so a child just created is listed at once.
    pub async fn list(
        &self,
        caller: &Caller,
        parent_id: &str,
        with_tokens: bool,
        sort_by: Option<&str>,
        order: Option<&str>,
    ) -> DomainResult<Map<String, Value>> {
        let authority = Authority::of(caller).await?;
        let is_parent = authority.caller.user_id() == Some(parent_id);
        authority.require(is_parent || authority.is_admin())?;
        // Only the parent itself gets tokens to act for its children, and not while it acts
        // for one of them.
        let acting_for_one = matches!(caller, Caller::User(p) if p.acting_for.is_some());
        authority.require(!with_tokens || (is_parent && !acting_for_one))?;
        let sort = parse_sort(sort_by, order)?;
        let mut content = Vec::new();
        for child in self.children(parent_id).await? {
            let mut view = self.users.child_view(&child).await?;
            if with_tokens {
                view.insert(
                    "managedToken".into(),
                    json!(self.managed_token(parent_id, &child.id)?),
                );
            }
            content.push(Value::Object(view));
        }
        if let Some(sort) = sort {
            content.sort_by(|a, b| {
                let ordering = compare(a.get(&sort.field), b.get(&sort.field));
                if sort.descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            });
        }
        Ok(response(
            json!({"content": content, "count": content.len()}),
        ))
    }

    /// The live children of `parent`, by their slots.
    async fn children(&self, parent: &str) -> DomainResult<Vec<UserRecord>> {
        let owners = futures::future::try_join_all((0..self.limit).map(|n| {
            let slot = managed_slot(parent, n);
            async move { self.store.claim_owner(ClaimKind::ManagedSlot, &slot).await }
        }))
        .await?;
        let mut children = Vec::new();
        for id in owners.into_iter().flatten() {
            if let Some(found) = user(&self.store, &id).await?
                && !found.record.is_deleted()
                && found.record.managed_by.as_deref() == Some(parent)
            {
                children.push(found.record);
            }
        }
        Ok(children)
    }

    fn managed_token(&self, parent: &str, child: &str) -> DomainResult<String> {
        let tokens = self.callers.managed_tokens().ok_or_else(|| {
            DomainError::internal(anyhow::anyhow!(
                "managed tokens need the local signing key ([auth] local_signer)"
            ))
        })?;
        tokens.mint(parent, child)
    }

    /// A user read; with `withTokens=true` the parent reading its child gets the child's
    /// `managedToken` too.
    pub async fn read(
        &self,
        caller: &Caller,
        raw_id: &str,
        read: UserRead<'_>,
    ) -> DomainResult<Map<String, Value>> {
        let mut result = self
            .users
            .read(
                caller,
                raw_id,
                read.external,
                read.version,
                read.private,
                read.fields,
            )
            .await?;
        let with_tokens = read.with_tokens;
        if !with_tokens {
            return Ok(result);
        }
        let Some(parent) = caller.user_id() else {
            return Ok(result);
        };
        if let Some(Value::Object(view)) = result.get_mut("response") {
            let child = view.get("id").and_then(Value::as_str).map(str::to_string);
            let managed_by_caller = view.get("managedBy").and_then(Value::as_str) == Some(parent);
            if let (Some(child), true) = (child, managed_by_caller) {
                view.insert(
                    "managedToken".into(),
                    json!(self.managed_token(parent, &child)?),
                );
            }
        }
        Ok(result)
    }
}

fn parse_sort(sort_by: Option<&str>, order: Option<&str>) -> DomainResult<Option<Sort>> {
    let Some(field) = sort_by.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    let descending = match order.map(|o| o.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("asc") => false,
        Some("desc") => true,
        Some(_) => {
            return Err(DomainError::rule(
                ErrorCode::invalidValue,
                &["order", order.unwrap_or_default(), "asc, desc"],
            ));
        }
    };
    Ok(Some(Sort {
        field: field.to_string(),
        descending,
    }))
}

/// Orders two field values: numbers by value, everything else by its text; a missing value
/// sorts last.
fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn present(v: Option<&Value>) -> Option<&Value> {
        v.filter(|v| !v.is_null())
    }
    match (present(a), present(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_values_sort_last_and_numbers_by_value() {
        let (two, ten) = (json!(2), json!(10));
        assert_eq!(compare(Some(&two), Some(&ten)), Ordering::Less);
        assert_eq!(compare(None, Some(&two)), Ordering::Greater);
        assert_eq!(compare(Some(&Value::Null), Some(&two)), Ordering::Greater);
        let (a, b) = (json!("Asha"), json!("Bala"));
        assert_eq!(compare(Some(&a), Some(&b)), Ordering::Less);
    }

    #[test]
    fn an_unknown_order_is_refused() {
        assert!(parse_sort(Some("firstName"), Some("sideways")).is_err());
        assert!(
            parse_sort(Some("firstName"), Some("DESC"))
                .expect("ok")
                .expect("sort")
                .descending
        );
        assert!(
            parse_sort(None, Some("sideways"))
                .expect("no sort")
                .is_none()
        );
    }
}
