//! The check of a user's `framework` on create and update, against the framework read API of
//! the content service when one is configured (`[content]`, cached), else against the
//! `frameworks` system setting (`{"<framework id>": {"<category>": ["<term>", ...]}}`) when it
//! exists. With neither, a framework is stored as given (the request rules still hold it to a
//! small map).

use std::sync::Arc;

use serde_json::Value;

use crate::content::{ContentError, FrameworkSource};
use crate::domain::framework::{Framework, no_framework_found, parse_request};
use crate::domain::{DomainError, DomainResult};
use crate::storage::Store;
use crate::storage::records::json_setting;

/// The system setting frameworks are checked against when no framework API is configured.
pub const FRAMEWORKS_SETTING: &str = "frameworks";

#[derive(Clone)]
pub struct FrameworkCheck {
    store: Arc<dyn Store>,
    api: Option<Arc<dyn FrameworkSource>>,
}

impl FrameworkCheck {
    pub fn new(store: Arc<dyn Store>, api: Option<Arc<dyn FrameworkSource>>) -> Self {
        FrameworkCheck { store, api }
    }

    /// Where frameworks come from now: the API, the setting's list, or nowhere (`None`).
    async fn catalogue(&self) -> DomainResult<Option<Catalogue<'_>>> {
        if let Some(api) = &self.api {
            return Ok(Some(Catalogue::Api(api.as_ref())));
        }
        Ok(json_setting(&self.store, FRAMEWORKS_SETTING)
            .await?
            .map(Catalogue::Setting))
    }

    /// `framework` as it is stored (every field a list), or Sunbird's refusal: `0030` / `0058`
    /// for the id, `0003` for a field that is not a list of strings, `0032` (404) for an
    /// unknown framework, `0051` for a field that is not one of its categories, `0017` for a
    /// value that is not one of a category's terms.
    pub async fn check(&self, framework: &Value) -> DomainResult<Value> {
        let Some(fields) = framework.as_object() else {
            return Ok(framework.clone());
        };
        let Some(catalogue) = self.catalogue().await? else {
            return Ok(framework.clone());
        };
        let Some(request) = parse_request(fields)? else {
            return Ok(framework.clone());
        };
        let found = catalogue
            .find(&request.id)
            .await?
            .ok_or_else(no_framework_found)?;
        request.check(&found)?;
        Ok(request.into_value())
    }
}

enum Catalogue<'a> {
    Api(&'a dyn FrameworkSource),
    /// The `frameworks` system setting.
    Setting(Value),
}

impl Catalogue<'_> {
    /// The framework `id`; `None` when it is unknown here, `Err` when the API cannot answer.
    async fn find(&self, id: &str) -> DomainResult<Option<Arc<Framework>>> {
        match self {
            Catalogue::Api(api) => api.read(id).await.map_err(|ContentError::Unavailable(reason)| {
                tracing::warn!(framework.id = %id, reason = %reason, "the framework read API cannot answer");
                DomainError::Unavailable("the framework read API".into())
            }),
            Catalogue::Setting(list) => match list.get(id) {
                None => Ok(None),
                Some(entry) => Framework::from_setting(entry)
                    .map(|framework| Some(Arc::new(framework)))
                    .ok_or_else(|| {
                        DomainError::internal(anyhow::anyhow!(
                            "the `{FRAMEWORKS_SETTING}` system setting's entry for {id} is not an object of term lists"
                        ))
                    }),
            },
        }
    }
}
