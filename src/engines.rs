//! The engine resolver: builds the store, the search index and the cache named by the
//! configuration (`[store] engine`, `[search] engine`, `[cache] engine`), in the quickwit
//! "resolver" style. Adding an engine is one arm here plus its module and conformance run.

use std::sync::Arc;

use crate::blob::BlobStore;
use crate::blob::dir::DirBlobs;
use crate::blob::s3::{S3Blobs, S3Settings};
use crate::config::FileEngine;
use std::time::Duration;

use crate::cache::Cache;
use crate::cache::moka_cache::MokaCache;
use crate::cache::rate::{FallbackRateCounter, LocalRateCounter, RateCounter};
use crate::cache::redis_cache::RedisCache;
use crate::clock::SystemClock;
use crate::config::{CacheEngine, SearchEngine, Settings, StoreEngine};
use crate::config::{EmailEngine, SmsEngine, SmtpSecurityMode};
use crate::content::{
    CachedFrameworks, ContentOptions, FrameworkSource, HttpFrameworks, HttpServiceCaller,
    NoServiceCaller, ServiceCaller,
};
use crate::notify::email::{EmailSender, FileSender, SmtpOptions, SmtpSecurity, SmtpSender};
use crate::notify::redis_stream::RedisStreamSink;
use crate::notify::sms::{FileSmsSender, HttpSmsOptions, HttpSmsSender, SmsSender};
use crate::search::SearchIndex;
use crate::search::elasticsearch::{ElasticsearchIndex, ElasticsearchOptions};
use crate::search::tantivy_index::TantivyIndex;
use crate::storage::Store;
use crate::storage::cached::CachedStore;
use crate::storage::postgres_store::{PostgresOptions, PostgresStore};
use crate::storage::redb_store::RedbStore;
use crate::storage::scylla_store::{ScyllaOptions, ScyllaStore};

/// The engines of one instance.
pub struct Engines {
    /// The store behind the read-through cache: what request handling and owners use.
    pub store: Arc<dyn Store>,
    /// The same store without the cache. The indexer reads through this one: it is woken the
    /// moment a commit lands, before the committing side has invalidated the cache, and a
    /// document built from a stale cached row would stay stale in the index.
    pub uncached_store: Arc<dyn Store>,
    pub search: Arc<dyn SearchIndex>,
    /// Where rate limits are counted: in process, or on the Redis of the cache engine.
    pub rate_counter: Arc<dyn RateCounter>,
    /// Where email and SMS go (`[notifications]`).
    pub email: Arc<dyn EmailSender>,
    pub sms: Arc<dyn SmsSender>,
    /// Where uploaded files go (`[files]`).
    pub blobs: Arc<dyn BlobStore>,
    /// Where queued calls to the content service go (`[content] base_url`).
    pub calls: Arc<dyn ServiceCaller>,
    /// The framework read API (`[content]`), cached; `None` when there is none.
    pub frameworks: Option<Arc<dyn FrameworkSource>>,
}

pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    match settings.store.engine {
        StoreEngine::Redb => {
            let store = RedbStore::open(&settings.data_dir.join("store.redb"))
                .map_err(|e| anyhow::anyhow!("cannot open the store: {e}"))?;
            Ok(Arc::new(store))
        }
        StoreEngine::Postgres => {
            let store = PostgresStore::open(&postgres_options(settings))
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the PostgreSQL store: {e}"))?;
            Ok(Arc::new(store))
        }
        StoreEngine::Scylla => {
            let store = ScyllaStore::open(&scylla_options(settings), Arc::new(SystemClock))
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the Scylla store: {e}"))?;
            Ok(Arc::new(store))
        }
    }
}

fn scylla_options(settings: &Settings) -> ScyllaOptions {
    let scylla = &settings.store.scylla;
    let non_empty = |value: &str| (!value.is_empty()).then(|| value.to_string());
    ScyllaOptions {
        nodes: scylla.nodes.clone(),
        keyspace: scylla.keyspace.clone(),
        local_datacenter: scylla.local_datacenter.clone(),
        consistency: scylla.consistency.clone(),
        replication: scylla.replication.clone(),
        username: non_empty(&scylla.username),
        password: non_empty(&scylla.password),
        connect_timeout: Duration::from_millis(scylla.connect_timeout_ms),
        request_timeout: Duration::from_millis(scylla.request_timeout_ms),
    }
}

fn postgres_options(settings: &Settings) -> PostgresOptions {
    let postgres = &settings.store.postgres;
    PostgresOptions {
        url: postgres.url.clone(),
        schema: postgres.schema.clone(),
        pool_size: postgres.pool_size,
        connect_timeout: Duration::from_millis(postgres.connect_timeout_ms),
    }
}

/// `userorg schema apply`: creates what the configured store engine needs (idempotent, safe
/// while instances run) and answers a line per step for the operator.
pub async fn apply_schema(settings: &Settings) -> anyhow::Result<Vec<String>> {
    match settings.store.engine {
        StoreEngine::Redb => Ok(vec![
            "store engine redb: the embedded file makes its tables when it opens; nothing to apply"
                .to_string(),
        ]),
        StoreEngine::Postgres => {
            let options = postgres_options(settings);
            let statements = PostgresStore::apply_schema(&options)
                .await
                .map_err(|e| anyhow::anyhow!("cannot apply the PostgreSQL schema: {e}"))?;
            Ok(vec![format!(
                "store engine postgres: schema `{}` is at version {} ({} statements applied, each idempotent)",
                options.schema,
                crate::storage::postgres_store::SCHEMA_VERSION,
                statements.len()
            )])
        }
        StoreEngine::Scylla => {
            let options = scylla_options(settings);
            let statements = ScyllaStore::apply_schema(&options)
                .await
                .map_err(|e| anyhow::anyhow!("cannot apply the Scylla schema: {e}"))?;
            Ok(vec![format!(
                "store engine scylla: keyspace `{}` has every table of cql/schema.cql ({} statements applied, each idempotent)",
                options.keyspace,
                statements.len()
            )])
        }
    }
}

pub async fn open_search(settings: &Settings) -> anyhow::Result<Arc<dyn SearchIndex>> {
    match settings.search.engine {
        SearchEngine::Tantivy => {
            let index = TantivyIndex::open(&settings.data_dir.join("index"))
                .map_err(|e| anyhow::anyhow!("cannot open the search index: {e}"))?;
            Ok(Arc::new(index))
        }
        SearchEngine::Elasticsearch => {
            let index = ElasticsearchIndex::open(&elasticsearch_options(settings))
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the Elasticsearch index: {e}"))?;
            Ok(Arc::new(index))
        }
    }
}

fn elasticsearch_options(settings: &Settings) -> ElasticsearchOptions {
    let elasticsearch = &settings.search.elasticsearch;
    ElasticsearchOptions {
        url: elasticsearch.url.clone(),
        index_prefix: elasticsearch.index_prefix.clone(),
        timeout: Duration::from_millis(elasticsearch.timeout_ms),
        connect_timeout: Duration::from_millis(elasticsearch.connect_timeout_ms),
        write_attempts: elasticsearch.write_attempts,
        retry_pause: Duration::from_millis(100),
    }
}

/// The cache engine and the rate counter that goes with it: in process with moka; on Redis,
/// with an in-process fallback while Redis does not answer.
pub async fn open_cache(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn Cache>, Arc<dyn RateCounter>)> {
    match settings.cache.engine {
        CacheEngine::Moka => Ok((
            Arc::new(MokaCache::new(settings.cache.max_entries)),
            Arc::new(LocalRateCounter::new()),
        )),
        CacheEngine::Redis => {
            let redis = RedisCache::connect_with(
                &settings.cache.redis_url,
                &settings.cache.redis_key_prefix,
                redis_ca(settings)?,
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to `cache.redis_url`: {e}"))?;
            let counter = FallbackRateCounter::new(Arc::new(redis.rate_counter()));
            Ok((Arc::new(redis), Arc::new(counter)))
        }
    }
}

/// The sink of `[events]`, when a stream is named: a Redis stream on the events' server or,
/// without one, the cache's.
pub async fn open_event_sink(
    settings: &Settings,
) -> anyhow::Result<Option<Arc<dyn crate::notify::EventSink>>> {
    let events = &settings.events;
    if events.redis_stream.is_empty() {
        return Ok(None);
    }
    let (url, ca) = if events.redis_url.is_empty() {
        (settings.cache.redis_url.as_str(), redis_ca(settings)?)
    } else {
        (events.redis_url.as_str(), None)
    };
    let sink = RedisStreamSink::connect(url, ca, &events.redis_stream, events.max_len)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot connect to the Redis of `events.redis_stream`: {e}")
        })?;
    Ok(Some(Arc::new(sink)))
}

fn redis_ca(settings: &Settings) -> anyhow::Result<Option<Vec<u8>>> {
    match settings.cache.redis_ca_file.as_str() {
        "" => Ok(None),
        path => std::fs::read(path)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("cannot read `cache.redis_ca_file` {path}: {e}")),
    }
}

/// Opens every engine of the configuration, the store behind its read-through cache.
pub async fn open(settings: &Settings) -> anyhow::Result<Engines> {
    std::fs::create_dir_all(&settings.data_dir)?;
    let uncached_store = open_store(settings).await?;
    open_around(settings, uncached_store).await
}

/// The other engines of the configuration around a store already open (tests run the
/// application on a store they built).
pub async fn open_around(
    settings: &Settings,
    uncached_store: Arc<dyn Store>,
) -> anyhow::Result<Engines> {
    std::fs::create_dir_all(&settings.data_dir)?;
    let (cache, rate_counter) = open_cache(settings).await?;
    let store: Arc<dyn Store> = Arc::new(
        CachedStore::new(
            Arc::clone(&uncached_store),
            cache,
            Duration::from_secs(settings.cache.ttl_seconds),
        )
        .with_access_ttl(Duration::from_secs(settings.cache.access_ttl_seconds)),
    );
    let search = open_search(settings).await?;
    let (email, sms) = open_senders(settings)?;
    let blobs = open_blobs(settings)?;
    let (calls, frameworks) = open_content(settings)?;
    Ok(Engines {
        store,
        uncached_store,
        search,
        rate_counter,
        email,
        sms,
        blobs,
        calls,
        frameworks,
    })
}

/// The caller of queued registrations, and the framework read API if there is one.
pub type ContentEngines = (Arc<dyn ServiceCaller>, Option<Arc<dyn FrameworkSource>>);

/// The content service engines of `[content]`: the caller of queued registrations, and the
/// framework read API behind its cache.
pub fn open_content(settings: &Settings) -> anyhow::Result<ContentEngines> {
    let content = &settings.content;
    let options = |base_url: &str| ContentOptions {
        base_url: base_url.to_string(),
        api_key: content.api_key.clone(),
        timeout: Duration::from_millis(content.timeout_ms.max(1)),
    };
    let calls: Arc<dyn ServiceCaller> =
        match content.base_url.trim() {
            "" => Arc::new(NoServiceCaller),
            url => Arc::new(HttpServiceCaller::new(&options(url)).map_err(|e| {
                anyhow::anyhow!("invalid configuration key `content.base_url`: {e}")
            })?),
        };
    let frameworks = match content.framework_url() {
        None => None,
        Some(url) => {
            let source = HttpFrameworks::new(&options(url)).map_err(|e| {
                anyhow::anyhow!("invalid configuration key `content.framework_base_url`: {e}")
            })?;
            Some(Arc::new(CachedFrameworks::new(
                source,
                Duration::from_secs(content.framework_cache_seconds.max(1)),
            )) as Arc<dyn FrameworkSource>)
        }
    };
    Ok((calls, frameworks))
}

/// The blob engine of `[files]`.
pub fn open_blobs(settings: &Settings) -> anyhow::Result<Arc<dyn BlobStore>> {
    let files = &settings.files;
    Ok(match files.engine {
        FileEngine::Dir => Arc::new(DirBlobs::new(
            settings.data_dir.join("files"),
            &settings.signin.public_base_url,
        )),
        FileEngine::S3 => Arc::new(S3Blobs::new(&S3Settings {
            endpoint: files.s3.endpoint.clone(),
            bucket: files.s3.bucket.clone(),
            region: files.s3.region.clone(),
            access_key_id: files.s3.access_key_id.clone(),
            secret_access_key: files.s3.secret_access_key.clone(),
            public_base_url: files.s3.public_base_url.clone(),
        })?),
    })
}

/// The email and SMS engines of `[notifications]`.
pub fn open_senders(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn EmailSender>, Arc<dyn SmsSender>)> {
    let notifications = &settings.notifications;
    let email: Arc<dyn EmailSender> = match notifications.email_engine {
        EmailEngine::File => Arc::new(
            FileSender::new(settings.data_dir.join("mail"))
                .map_err(|e| anyhow::anyhow!("cannot make the mail directory: {e}"))?,
        ),
        EmailEngine::Smtp => {
            let smtp = &notifications.smtp;
            Arc::new(
                SmtpSender::new(&SmtpOptions {
                    host: smtp.host.clone(),
                    port: smtp.port,
                    security: match smtp.security {
                        SmtpSecurityMode::Starttls => SmtpSecurity::StartTls,
                        SmtpSecurityMode::Tls => SmtpSecurity::Tls,
                        SmtpSecurityMode::None => SmtpSecurity::None,
                    },
                    username: smtp.username.clone(),
                    password: smtp.password.clone(),
                    timeout: Duration::from_millis(smtp.timeout_ms.max(1)),
                    pool_size: smtp.pool_size,
                })
                .map_err(|e| anyhow::anyhow!("invalid `notifications.smtp`: {e}"))?,
            )
        }
    };
    let sms_settings = &notifications.sms;
    let sms: Arc<dyn SmsSender> = match sms_settings.engine {
        SmsEngine::File => Arc::new(
            FileSmsSender::new(settings.data_dir.join("sms").join("sent.jsonl"))
                .map_err(|e| anyhow::anyhow!("cannot make the sms directory: {e}"))?,
        ),
        SmsEngine::Http => Arc::new(
            HttpSmsSender::new(HttpSmsOptions {
                url: sms_settings.url.clone(),
                auth_key: sms_settings.auth_key.clone(),
                sender: sms_settings.sender.clone(),
                route: sms_settings.route.clone(),
                timeout: Duration::from_millis(sms_settings.timeout_ms.max(1)),
            })
            .map_err(|e| anyhow::anyhow!("invalid `notifications.sms`: {e}"))?,
        ),
    };
    Ok((email, sms))
}
