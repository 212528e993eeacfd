//! Password reset without Keycloak: `/private/user/v1/password/reset` makes a set-password
//! link (and sends it when asked), and the link opens a small HTML page served by userorg
//! (`http::reset`) whose form sets the password and ends the user's sessions.
//!
//! A link is `{base}/password/reset/{id}.{expiresMs}.{mac}`: the MAC (HMAC-SHA256 under the
//! blind-index key) makes a changed id or expiry fail before anything is read, and the
//! `reset_link` row makes it single use, spent in the same transaction that sets the password.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::actors::user_owner::{SignInCommand, SignInReply};
use crate::clock::Clock;
use crate::crypto::PiiVault;
use crate::domain::notification::Channel;
use crate::domain::user::UserRecord;
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::notify::templates::{
    RESET_LINK_EMAIL_TEMPLATE, RESET_LINK_SMS_TEMPLATE, WELCOME_EMAIL_TEMPLATE,
    WELCOME_SMS_TEMPLATE,
};
use crate::services::access::{Authority, Caller};
use crate::services::json::{Body, opt_nonblank, required_str};
use crate::services::notifications::{NotificationService, stored_address};
use crate::services::users::UserService;
use crate::storage::records::user;
use crate::storage::{Expect, Store, Table, Transaction};

const MAC_KIND: &str = "reset-link";

#[derive(Debug, Clone)]
pub struct ResetOptions {
    /// Where the public listener is reached (`[signin] public_base_url`).
    pub public_base_url: String,
    pub link_ttl_ms: i64,
    /// For phones stored without a country code.
    pub default_country_code: String,
}

#[derive(Clone)]
pub struct ResetService {
    store: Arc<dyn Store>,
    users: UserService,
    notifications: NotificationService,
    vault: PiiVault,
    clock: Arc<dyn Clock>,
    options: ResetOptions,
}

/// A link that checks out: its id and user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveLink {
    pub id: String,
    pub user_id: String,
}

/// What the form's submission came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetOutcome {
    Done,
    /// The password policy refused it: the form again, with the policy.
    Refused,
    /// Unknown, tampered, expired or used.
    InvalidLink,
}

impl ResetService {
    pub fn new(
        store: Arc<dyn Store>,
        users: UserService,
        notifications: NotificationService,
        vault: PiiVault,
        clock: Arc<dyn Clock>,
        options: ResetOptions,
    ) -> Self {
        ResetService {
            store,
            users,
            notifications,
            vault,
            clock,
            options,
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    fn mac(&self, id: &str, expires_ms: i64) -> String {
        self.vault.token(MAC_KIND, &format!("{id}.{expires_ms}"))
    }

    /// The link row and the URL of a new link for `user_id`, added to `transaction`.
    pub fn new_link(&self, transaction: &mut Transaction, user_id: &str) -> DomainResult<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let expires_ms = self.now_ms() + self.options.link_ttl_ms;
        transaction.put(
            Table::ResetLink,
            &id,
            json!({"userId": user_id, "expiresMs": expires_ms}),
            Expect::Absent,
        );
        Ok(format!(
            "{}/password/reset/{id}.{expires_ms}.{}",
            self.options.public_base_url.trim_end_matches('/'),
            self.mac(&id, expires_ms)
        ))
    }

    /// A new link for `user`, and its message to `address` by `channel` (the tenant's
    /// set-password template), added to `transaction`. Answers the link.
    pub async fn send_link(
        &self,
        transaction: &mut Transaction,
        user: &UserRecord,
        channel: Channel,
        address: &str,
        source: &str,
    ) -> DomainResult<String> {
        let first_name = user.first_name.clone().unwrap_or_default();
        self.send_link_to(
            transaction,
            LinkFor {
                user_id: &user.id,
                first_name: &first_name,
                root_org_id: &user.root_org_id,
                welcome: false,
            },
            channel,
            address,
            source,
        )
        .await
    }

    /// [`Self::send_link`] for a user written in the same transaction (a bulk-created user's
    /// welcome), named by its parts.
    pub async fn send_link_to(
        &self,
        transaction: &mut Transaction,
        user: LinkFor<'_>,
        channel: Channel,
        address: &str,
        source: &str,
    ) -> DomainResult<String> {
        let name = match (channel, user.welcome) {
            (Channel::Email, false) => RESET_LINK_EMAIL_TEMPLATE,
            (Channel::Sms, false) => RESET_LINK_SMS_TEMPLATE,
            (Channel::Email, true) => WELCOME_EMAIL_TEMPLATE,
            (Channel::Sms, true) => WELCOME_SMS_TEMPLATE,
        };
        let template = self
            .notifications
            .template(name, Some(user.root_org_id))
            .await?
            .ok_or_else(|| DomainError::internal(anyhow::anyhow!("template {name} is missing")))?;
        let link = self.new_link(transaction, user.user_id)?;
        let vars = json!({
            "name": user.first_name,
            "link": link,
            "linkExpiryInHours": self.link_hours(),
            "installationName": self.notifications.options().installation_name,
        });
        self.notifications
            .queue(transaction, channel, source, &template, &vars, address)?;
        Ok(link)
    }

    /// Hours a new link lasts, as the messages say.
    pub fn link_hours(&self) -> i64 {
        (self.options.link_ttl_ms / 3_600_000).max(1)
    }

    /// `POST /private/user/v1/password/reset`: `{userId, type?}`. Answers the link; with
    /// `type` `email` or `phone`, also sends it to the user's stored contact of that type.
    pub async fn create(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let authority = Authority::of(caller).await?;
        authority.require(authority.is_admin())?;
        let user_id = required_str(body, "userId")?;
        let found = user(&self.store, &user_id)
            .await?
            .filter(|found| found.record.is_active())
            .ok_or_else(|| DomainError::not_found("user"))?;
        let record = found.record;
        let channel = match opt_nonblank(body, "type")?.as_deref() {
            None => None,
            Some("email") => Some(Channel::Email),
            Some("phone") => Some(Channel::Sms),
            Some(other) => {
                return Err(DomainError::rule(
                    ErrorCode::invalidParameterValue,
                    &[other, "type"],
                ));
            }
        };
        let mut transaction = Transaction::default();
        let link = match channel {
            None => self.new_link(&mut transaction, &user_id)?,
            Some(channel) => {
                let (sealed, kind) = match channel {
                    Channel::Email => (record.email.as_deref(), "email"),
                    Channel::Sms => (record.phone.as_deref(), "phone"),
                };
                let address = stored_address(
                    &self.vault,
                    &user_id,
                    &record,
                    sealed,
                    channel,
                    &self.options.default_country_code,
                )
                .ok_or_else(|| DomainError::rule(ErrorCode::invalidParameter, &[kind]))?;
                self.send_link(
                    &mut transaction,
                    &record,
                    channel,
                    &address,
                    "reset-password",
                )
                .await?
            }
        };
        self.store.commit(transaction).await?;
        let mut result = Map::new();
        result.insert("response".into(), json!("SUCCESS"));
        result.insert("link".into(), json!(link));
        Ok(result)
    }

    /// The link of `token`, if its MAC holds, it has not expired and it was not used.
    pub async fn check(&self, token: &str) -> DomainResult<Option<LiveLink>> {
        let mut parts = token.splitn(3, '.');
        let (Some(id), Some(expires), Some(mac)) = (parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        let Ok(expires_ms) = expires.parse::<i64>() else {
            return Ok(None);
        };
        let expected = self.mac(id, expires_ms);
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) || expires_ms <= self.now_ms() {
            return Ok(None);
        }
        let Some(row) = self.store.get(Table::ResetLink, id).await? else {
            return Ok(None);
        };
        let user_id = row
            .doc
            .get("userId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(Some(LiveLink {
            id: id.to_string(),
            user_id,
        }))
    }

    /// The form's submission: the new password set, the sessions ended and the link spent,
    /// all at once.
    pub async fn submit(&self, token: &str, password: &str) -> DomainResult<ResetOutcome> {
        let Some(link) = self.check(token).await? else {
            return Ok(ResetOutcome::InvalidLink);
        };
        let Some(hash) = self.users.hash_new_password(password).await? else {
            return Ok(ResetOutcome::Refused);
        };
        let reply = self
            .users
            .owners()
            .sign_in(
                &link.user_id,
                SignInCommand::SetPassword {
                    hash,
                    link: Some(link.id),
                },
            )
            .await?;
        Ok(match reply {
            SignInReply::Ended(true) => ResetOutcome::Done,
            _ => ResetOutcome::InvalidLink,
        })
    }
}

/// Whom a set-password link is for.
pub struct LinkFor<'a> {
    pub user_id: &'a str,
    pub first_name: &'a str,
    /// The tenant whose template is used.
    pub root_org_id: &'a str,
    /// A new account's welcome (`welcome`, `welcomeSmsTemplate`) rather than a set-password
    /// message.
    pub welcome: bool,
}
