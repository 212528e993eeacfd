//! `/v1/notification/email` (and its private twin) and `/v2/notification`: recipients are
//! resolved (user ids and a user search to their opened emails or phones, plus the addresses
//! given), capped, rendered with the named template and queued: one sealed message per
//! recipient, committed with its outbox event, and delivered by the dispatcher
//! (`actors::dispatcher`). The answer comes once the messages are durably queued.
//!
//! Templates are read from the store (`email_template`): the tenant's own row
//! (`name␟tenantId`) first, then the installation's (`name`), then the built-in default.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::actors::dispatcher::{NewMessage, enqueue, find_template};
use crate::clock::Clock;
use crate::crypto::PiiVault;
use crate::domain::contact::{Email, Phone};
use crate::domain::notification::{Channel, Medium, OutgoingMessage};
use crate::domain::role::ORG_ADMIN;
use crate::domain::user::UserRecord;
use crate::domain::{DomainError, DomainResult, ErrorCode};
use crate::notify::templates::{self, MessageTemplate};
use crate::services::access::{Authority, Caller};
use crate::services::json::{Body, opt_nonblank, opt_str, opt_str_list, success};
use crate::services::users::UserService;
use crate::services::users::view::SearchVersion;
use crate::storage::records::user;
use crate::storage::{Store, Transaction};

/// `[notifications]` as the service uses it.
#[derive(Debug, Clone)]
pub struct NotificationOptions {
    pub max_recipients: usize,
    pub installation_name: String,
    pub message_id_domain: String,
    pub default_country_code: String,
}

struct Inner {
    store: Arc<dyn Store>,
    users: UserService,
    vault: PiiVault,
    clock: Arc<dyn Clock>,
    options: NotificationOptions,
}

#[derive(Clone)]
pub struct NotificationService {
    inner: Arc<Inner>,
}

/// One resolved recipient: the address and the name to greet.
struct Recipient {
    to: String,
    name: Option<String>,
}

impl NotificationService {
    pub fn new(
        store: Arc<dyn Store>,
        users: UserService,
        vault: PiiVault,
        clock: Arc<dyn Clock>,
        options: NotificationOptions,
    ) -> Self {
        NotificationService {
            inner: Arc::new(Inner {
                store,
                users,
                vault,
                clock,
                options,
            }),
        }
    }

    pub fn options(&self) -> &NotificationOptions {
        &self.inner.options
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now().timestamp_millis()
    }

    /// The template `name` for `tenant` ([`find_template`]).
    pub async fn template(
        &self,
        name: &str,
        tenant: Option<&str>,
    ) -> DomainResult<Option<MessageTemplate>> {
        find_template(&self.inner.store, name, tenant).await
    }

    /// Renders `template` with `vars` and adds the message for `to` to `transaction`.
    pub fn queue(
        &self,
        transaction: &mut Transaction,
        channel: Channel,
        source: &str,
        template: &MessageTemplate,
        vars: &Value,
        to: &str,
    ) -> DomainResult<String> {
        let rendered = template.render(vars).map_err(DomainError::internal)?;
        let message = OutgoingMessage {
            to: to.to_string(),
            subject: rendered.subject,
            body: rendered.body,
            html: rendered.html && channel == Channel::Email,
            sms_template_id: template.sms_template_id.clone(),
        };
        enqueue(
            transaction,
            &self.inner.vault,
            &self.inner.options.message_id_domain,
            NewMessage {
                channel: channel.into(),
                source,
                template: &template.name,
                message: &message,
            },
            self.now_ms(),
        )
    }

    /// Adds a call to another service to `transaction`: a JSON `POST` of `body` to `path`,
    /// made by the dispatcher once the transaction commits, with the messages' retries.
    pub fn queue_call(
        &self,
        transaction: &mut Transaction,
        source: &str,
        path: &str,
        body: &Value,
    ) -> DomainResult<String> {
        enqueue(
            transaction,
            &self.inner.vault,
            &self.inner.options.message_id_domain,
            NewMessage {
                channel: Medium::Call,
                source,
                template: "",
                message: &OutgoingMessage {
                    to: path.to_string(),
                    subject: String::new(),
                    body: body.to_string(),
                    html: false,
                    sms_template_id: None,
                },
            },
            self.now_ms(),
        )
    }

    /// Commits queued messages (they carry no version expectation: nothing to retry).
    pub async fn commit(&self, transaction: Transaction) -> DomainResult<()> {
        self.inner.store.commit(transaction).await?;
        Ok(())
    }

    /// `POST /v1/notification/email`.
    pub async fn send_email(
        &self,
        caller: &Caller,
        body: &Body,
    ) -> DomainResult<Map<String, Value>> {
        let authority = Authority::of(caller).await?;
        authority.require(authority.is_admin() || authority.roles.has(ORG_ADMIN))?;
        let channel = match opt_nonblank(body, "mode")?.as_deref() {
            None | Some("email") => Channel::Email,
            Some("sms") => Channel::Sms,
            Some(other) => {
                return Err(DomainError::rule(
                    ErrorCode::invalidParameterValue,
                    &[other, "mode"],
                ));
            }
        };
        let subject = opt_nonblank(body, "subject")?;
        if channel == Channel::Email && subject.is_none() {
            return Err(DomainError::mandatory_missing("subject"));
        }
        let text =
            opt_nonblank(body, "body")?.ok_or_else(|| DomainError::mandatory_missing("body"))?;
        let recipients = self.recipients(&authority, channel, body).await?;
        let limit = self.inner.options.max_recipients;
        if recipients.len() > limit {
            return Err(DomainError::rule(
                ErrorCode::emailNotSentRecipientsExceededMaxLimit,
                &[&limit.to_string()],
            ));
        }
        let template = match channel {
            Channel::Email => {
                let name = opt_nonblank(body, "emailTemplateType")?
                    .unwrap_or_else(|| templates::DEFAULT_EMAIL_TEMPLATE.to_string());
                let tenant = caller_tenant(caller);
                self.template(&name, tenant.as_deref())
                    .await?
                    .ok_or_else(|| {
                        DomainError::rule(
                            ErrorCode::invalidParameterValue,
                            &[&name, "emailTemplateType"],
                        )
                    })?
            }
            // An SMS is the body as given.
            Channel::Sms => MessageTemplate {
                name: "sms".into(),
                subject: String::new(),
                body: "{{ body }}".into(),
                html: false,
                sms_template_id: None,
            },
        };
        let installation = &self.inner.options.installation_name;
        let mut transaction = Transaction::default();
        for recipient in &recipients {
            let vars = json!({
                "subject": subject.clone().unwrap_or_default(),
                "body": text,
                "name": recipient.name.clone().unwrap_or_else(|| "User".into()),
                "orgName": opt_str(body, "orgName")?.unwrap_or_else(|| installation.clone()),
                "regards": opt_str(body, "regards")?.unwrap_or_else(|| "Regards,".into()),
                "fromEmail": opt_str(body, "fromEmail")?.unwrap_or_default(),
                "installationName": installation,
            });
            self.queue(
                &mut transaction,
                channel,
                "notification",
                &template,
                &vars,
                &recipient.to,
            )?;
        }
        self.commit(transaction).await?;
        Ok(success())
    }

    /// Every recipient of the request, each address once, in request order.
    async fn recipients(
        &self,
        authority: &Authority,
        channel: Channel,
        body: &Body,
    ) -> DomainResult<Vec<Recipient>> {
        let mut found: Vec<Recipient> = Vec::new();
        let add = |found: &mut Vec<Recipient>, recipient: Recipient| {
            if !found.iter().any(|known| known.to == recipient.to) {
                found.push(recipient);
            }
        };
        let country = &self.inner.options.default_country_code;
        let direct_field = match channel {
            Channel::Email => "recipientEmails",
            Channel::Sms => "recipientPhones",
        };
        for raw in opt_str_list(body, direct_field)?.unwrap_or_default() {
            let to = match channel {
                Channel::Email => Email::parse(&raw).map(|email| email.as_str().to_string()),
                Channel::Sms => Phone::parse(&raw, None, country)
                    .ok()
                    .map(|phone| phone.index_form())
                    .or_else(|| {
                        raw.trim()
                            .starts_with('+')
                            .then(|| Phone::index_form_of(&raw, country))
                    }),
            }
            .ok_or_else(|| {
                DomainError::rule(ErrorCode::invalidParameterValue, &[&raw, direct_field])
            })?;
            add(&mut found, Recipient { to, name: None });
        }
        let mut ids = opt_str_list(body, "recipientUserIds")?.unwrap_or_default();
        // More ids than the cap is refused before any is read.
        let limit = self.inner.options.max_recipients;
        if found.len() + ids.len() > limit {
            return Err(DomainError::rule(
                ErrorCode::emailNotSentRecipientsExceededMaxLimit,
                &[&limit.to_string()],
            ));
        }
        if let Some(query) = body.get("recipientSearchQuery") {
            ids.extend(self.search_ids(authority, query).await?);
        }
        for id in ids {
            let Some(found_user) = user(&self.inner.store, &id).await? else {
                return Err(DomainError::rule(
                    ErrorCode::invalidParameterValue,
                    &[&id, "recipientUserIds"],
                ));
            };
            let record = found_user.record;
            authority.require(authority.administers(&record.root_org_id))?;
            if record.is_deleted {
                continue;
            }
            let sealed = match channel {
                Channel::Email => record.email.as_deref(),
                Channel::Sms => record.phone.as_deref(),
            };
            if let Some(to) =
                stored_address(&self.inner.vault, &id, &record, sealed, channel, country)
            {
                add(
                    &mut found,
                    Recipient {
                        to,
                        name: record.first_name.clone(),
                    },
                );
            }
        }
        Ok(found)
    }

    /// The ids of the users a `recipientSearchQuery` finds, within the caller's search scope.
    async fn search_ids(&self, authority: &Authority, query: &Value) -> DomainResult<Vec<String>> {
        let Value::Object(query) = query else {
            return Err(DomainError::data_type("recipientSearchQuery", "Map"));
        };
        let mut request = query.clone();
        request.insert("fields".into(), json!(["id"]));
        request.insert("limit".into(), json!(self.inner.options.max_recipients + 1));
        request.insert("offset".into(), json!(0));
        let result = self
            .inner
            .users
            .search(&authority.caller, SearchVersion::V3, &request, &[])
            .await?;
        Ok(result
            .get("content")
            .and_then(Value::as_array)
            .map(|hits| {
                hits.iter()
                    .filter_map(|hit| hit.get("id").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `POST /v2/notification`: notification-service's request, accepted and queued:
    /// `{notifications: [{mode: email|phone|sms, ids: [...], config: {subject}, template:
    /// {data, params}}]}`. Its recipients are bare addresses, so only an ADMIN or a service
    /// may send them.
    pub async fn send_v2(&self, caller: &Caller, body: &Body) -> DomainResult<Map<String, Value>> {
        let authority = Authority::of(caller).await?;
        authority.require(authority.is_admin())?;
        let Some(Value::Array(notifications)) = body.get("notifications") else {
            return Err(DomainError::mandatory_missing("notifications"));
        };
        let mut transaction = Transaction::default();
        let mut count = 0usize;
        for notification in notifications {
            let Value::Object(notification) = notification else {
                return Err(DomainError::data_type("notifications", "List of Map"));
            };
            let channel = match opt_nonblank(notification, "mode")?.as_deref() {
                Some("email") => Channel::Email,
                Some("phone") | Some("sms") => Channel::Sms,
                Some(other) => {
                    return Err(DomainError::rule(
                        ErrorCode::invalidParameterValue,
                        &[other, "mode"],
                    ));
                }
                None => return Err(DomainError::mandatory_missing("mode")),
            };
            let ids = opt_str_list(notification, "ids")?.unwrap_or_default();
            if ids.is_empty() {
                return Err(DomainError::mandatory_missing("ids"));
            }
            let template = notification
                .get("template")
                .and_then(Value::as_object)
                .ok_or_else(|| DomainError::mandatory_missing("template"))?;
            let data = opt_nonblank(template, "data")?
                .ok_or_else(|| DomainError::mandatory_missing("template.data"))?;
            let params = template.get("params").cloned().unwrap_or(json!({}));
            let subject = notification
                .get("config")
                .and_then(|config| config.get("subject"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let message_template = MessageTemplate {
                name: "v2".into(),
                subject,
                body: data,
                html: channel == Channel::Email,
                sms_template_id: None,
            };
            for raw in ids {
                let to = match channel {
                    Channel::Email => Email::parse(&raw).map(|email| email.as_str().to_string()),
                    Channel::Sms => Some(Phone::index_form_of(
                        &raw,
                        &self.inner.options.default_country_code,
                    )),
                }
                .ok_or_else(|| {
                    DomainError::rule(ErrorCode::invalidParameterValue, &[&raw, "ids"])
                })?;
                count += 1;
                if count > self.inner.options.max_recipients {
                    return Err(DomainError::rule(
                        ErrorCode::emailNotSentRecipientsExceededMaxLimit,
                        &[&self.inner.options.max_recipients.to_string()],
                    ));
                }
                self.queue(
                    &mut transaction,
                    channel,
                    "notification",
                    &message_template,
                    &params,
                    &to,
                )
                .map_err(|_| {
                    DomainError::rule(
                        ErrorCode::invalidParameterValue,
                        &["template.data", "template"],
                    )
                })?;
            }
        }
        self.commit(transaction).await?;
        Ok(success())
    }
}

/// Where a message to a user goes: `sealed`, one of the user's sealed contact fields, opened
/// (an email, or a phone in international form with the user's country code, else
/// `default_country_code`). `None` when the field is empty or does not open.
pub fn stored_address(
    vault: &PiiVault,
    user_id: &str,
    record: &UserRecord,
    sealed: Option<&str>,
    channel: Channel,
    default_country_code: &str,
) -> Option<String> {
    let kind = match channel {
        Channel::Email => "email",
        Channel::Sms => "phone",
    };
    let plain = sealed
        .filter(|value| !value.is_empty())
        .and_then(|value| vault.open(user_id, kind, value).ok())?;
    Some(match channel {
        Channel::Email => plain,
        Channel::Sms => {
            let code = record
                .country_code
                .clone()
                .unwrap_or_else(|| format!("+{default_country_code}"));
            format!("+{}{plain}", code.trim_start_matches('+'))
        }
    })
}

/// The tenant whose templates a caller's messages use: a user's root organisation.
fn caller_tenant(caller: &Caller) -> Option<String> {
    match caller {
        Caller::User(principal) => Some(principal.user.root_org_id.clone()),
        _ => None,
    }
}
