//! Who is named in the audit trail, and entries for changes no owner makes. The chain itself
//! (entries, head, [`append`], [`verify`]) is `storage::audit`: owners append an entry inside
//! the transaction of the change it records, so the two commit together or not at all.

use std::sync::Arc;

use serde_json::Value;

use crate::clock::{Clock, sunbird_timestamp};
use crate::domain::DomainResult;
use crate::services::access::Caller;
pub use crate::storage::audit::{AuditNote, Verdict, append, verify};
use crate::storage::retry::{no_claims, read_modify_write};
use crate::storage::{Store, Transaction};

/// The name a caller has in the trail: the user id, `service` or `anonymous`.
pub fn actor_of(caller: &Caller) -> String {
    match caller {
        Caller::User(principal) => principal.id.clone(),
        Caller::Internal => "service".to_string(),
        Caller::Anonymous => "anonymous".to_string(),
    }
}

/// The note of `caller` doing `action` to `target`.
pub fn note(caller: &Caller, action: &str, target: &str, details: Value) -> AuditNote {
    AuditNote {
        actor: actor_of(caller),
        action: action.to_string(),
        target: target.to_string(),
        details,
    }
}

#[derive(Clone)]
pub struct AuditTrail {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl AuditTrail {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        AuditTrail { store, clock }
    }

    /// Appends an entry in a commit of its own, for an operation that has committed already.
    /// A crash between the two loses the entry: changes made by an owner append theirs in their
    /// own transaction instead ([`append`]).
    pub async fn record(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        details: Value,
    ) -> DomainResult<()> {
        let note = note(caller, action, target, details);
        let note = &note;
        read_modify_write(&*self.store, no_claims, || async move {
            let mut transaction = Transaction::default();
            let at = sunbird_timestamp(self.clock.now());
            append(&*self.store, &mut transaction, note, &at).await?;
            Ok((transaction, ()))
        })
        .await?;
        tracing::info!(audit.action = action, audit.target = target, "audited");
        Ok(())
    }

    /// Logs an audit failure instead of failing the request: the change has committed.
    pub async fn record_or_log(&self, caller: &Caller, action: &str, target: &str, details: Value) {
        if let Err(error) = self.record(caller, action, target, details).await {
            tracing::error!(audit.action = action, error = %error, "audit entry not written");
        }
    }
}
