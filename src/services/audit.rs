//! Who is named in the audit trail, and the entry of work that changes nothing in the store. The chain itself
//! (entries, head, [`append`], [`verify`]) is `storage::audit`: owners append an entry inside
//! the transaction of the change it records, so the two commit together or not at all.

use std::sync::Arc;

use serde_json::Value;

use crate::clock::{Clock, sunbird_timestamp};
use crate::domain::DomainResult;
use crate::services::access::Caller;
pub use crate::storage::audit::{AuditNote, Verdict, append, commit_with_entry, verify};
use crate::storage::{Store, Transaction};

/// The name a caller has in the trail: the user id, `service`, `consumer:<name>` or
/// `anonymous`.
fn actor_of(caller: &Caller) -> String {
    match caller {
        Caller::User(principal) => principal.id.clone(),
        Caller::Internal => "service".to_string(),
        Caller::Consumer(name) => format!("consumer:{name}"),
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

    /// Appends an entry in a commit of its own, for work that changes nothing in the store
    /// (data sync asks the index to rebuild). Changes to the store append theirs in their own
    /// transaction instead ([`append`], [`commit_with_entry`]).
    pub async fn record(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        details: Value,
    ) -> DomainResult<()> {
        let note = note(caller, action, target, details);
        let at = sunbird_timestamp(self.clock.now());
        commit_with_entry(&*self.store, Transaction::default(), &note, &at).await?;
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
