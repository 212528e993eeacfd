//! Sunbird's content service, optional (`[content]`): the two things the original asks of it.
//!
//! - **Channel registration.** Every new tenant's channel is registered with
//!   `POST {base_url}/channel/v3/create`. The call is queued in the notification outbox in the
//!   tenant's own commit and made by the dispatcher through a [`ServiceCaller`], so it is
//!   retried with backoff, kept as a dead letter after its last attempt, listed and revived
//!   like any message (`userorg notifications list|retry`), and never holds the create back.
//! - **Frameworks.** A user's `framework` values are checked against the categories the
//!   framework read API answers (`GET {framework_base_url}/v1/framework/read/{id}`), through
//!   a [`FrameworkSource`]; [`CachedFrameworks`] keeps the frameworks it found for a while.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::framework::Framework;
pub use crate::notify::email::SendError;

/// The path of Sunbird's channel registration on the content service.
pub const CHANNEL_CREATE_PATH: &str = "/channel/v3/create";

/// One queued call: its message id and the `POST` it makes.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceCall {
    pub id: String,
    /// The path on the service, from `/`.
    pub path: String,
    pub body: Value,
}

/// Makes queued calls to another service. `Ok` once the service took the call; a
/// [`SendError::Transient`] failure is tried again later, a permanent one is not.
#[async_trait]
pub trait ServiceCaller: Send + Sync + 'static {
    async fn call(&self, call: &ServiceCall) -> Result<(), SendError>;
}

/// How the content service is reached.
#[derive(Clone)]
pub struct ContentOptions {
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>` when not empty (Sunbird's `ekstep_authorization`).
    pub api_key: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for ContentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentOptions")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()?)
}

fn base_url(raw: &str) -> anyhow::Result<reqwest::Url> {
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| anyhow::anyhow!("`{raw}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        anyhow::bail!("`{raw}` is not an http(s) base URL");
    }
    Ok(url)
}

/// `base` with `segments` appended to its path (each one percent-encoded).
fn join(base: &reqwest::Url, segments: &[&str]) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// The content service over HTTP(S), as Sunbird calls it: a JSON body, the bearer key, an
/// empty `user-id` header. A call is taken when the service answers 2xx with `OK` in the
/// body (Sunbird's test of the answer); 429, 5xx and an unreachable service are tried again.
pub struct HttpServiceCaller {
    client: reqwest::Client,
    base: reqwest::Url,
    api_key: String,
}

impl HttpServiceCaller {
    pub fn new(options: &ContentOptions) -> anyhow::Result<HttpServiceCaller> {
        Ok(HttpServiceCaller {
            client: client(options.timeout)?,
            base: base_url(&options.base_url)?,
            api_key: options.api_key.clone(),
        })
    }
}

#[async_trait]
impl ServiceCaller for HttpServiceCaller {
    async fn call(&self, call: &ServiceCall) -> Result<(), SendError> {
        let segments: Vec<&str> = call.path.split('/').filter(|s| !s.is_empty()).collect();
        let mut request = self
            .client
            .post(join(&self.base, &segments))
            .header("user-id", "")
            .json(&call.body);
        if !self.api_key.is_empty() {
            request = request.bearer_auth(&self.api_key);
        }
        let response = request.send().await.map_err(|error| {
            SendError::Transient(format!(
                "content service unreachable: {}",
                error.without_url()
            ))
        })?;
        let status = response.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(SendError::Transient(format!(
                "content service answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(SendError::Permanent(format!(
                "content service answered {status}"
            )));
        }
        let body = response.text().await.map_err(|error| {
            SendError::Transient(format!(
                "content service answer cut off: {}",
                error.without_url()
            ))
        })?;
        if body.contains("OK") {
            Ok(())
        } else {
            Err(SendError::Permanent(format!(
                "content service answered {status} without OK"
            )))
        }
    }
}

/// The caller of an installation without a content service: a call queued before the URL was
/// removed from the configuration cannot be made, and becomes a dead letter at once.
pub struct NoServiceCaller;

#[async_trait]
impl ServiceCaller for NoServiceCaller {
    async fn call(&self, _call: &ServiceCall) -> Result<(), SendError> {
        Err(SendError::Permanent(
            "no content service is configured (`content.base_url`)".into(),
        ))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The service could not answer (unreachable, 5xx, an answer that does not parse).
    #[error("content service unavailable: {0}")]
    Unavailable(String),
}

/// Where the categories of a framework come from.
#[async_trait]
pub trait FrameworkSource: Send + Sync + 'static {
    /// The framework `id`, or `None` when the source does not know it.
    async fn read(&self, id: &str) -> Result<Option<Arc<Framework>>, ContentError>;
}

/// The framework read API (`GET {base}/v1/framework/read/{id}`): 200 with a framework is
/// found, 404 or an answer without a framework is not.
pub struct HttpFrameworks {
    client: reqwest::Client,
    base: reqwest::Url,
    api_key: String,
}

impl HttpFrameworks {
    pub fn new(options: &ContentOptions) -> anyhow::Result<HttpFrameworks> {
        Ok(HttpFrameworks {
            client: client(options.timeout)?,
            base: base_url(&options.base_url)?,
            api_key: options.api_key.clone(),
        })
    }
}

#[async_trait]
impl FrameworkSource for HttpFrameworks {
    async fn read(&self, id: &str) -> Result<Option<Arc<Framework>>, ContentError> {
        let mut request = self
            .client
            .get(join(&self.base, &["v1", "framework", "read", id]));
        if !self.api_key.is_empty() {
            request = request.bearer_auth(&self.api_key);
        }
        let unavailable =
            |error: reqwest::Error| ContentError::Unavailable(error.without_url().to_string());
        let response = request.send().await.map_err(unavailable)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(ContentError::Unavailable(format!(
                "the framework read API answered {status}"
            )));
        }
        let answer: Value = response.json().await.map_err(unavailable)?;
        Ok(Framework::from_read_answer(&answer).map(Arc::new))
    }
}

/// Keeps the frameworks `inner` found for `ttl` (Sunbird caches framework categories in
/// process too); a framework it did not find is asked for again next time, so one created
/// meanwhile is usable at once.
pub struct CachedFrameworks<S> {
    inner: S,
    cache: moka::future::Cache<String, Arc<Framework>>,
}

impl<S: FrameworkSource> CachedFrameworks<S> {
    pub fn new(inner: S, ttl: Duration) -> CachedFrameworks<S> {
        CachedFrameworks {
            inner,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
        }
    }
}

#[async_trait]
impl<S: FrameworkSource> FrameworkSource for CachedFrameworks<S> {
    async fn read(&self, id: &str) -> Result<Option<Arc<Framework>>, ContentError> {
        if let Some(found) = self.cache.get(id).await {
            return Ok(Some(found));
        }
        let found = self.inner.read(id).await?;
        if let Some(framework) = &found {
            self.cache
                .insert(id.to_string(), Arc::clone(framework))
                .await;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests;
