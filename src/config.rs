//! Typed settings, loaded in layers: the embedded `config/default.toml`, an optional file given
//! with `--config`, then `USERORG__SECTION__KEY` environment variables. The environment is passed
//! in as a map so tests never touch the process environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The defaults, compiled in so a bare `userorg serve` works from any directory.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../config/default.toml");

const ENV_PREFIX: &str = "USERORG";

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub security: SecuritySettings,
    pub users: UserSettings,
    pub store: StoreSettings,
    pub network: NetworkSettings,
    pub rate_limits: RateLimitConfig,
    pub search: SearchSettings,
    pub cache: CacheSettings,
    pub events: EventSettings,
    pub actors: ActorSettings,
    pub roles: RoleSettings,
    pub seed: SeedSettings,
    pub locations: LocationSettings,
    pub sync: SyncSettings,
    pub signin: SignInConfig,
    pub gateway: GatewayConfig,
    pub captcha: CaptchaConfig,
    pub notifications: NotificationSettings,
    pub otp: OtpSettings,
    pub scheduler: SchedulerSettings,
    pub files: FileSettings,
    pub content: ContentSettings,
    pub bulk: BulkSettings,
    #[serde(default)]
    pub log: LogSettings,
}

/// How the binary writes its log (`[log]`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogSettings {
    #[serde(default)]
    pub format: LogFormat,
}

/// `text` for people, `json` (one object per line) for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RoleSettings {
    pub single_organisation: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub listen: String,
    pub internal_listen: String,
    pub body_limit_bytes: usize,
    pub json_body_limit_bytes: usize,
    pub max_concurrent_requests: usize,
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
    pub request_timeout_seconds: u64,
    /// PEM certificate chain and private key of the public listener; empty: plain HTTP.
    #[serde(default)]
    pub tls_cert_file: String,
    #[serde(default)]
    pub tls_key_file: String,
    /// The same for the internal listener.
    #[serde(default)]
    pub internal_tls_cert_file: String,
    #[serde(default)]
    pub internal_tls_key_file: String,
    /// How often the certificate files are checked for a change.
    #[serde(default = "default_tls_reload_seconds")]
    pub tls_reload_seconds: u64,
    /// Time a client has to send its request head (slow clients are dropped).
    #[serde(default = "default_header_read_timeout_seconds")]
    pub header_read_timeout_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub public_keys_dir: String,
    pub issuer: String,
    #[serde(default)]
    pub extra_issuers: Vec<String>,
    #[serde(default)]
    pub audience: Vec<String>,
    pub leeway_seconds: u64,
    pub local_token_ttl_seconds: i64,
    /// The local signing key (`userorg token`): on unless an external provider's keys are
    /// configured.
    #[serde(default)]
    pub local_signer: LocalSignerMode,
    /// The issuer of locally signed tokens when the local key runs beside external keys.
    #[serde(default = "default_local_issuer")]
    pub local_issuer: String,
}

/// Whether the local signing key is used (`[auth] local_signer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalSignerMode {
    /// On for the embedded install (no `public_keys_dir`), off beside an external provider.
    #[default]
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SecuritySettings {
    pub pii_encryption_key: String,
    /// Earlier PII keys (base64) values may still be sealed with, after a rotation done in
    /// configuration; `userorg keys reseal` rewrites those values under the current key.
    #[serde(default)]
    pub pii_retired_keys: Vec<String>,
    /// The credential of other services on the internal listener (base64 of 32 bytes); empty
    /// means the generated `<data_dir>/keys/service-credential`.
    pub service_credential: String,
    pub blind_index_key: String,
    pub password_regex: String,
}

/// What anonymous callers learn from the lookup routes (`[users] anonymous_lookup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousLookup {
    /// Existence only (`/v1/user/exists`); get-by-key and getuser need a token.
    Existence,
    /// As Sunbird: the v5 profile by email or phone (`/v1/user/get`) and by login id
    /// (`/v1/user/getuser`), to anyone.
    Sunbird,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserSettings {
    pub anonymous_lookup: AnonymousLookup,
    pub password_hash_concurrency: usize,
    pub default_country_code: String,
    pub username_suffix_length: usize,
    pub deletion_allowed_roles: Vec<String>,
    /// Most managed children one parent may have (Sunbird `managed_user_limit`).
    pub managed_user_limit: usize,
    /// Lifetime of a managed token (`managedToken`, the `x-authenticated-for` header).
    pub managed_token_ttl_seconds: i64,
    /// Days a consent lasts from its last update (Sunbird `consent_expiry_in_days`).
    pub consent_expiry_days: i64,
}

/// Client addresses (`[network]`): CIDRs or plain addresses.
#[derive(Debug, Clone, Deserialize)]
pub struct NetworkSettings {
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub public_allow: Vec<String>,
    #[serde(default)]
    pub public_deny: Vec<String>,
    #[serde(default)]
    pub internal_allow: Vec<String>,
    #[serde(default)]
    pub internal_deny: Vec<String>,
}

/// Requests per minute (`[rate_limits]`); 0 switches one off.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct RateLimitConfig {
    pub per_client_per_minute: u32,
    pub lookup_per_client_per_minute: u32,
    pub signup_per_client_per_minute: u32,
    pub per_identifier_per_minute: u32,
}

/// A list of CIDRs (a plain address is its own /32 or /128).
pub fn parse_nets(list: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    list.iter()
        .map(|entry| {
            let entry = entry.trim();
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{entry:?} is not an address or CIDR"))
        })
        .collect()
}

/// The store engines (`[store] engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreEngine {
    /// The embedded redb file under the data dir.
    Redb,
    /// A PostgreSQL database, shared by every instance pointed at it (`[store.postgres]`).
    Postgres,
    /// A ScyllaDB or Cassandra cluster, shared by every instance pointed at it
    /// (`[store.scylla]`).
    Scylla,
}

/// The search engines (`[search] engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchEngine {
    /// The embedded tantivy index under the data dir.
    Tantivy,
    /// An Elasticsearch cluster every instance shares (`[search.elasticsearch]`).
    Elasticsearch,
}

/// The cache engines (`[cache] engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheEngine {
    Moka,
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StoreSettings {
    pub engine: StoreEngine,
    /// How long a competing outbox consumer's lease lasts without renewal, in milliseconds.
    pub lease_ttl_ms: i64,
    pub postgres: PostgresSettings,
    pub scylla: ScyllaSettings,
}

/// `[store.scylla]`: the cluster of the `scylla` store engine.
#[derive(Clone, Deserialize)]
pub struct ScyllaSettings {
    /// Contact points, `host:port` (the driver discovers the other nodes).
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// The datacenter of this instance: its requests go to that datacenter's nodes only.
    pub local_datacenter: String,
    /// `local_quorum` (default), `quorum`, `each_quorum` or `all` (`one` and `local_one` are
    /// refused when the store opens); LWTs use LOCAL_SERIAL (SERIAL with the cluster-wide ones).
    pub consistency: String,
    /// The replication `userorg schema apply` creates the keyspace with, as CQL.
    pub replication: String,
    pub username: String,
    /// Never printed (see the `Debug` below).
    pub password: String,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
}

impl std::fmt::Debug for ScyllaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaSettings")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("local_datacenter", &self.local_datacenter)
            .field("consistency", &self.consistency)
            .field("replication", &self.replication)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .finish()
    }
}

/// `[store.postgres]`: where the `postgres` store engine keeps its tables.
#[derive(Clone, Deserialize)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database`; it may carry a password, so it is never
    /// printed (see the `Debug` below).
    pub url: String,
    /// The PostgreSQL schema (namespace) of the tables: instances sharing it share the store.
    pub schema: String,
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SearchSettings {
    pub engine: SearchEngine,
    pub default_limit: usize,
    pub max_limit: usize,
    pub max_offset: usize,
    pub elasticsearch: ElasticsearchSettings,
}

/// `[search.elasticsearch]`: the cluster of the `elasticsearch` search engine.
#[derive(Clone, Deserialize)]
pub struct ElasticsearchSettings {
    /// May carry credentials: never printed (see the `Debug` below).
    pub url: String,
    pub index_prefix: String,
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub write_attempts: u32,
}

impl std::fmt::Debug for ElasticsearchSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticsearchSettings")
            .field("url", &"<redacted>")
            .field("index_prefix", &self.index_prefix)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("write_attempts", &self.write_attempts)
            .finish()
    }
}

#[derive(Clone, Deserialize)]
pub struct CacheSettings {
    pub engine: CacheEngine,
    pub max_entries: u64,
    pub ttl_seconds: u64,
    /// Time to live of entries that decide access (user rows, roles, memberships): the most a
    /// block or a revoked role can be late on another instance after a failed invalidation.
    #[serde(default = "default_access_ttl_seconds")]
    pub access_ttl_seconds: u64,
    /// `redis://` or `rediss://` (TLS); it may carry a password, so it is never printed.
    pub redis_url: String,
    pub redis_key_prefix: String,
    /// PEM file of the CA that signed the Redis server's certificate, for `rediss://` to a
    /// server of a private CA; empty: the system's roots.
    #[serde(default)]
    pub redis_ca_file: String,
}

impl std::fmt::Debug for CacheSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheSettings")
            .field("engine", &self.engine)
            .field("max_entries", &self.max_entries)
            .field("ttl_seconds", &self.ttl_seconds)
            .field("access_ttl_seconds", &self.access_ttl_seconds)
            .field("redis_url", &"<redacted>")
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("redis_ca_file", &self.redis_ca_file)
            .finish()
    }
}

/// `[events]`: publication of domain events to a Redis stream for consumers outside userorg.
#[derive(Clone, Deserialize)]
pub struct EventSettings {
    /// The stream's key; empty: no publication.
    pub redis_stream: String,
    /// The Redis server; empty: the cache's (`cache.redis_url`, with `cache.redis_ca_file`).
    pub redis_url: String,
    /// The stream is capped near this many entries (`XADD ... MAXLEN ~`).
    pub max_len: usize,
}

impl std::fmt::Debug for EventSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSettings")
            .field("redis_stream", &self.redis_stream)
            .field("redis_url", &"<redacted>")
            .field("max_len", &self.max_len)
            .finish()
    }
}

/// `[notifications]`: email and SMS delivery.
#[derive(Debug, Clone, Deserialize)]
pub struct NotificationSettings {
    pub email_engine: EmailEngine,
    pub from: String,
    pub message_id_domain: String,
    pub installation_name: String,
    pub max_recipients: usize,
    pub max_attempts: u32,
    pub retry_base_ms: i64,
    pub retry_max_ms: i64,
    pub concurrency: usize,
    pub reset_link_ttl_seconds: i64,
    pub smtp: SmtpSettings,
    pub sms: SmsSettings,
}

/// `[notifications] email_engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailEngine {
    /// One `.eml` per message under `<data_dir>/mail`.
    File,
    Smtp,
}

/// `[notifications.smtp]`.
#[derive(Clone, Deserialize)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurityMode,
    pub username: String,
    pub password: String,
    pub timeout_ms: u64,
    pub pool_size: u32,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurityMode {
    Starttls,
    Tls,
    None,
}

/// `[notifications.sms]`.
#[derive(Clone, Deserialize)]
pub struct SmsSettings {
    pub engine: SmsEngine,
    pub url: String,
    pub auth_key: String,
    pub sender: String,
    pub route: String,
    pub timeout_ms: u64,
}

impl std::fmt::Debug for SmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsSettings")
            .field("engine", &self.engine)
            .field("url", &self.url)
            .field("auth_key", &"<redacted>")
            .field("sender", &self.sender)
            .field("route", &self.route)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsEngine {
    /// One JSON line per SMS in `<data_dir>/sms/sent.jsonl`.
    File,
    Http,
}

/// `[scheduler]`.
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerSettings {
    pub interval_seconds: u64,
}

/// Where uploaded files go (`[files]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileEngine {
    /// Under the data dir, served back at `/files/...`.
    Dir,
    /// An S3-compatible bucket (`[files.s3]`).
    S3,
}

/// `[files]`: uploads (`/v1/file/upload`).
#[derive(Debug, Clone, Deserialize)]
pub struct FileSettings {
    pub engine: FileEngine,
    pub max_bytes: usize,
    pub allowed_types: Vec<String>,
    pub default_container: String,
    pub s3: FileS3Settings,
}

/// `[files.s3]`.
#[derive(Debug, Clone, Deserialize)]
pub struct FileS3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub public_base_url: String,
}

/// `[bulk]`: bulk uploads.
#[derive(Debug, Clone, Deserialize)]
pub struct BulkSettings {
    pub max_bytes: usize,
    pub user_rows: usize,
    pub org_rows: usize,
}

/// `[content]`: Sunbird's content service (channel registration, framework checks).
#[derive(Clone, Deserialize)]
pub struct ContentSettings {
    pub base_url: String,
    pub register_channels: bool,
    pub framework_base_url: String,
    pub api_key: String,
    pub timeout_ms: u64,
    pub framework_cache_seconds: u64,
}

impl ContentSettings {
    /// Where channels are registered, when they are.
    pub fn channel_url(&self) -> Option<&str> {
        Some(self.base_url.trim()).filter(|url| !url.is_empty() && self.register_channels)
    }

    /// Where frameworks are read, if anywhere.
    pub fn framework_url(&self) -> Option<&str> {
        [self.framework_base_url.trim(), self.base_url.trim()]
            .into_iter()
            .find(|url| !url.is_empty())
    }
}

impl std::fmt::Debug for ContentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentSettings")
            .field("base_url", &self.base_url)
            .field("register_channels", &self.register_channels)
            .field("framework_base_url", &self.framework_base_url)
            .field("api_key", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .field("framework_cache_seconds", &self.framework_cache_seconds)
            .finish()
    }
}

/// `[otp]`.
#[derive(Debug, Clone, Deserialize)]
pub struct OtpSettings {
    pub length: usize,
    pub ttl_seconds: i64,
    pub allowed_attempts: u32,
    pub per_hour: u32,
    pub per_day: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActorSettings {
    pub user_owner_workers: usize,
    pub org_owner_workers: usize,
    pub call_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeedSettings {
    pub custodian_channel: String,
    pub custodian_org_name: String,
    pub admin_email: String,
    /// Whether the bootstrap ADMIN user is created on first start.
    #[serde(default = "default_true")]
    pub bootstrap_admin: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LocationSettings {
    pub types: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SyncSettings {
    pub rebuild_timeout_seconds: u64,
}

/// The reCAPTCHA check of `/v2/user/exists` (`[captcha]`).
#[derive(Debug, Clone, Deserialize)]
pub struct CaptchaConfig {
    pub enabled: bool,
    pub verify_url: String,
    pub private_key: String,
    pub mobile_private_key: String,
    pub timeout_ms: u64,
}

/// API-consumer keys (`[gateway]`).
#[derive(Debug, Clone, Deserialize)]
pub struct GatewayConfig {
    pub require_api_key: bool,
    pub consumer_key: String,
}

/// The identity provider (`[signin]`).
#[derive(Debug, Clone, Deserialize)]
pub struct SignInConfig {
    pub enabled: LocalSignerMode,
    pub realms: Vec<String>,
    pub public_base_url: String,
    pub federation_id: String,
    pub access_token_ttl_seconds: i64,
    pub refresh_token_ttl_seconds: i64,
    pub session_max_seconds: i64,
    pub rotate_refresh_tokens: bool,
    pub clients: Vec<String>,
    pub brute_force: BruteForceConfig,
}

/// Keycloak's brute-force detection (`[signin.brute_force]`).
#[derive(Debug, Clone, Deserialize)]
pub struct BruteForceConfig {
    pub enabled: bool,
    pub failure_factor: u32,
    pub wait_increment_seconds: i64,
    pub max_wait_seconds: i64,
    pub failure_reset_seconds: i64,
    pub permanent_lockout: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl Settings {
    /// Loads the layered configuration. `env` is the process environment (or a test map); only
    /// variables starting with `USERORG__` are read.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_CONFIG_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let env_vars: config::Map<String, String> = env
            .iter()
            .filter(|(name, _)| name.starts_with(&format!("{ENV_PREFIX}__")))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .separator("__")
                .prefix_separator("__")
                .list_separator(",")
                .with_list_parse_key("auth.extra_issuers")
                .with_list_parse_key("http.cors_allowed_origins")
                .with_list_parse_key("network.trusted_proxies")
                .with_list_parse_key("network.public_allow")
                .with_list_parse_key("network.public_deny")
                .with_list_parse_key("network.internal_allow")
                .with_list_parse_key("network.internal_deny")
                .with_list_parse_key("auth.audience")
                .with_list_parse_key("signin.realms")
                .with_list_parse_key("signin.clients")
                .with_list_parse_key("users.deletion_allowed_roles")
                .with_list_parse_key("locations.types")
                .with_list_parse_key("security.pii_retired_keys")
                .with_list_parse_key("store.scylla.nodes")
                .try_parsing(true)
                .source(Some(env_vars)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what serde cannot: addresses parse, numbers are in range, the regex compiles.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if self.store.engine == StoreEngine::Postgres {
            if self.store.postgres.url.is_empty() {
                return Err(invalid(
                    "store.postgres.url",
                    "must be set when store.engine is \"postgres\"",
                ));
            }
            if self.store.postgres.pool_size == 0 || self.store.postgres.connect_timeout_ms == 0 {
                return Err(invalid(
                    "store.postgres.pool_size",
                    "pool_size and connect_timeout_ms must be positive",
                ));
            }
            // The schema name's rule is the engine's (checked when it opens).
        }
        if self.store.engine == StoreEngine::Scylla {
            let scylla = &self.store.scylla;
            if scylla.nodes.is_empty() {
                return Err(invalid(
                    "store.scylla.nodes",
                    "must list at least one node when store.engine is \"scylla\"",
                ));
            }
            // The keyspace name's and the consistency's rules are the engine's (checked when it
            // opens, before anything is sent).
            if scylla.connect_timeout_ms == 0 || scylla.request_timeout_ms == 0 {
                return Err(invalid(
                    "store.scylla.request_timeout_ms",
                    "connect_timeout_ms and request_timeout_ms must be positive",
                ));
            }
        }
        self.validate_notifications()?;
        if self.search.engine == SearchEngine::Elasticsearch {
            let elasticsearch = &self.search.elasticsearch;
            if elasticsearch.url.is_empty() {
                return Err(invalid(
                    "search.elasticsearch.url",
                    "must be set when search.engine is \"elasticsearch\"",
                ));
            }
            if elasticsearch.timeout_ms == 0
                || elasticsearch.connect_timeout_ms == 0
                || elasticsearch.write_attempts == 0
            {
                return Err(invalid(
                    "search.elasticsearch.timeout_ms",
                    "timeout_ms, connect_timeout_ms and write_attempts must be positive",
                ));
            }
        }
        self.http
            .listen
            .parse::<SocketAddr>()
            .map_err(|e| invalid("http.listen", e.to_string()))?;
        self.http
            .internal_listen
            .parse::<SocketAddr>()
            .map_err(|e| invalid("http.internal_listen", e.to_string()))?;
        if self.http.body_limit_bytes < 1024 {
            return Err(invalid("http.body_limit_bytes", "must be at least 1024"));
        }
        if self.http.json_body_limit_bytes < 1024
            || self.http.json_body_limit_bytes > self.http.body_limit_bytes
        {
            return Err(invalid(
                "http.json_body_limit_bytes",
                "must be at least 1024 and at most http.body_limit_bytes",
            ));
        }
        if self.http.request_timeout_seconds == 0 {
            return Err(invalid("http.request_timeout_seconds", "must be positive"));
        }
        for (cert_key, cert, key_key, key) in [
            (
                "http.tls_cert_file",
                &self.http.tls_cert_file,
                "http.tls_key_file",
                &self.http.tls_key_file,
            ),
            (
                "http.internal_tls_cert_file",
                &self.http.internal_tls_cert_file,
                "http.internal_tls_key_file",
                &self.http.internal_tls_key_file,
            ),
        ] {
            if cert.is_empty() != key.is_empty() {
                return Err(invalid(
                    if cert.is_empty() { cert_key } else { key_key },
                    "a certificate and its key go together",
                ));
            }
        }
        if self.http.header_read_timeout_seconds == 0 {
            return Err(invalid(
                "http.header_read_timeout_seconds",
                "must be positive",
            ));
        }
        if self.auth.issuer.trim().is_empty() {
            return Err(invalid("auth.issuer", "must not be empty"));
        }
        if self.auth.local_token_ttl_seconds <= 0 {
            return Err(invalid("auth.local_token_ttl_seconds", "must be positive"));
        }
        self.validate_signin()?;
        if self.local_signer_enabled()
            && self.external_keys()
            && (self.auth.local_issuer.trim().is_empty()
                || self.accepted_issuers().contains(&self.auth.local_issuer))
        {
            return Err(invalid(
                "auth.local_issuer",
                "must be set, and differ from the identity provider's issuers, when the local signer runs beside external keys",
            ));
        }
        for (key, value) in [
            (
                "security.pii_encryption_key",
                &self.security.pii_encryption_key,
            ),
            ("security.blind_index_key", &self.security.blind_index_key),
            (
                "security.service_credential",
                &self.security.service_credential,
            ),
        ] {
            if !value.is_empty() {
                crate::crypto::decode_key(value).map_err(|reason| invalid(key, reason))?;
            }
        }
        fancy_regex::Regex::new(&self.security.password_regex)
            .map_err(|e| invalid("security.password_regex", e.to_string()))?;
        if self.users.default_country_code.is_empty()
            || !self
                .users
                .default_country_code
                .chars()
                .all(|c| c.is_ascii_digit())
        {
            return Err(invalid(
                "users.default_country_code",
                "must be digits, e.g. 91",
            ));
        }
        if !(1..=16).contains(&self.users.username_suffix_length) {
            return Err(invalid(
                "users.username_suffix_length",
                "must be between 1 and 16",
            ));
        }
        // Room for the multipart framing around the largest file.
        if self.files.max_bytes == 0
            || self.files.max_bytes + 64 * 1024 > self.http.body_limit_bytes
        {
            return Err(invalid(
                "files.max_bytes",
                "must be positive and at least 64 KiB below http.body_limit_bytes",
            ));
        }
        if self.bulk.max_bytes == 0 || self.bulk.max_bytes + 64 * 1024 > self.http.body_limit_bytes
        {
            return Err(invalid(
                "bulk.max_bytes",
                "must be positive and at least 64 KiB below http.body_limit_bytes",
            ));
        }
        if self.bulk.user_rows == 0 || self.bulk.org_rows == 0 {
            return Err(invalid(
                "bulk.user_rows",
                "bulk.user_rows and bulk.org_rows must be positive",
            ));
        }
        // A stored page or SVG would run script on the service's own origin.
        if let Some(risky) = self.files.allowed_types.iter().find(|kind| {
            let kind = kind.to_ascii_lowercase();
            ["html", "svg", "xml", "javascript"]
                .iter()
                .any(|word| kind.contains(word))
        }) {
            return Err(invalid(
                "files.allowed_types",
                format!("{risky} could carry script; it cannot be served safely"),
            ));
        }
        if crate::blob::check_container(&self.files.default_container).is_err() {
            return Err(invalid(
                "files.default_container",
                "must be lower-case letters, digits and dashes",
            ));
        }
        if self.files.engine == FileEngine::S3
            && (self.files.s3.endpoint.trim().is_empty() || self.files.s3.bucket.trim().is_empty())
        {
            return Err(invalid(
                "files.s3",
                "the s3 engine needs files.s3.endpoint and files.s3.bucket",
            ));
        }
        if !(1..=1000).contains(&self.users.managed_user_limit) {
            return Err(invalid(
                "users.managed_user_limit",
                "must be between 1 and 1000",
            ));
        }
        if self.users.consent_expiry_days <= 0 {
            return Err(invalid("users.consent_expiry_days", "must be positive"));
        }
        if self.users.managed_token_ttl_seconds <= 0 {
            return Err(invalid(
                "users.managed_token_ttl_seconds",
                "must be positive",
            ));
        }
        for origin in &self.http.cors_allowed_origins {
            let well_formed = origin == "*"
                || ((origin.starts_with("https://") || origin.starts_with("http://"))
                    && !origin.ends_with('/')
                    && origin.chars().all(|c| c.is_ascii_graphic()));
            if !well_formed {
                return Err(invalid(
                    "http.cors_allowed_origins",
                    "each entry must be \"*\" or an origin like https://portal.example.org",
                ));
            }
        }
        for (key, list) in [
            ("network.trusted_proxies", &self.network.trusted_proxies),
            ("network.public_allow", &self.network.public_allow),
            ("network.public_deny", &self.network.public_deny),
            ("network.internal_allow", &self.network.internal_allow),
            ("network.internal_deny", &self.network.internal_deny),
        ] {
            parse_nets(list).map_err(|reason| invalid(key, reason))?;
        }
        if self.http.max_concurrent_requests == 0 {
            return Err(invalid("http.max_concurrent_requests", "must be positive"));
        }
        if self.search.max_limit == 0 || self.search.default_limit > self.search.max_limit {
            return Err(invalid(
                "search.default_limit",
                "must be positive and not above search.max_limit",
            ));
        }
        if self.store.lease_ttl_ms <= 0 {
            return Err(invalid("store.lease_ttl_ms", "must be positive"));
        }
        if self.cache.engine == CacheEngine::Redis && !self.cache.redis_url.starts_with("redis") {
            return Err(invalid(
                "cache.redis_url",
                "must be a redis:// or rediss:// URL",
            ));
        }
        if self.cache.max_entries == 0 {
            return Err(invalid("cache.max_entries", "must be positive"));
        }
        if self.actors.user_owner_workers == 0 {
            return Err(invalid("actors.user_owner_workers", "must be positive"));
        }
        if self.actors.org_owner_workers == 0 {
            return Err(invalid("actors.org_owner_workers", "must be positive"));
        }
        if self.actors.call_timeout_ms == 0 {
            return Err(invalid("actors.call_timeout_ms", "must be positive"));
        }
        if self.seed.custodian_channel.trim().is_empty() {
            return Err(invalid("seed.custodian_channel", "must not be empty"));
        }
        crate::domain::location::LocationTypes::new(&self.locations.types)
            .map_err(|e| invalid("locations.types", e.to_string()))?;
        if self.sync.rebuild_timeout_seconds == 0 {
            return Err(invalid("sync.rebuild_timeout_seconds", "must be positive"));
        }
        Ok(())
    }

    fn validate_notifications(&self) -> Result<(), ConfigError> {
        let notifications = &self.notifications;
        if notifications.email_engine == EmailEngine::Smtp && notifications.smtp.host.is_empty() {
            return Err(invalid(
                "notifications.smtp.host",
                "must be set when notifications.email_engine is \"smtp\"",
            ));
        }
        if notifications.sms.engine == SmsEngine::Http && notifications.sms.url.is_empty() {
            return Err(invalid(
                "notifications.sms.url",
                "must be set when notifications.sms.engine is \"http\"",
            ));
        }
        if notifications.max_attempts == 0
            || notifications.concurrency == 0
            || notifications.retry_base_ms <= 0
            || notifications.retry_max_ms < notifications.retry_base_ms
        {
            return Err(invalid(
                "notifications.max_attempts",
                "max_attempts, concurrency and retry_base_ms must be positive, retry_max_ms at least retry_base_ms",
            ));
        }
        if !(4..=10).contains(&self.otp.length) {
            return Err(invalid("otp.length", "must be 4 to 10 digits"));
        }
        if self.otp.ttl_seconds <= 0 || self.otp.allowed_attempts == 0 {
            return Err(invalid(
                "otp.ttl_seconds",
                "ttl_seconds and allowed_attempts must be positive",
            ));
        }
        Ok(())
    }

    pub fn public_keys_dir(&self) -> PathBuf {
        if self.auth.public_keys_dir.is_empty() {
            self.data_dir.join("keys").join("public")
        } else {
            PathBuf::from(&self.auth.public_keys_dir)
        }
    }

    /// True when `auth.public_keys_dir` names an external identity provider's keys.
    pub fn external_keys(&self) -> bool {
        !self.auth.public_keys_dir.trim().is_empty()
    }

    /// Whether tokens are signed locally (`userorg token`, the embedded install).
    pub fn local_signer_enabled(&self) -> bool {
        match self.auth.local_signer {
            LocalSignerMode::Auto => !self.external_keys(),
            LocalSignerMode::On => true,
            LocalSignerMode::Off => false,
        }
    }

    /// Where the local key's public half is published: the key directory of the embedded
    /// install; never an external provider's directory.
    pub fn local_key_publish_dir(&self) -> Option<PathBuf> {
        (!self.external_keys()).then(|| self.public_keys_dir())
    }

    /// The issuer of locally signed tokens: the configured issuer on the embedded install, where
    /// the local key is the identity provider; its own issuer beside an external provider, so
    /// a local token can never pass for one of the provider's.
    pub fn local_issuer(&self) -> &str {
        if self.external_keys() {
            &self.auth.local_issuer
        } else {
            &self.auth.issuer
        }
    }

    /// Every accepted issuer: the main one first, then the sign-in's realm issuers.
    pub fn accepted_issuers(&self) -> Vec<String> {
        let mut issuers = vec![self.auth.issuer.clone()];
        issuers.extend(self.auth.extra_issuers.iter().cloned());
        if self.signin_enabled() {
            for realm in &self.signin.realms {
                let issuer = self.realm_issuer(realm);
                if !issuers.contains(&issuer) {
                    issuers.push(issuer);
                }
            }
        }
        issuers
    }

    /// Whether this instance is the identity provider (`[signin] enabled`): with the local key,
    /// and never beside an external provider's keys.
    pub fn signin_enabled(&self) -> bool {
        match self.signin.enabled {
            LocalSignerMode::Auto => self.local_signer_enabled() && !self.external_keys(),
            LocalSignerMode::On => true,
            LocalSignerMode::Off => false,
        }
    }

    fn validate_signin(&self) -> Result<(), ConfigError> {
        let signin = &self.signin;
        if signin.enabled == LocalSignerMode::On
            && (!self.local_signer_enabled() || self.external_keys())
        {
            return Err(invalid(
                "signin.enabled",
                "needs the local signing key and no external provider's keys (auth.public_keys_dir)",
            ));
        }
        if !self.signin_enabled() {
            return Ok(());
        }
        let realm_ok = |realm: &String| {
            !realm.is_empty()
                && realm
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if signin.realms.is_empty() || !signin.realms.iter().all(realm_ok) {
            return Err(invalid(
                "signin.realms",
                "at least one realm, each of letters, digits, '-' and '_'",
            ));
        }
        if !(signin.public_base_url.starts_with("http://")
            || signin.public_base_url.starts_with("https://"))
        {
            return Err(invalid("signin.public_base_url", "must be an http(s) URL"));
        }
        for (key, value) in [
            (
                "signin.access_token_ttl_seconds",
                signin.access_token_ttl_seconds,
            ),
            (
                "signin.refresh_token_ttl_seconds",
                signin.refresh_token_ttl_seconds,
            ),
            ("signin.session_max_seconds", signin.session_max_seconds),
            (
                "signin.brute_force.wait_increment_seconds",
                signin.brute_force.wait_increment_seconds,
            ),
            (
                "signin.brute_force.max_wait_seconds",
                signin.brute_force.max_wait_seconds,
            ),
            (
                "signin.brute_force.failure_reset_seconds",
                signin.brute_force.failure_reset_seconds,
            ),
        ] {
            if value <= 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        if signin.brute_force.failure_factor == 0 {
            return Err(invalid(
                "signin.brute_force.failure_factor",
                "must be positive",
            ));
        }
        let mut ids = Vec::new();
        for client in &signin.clients {
            let id = client.split_once(':').map_or(client.as_str(), |(id, _)| id);
            if id.is_empty() || ids.contains(&id) {
                return Err(invalid("signin.clients", "each client id once, not empty"));
            }
            if client
                .split_once(':')
                .is_some_and(|(_, secret)| secret.is_empty())
            {
                return Err(invalid(
                    "signin.clients",
                    "a secret after ':' must not be empty",
                ));
            }
            ids.push(id);
        }
        Ok(())
    }

    /// The key consumer credential secrets are derived from: `[gateway] consumer_key`, else the
    /// key file, created on first use.
    pub fn gateway_consumer_key(&self) -> anyhow::Result<[u8; 32]> {
        crate::crypto::load_or_create_key(
            &self.gateway.consumer_key,
            &self.data_dir.join("keys").join("gateway-consumer.key"),
        )
    }

    /// The `iss` of the tokens a realm's sign-in issues.
    pub fn realm_issuer(&self, realm: &str) -> String {
        format!(
            "{}/auth/realms/{realm}",
            self.signin.public_base_url.trim_end_matches('/')
        )
    }
}

fn default_access_ttl_seconds() -> u64 {
    5
}

fn default_tls_reload_seconds() -> u64 {
    30
}

fn default_header_read_timeout_seconds() -> u64 {
    10
}

fn default_local_issuer() -> String {
    "userorg-local".to_string()
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_postgres_engine_needs_a_url_and_never_prints_it() {
        let err = Settings::load(None, &env(&[("USERORG__STORE__ENGINE", "postgres")]))
            .expect_err("no url");
        assert_eq!(
            err.to_string(),
            "invalid configuration key `store.postgres.url`: must be set when store.engine is \"postgres\""
        );
        let settings = Settings::load(
            None,
            &env(&[
                ("USERORG__STORE__ENGINE", "postgres"),
                (
                    "USERORG__STORE__POSTGRES__URL",
                    "postgres://userorg:Hunter2Secret@db/userorg",
                ),
            ]),
        )
        .expect("valid");
        assert_eq!(settings.store.engine, StoreEngine::Postgres);
        assert_eq!(settings.store.postgres.schema, "userorg");
        let printed = format!("{settings:?}");
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(!printed.contains("Hunter2Secret"), "{printed}");
    }

    /// What docker-compose.yml runs: the file, and the secrets compose passes by environment.
    #[test]
    fn the_docker_configuration_loads_with_its_environment() {
        let file = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/docker.toml"));
        let settings = Settings::load(
            Some(file),
            &env(&[("USERORG__CACHE__REDIS_URL", "redis://:pw@redis:6379/")]),
        )
        .expect("valid");
        assert_eq!(settings.store.engine, StoreEngine::Scylla);
        assert_eq!(settings.store.scylla.nodes, ["scylla:9042"]);
        assert_eq!(settings.store.scylla.consistency, "local_quorum");
        assert_eq!(settings.search.engine, SearchEngine::Elasticsearch);
        assert_eq!(
            settings.search.elasticsearch.url,
            "http://elasticsearch:9200"
        );
        assert_eq!(settings.cache.engine, CacheEngine::Redis);
        assert_eq!(settings.http.listen, "0.0.0.0:9000");
        assert_eq!(settings.data_dir, PathBuf::from("/data"));
        // The compose profile `postgres`: the same file, the store switched by environment.
        let err = Settings::load(
            Some(file),
            &env(&[
                ("USERORG__STORE__ENGINE", "postgres"),
                ("USERORG__CACHE__REDIS_URL", "redis://:pw@redis:6379/"),
            ]),
        )
        .expect_err("no store url");
        assert!(err.to_string().contains("store.postgres.url"), "{err}");
        let settings = Settings::load(
            Some(file),
            &env(&[
                ("USERORG__STORE__ENGINE", "postgres"),
                (
                    "USERORG__STORE__POSTGRES__URL",
                    "postgres://userorg:pw@postgres:5432/userorg",
                ),
                ("USERORG__CACHE__REDIS_URL", "redis://:pw@redis:6379/"),
            ]),
        )
        .expect("valid");
        assert_eq!(settings.store.engine, StoreEngine::Postgres);
    }

    #[test]
    fn the_scylla_engine_needs_nodes_and_takes_them_from_the_environment() {
        let err = Settings::load(None, &env(&[("USERORG__STORE__ENGINE", "scylla")]))
            .expect_err("no nodes");
        assert_eq!(
            err.to_string(),
            "invalid configuration key `store.scylla.nodes`: must list at least one node when store.engine is \"scylla\""
        );
        let settings = Settings::load(
            None,
            &env(&[
                ("USERORG__STORE__ENGINE", "scylla"),
                (
                    "USERORG__STORE__SCYLLA__NODES",
                    "10.0.0.1:9042,10.0.0.2:9042",
                ),
                ("USERORG__STORE__SCYLLA__PASSWORD", "Hunter2Secret"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            settings.store.scylla.nodes,
            ["10.0.0.1:9042", "10.0.0.2:9042"]
        );
        assert_eq!(settings.store.scylla.keyspace, "sunbird");
        assert_eq!(settings.store.scylla.local_datacenter, "datacenter1");
        assert!(!format!("{settings:?}").contains("Hunter2Secret"));
    }

    #[test]
    fn the_redis_url_is_never_printed() {
        let settings = Settings::load(
            None,
            &env(&[
                ("USERORG__CACHE__ENGINE", "redis"),
                (
                    "USERORG__CACHE__REDIS_URL",
                    "rediss://:Hunter2Secret@redis:6380/",
                ),
                ("USERORG__CACHE__REDIS_CA_FILE", "/etc/userorg/redis-ca.pem"),
            ]),
        )
        .expect("valid");
        assert_eq!(settings.cache.redis_ca_file, "/etc/userorg/redis-ca.pem");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("Hunter2Secret"), "{printed}");
        assert!(printed.contains("redis_url: \"<redacted>\""), "{printed}");
    }

    #[test]
    fn defaults_load_without_any_file() {
        let settings = Settings::load(None, &HashMap::new()).expect("defaults are valid");
        assert_eq!(settings.data_dir, PathBuf::from("./data"));
        assert_eq!(settings.http.listen, "127.0.0.1:9000");
        assert_eq!(settings.http.internal_listen, "127.0.0.1:9001");
        assert_eq!(settings.users.default_country_code, "91");
        assert_eq!(
            settings.public_keys_dir(),
            PathBuf::from("./data/keys/public")
        );
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let settings = Settings::load(
            None,
            &env(&[
                ("USERORG__HTTP__LISTEN", "127.0.0.1:7000"),
                ("USERORG__DATA_DIR", "/tmp/x"),
                ("USERORG__AUTH__AUDIENCE", "a,b"),
                ("UNRELATED", "1"),
            ]),
        )
        .expect("valid");
        assert_eq!(settings.http.listen, "127.0.0.1:7000");
        assert_eq!(settings.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(
            settings.auth.audience,
            vec!["a".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn a_file_layers_over_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[search]\nmax_limit = 50\ndefault_limit = 20\n").expect("write");
        let settings = Settings::load(Some(&path), &HashMap::new()).expect("valid");
        assert_eq!(settings.search.max_limit, 50);
        assert_eq!(settings.http.listen, "127.0.0.1:9000");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Settings::load(None, &env(&[("USERORG__HTTP__LISTEN", "nope")]))
            .expect_err("invalid address");
        assert!(err.to_string().contains("http.listen"), "{err}");
        let err = Settings::load(None, &env(&[("USERORG__SECURITY__PASSWORD_REGEX", "(")]))
            .expect_err("invalid regex");
        assert!(err.to_string().contains("security.password_regex"), "{err}");
        let err = Settings::load(None, &env(&[("USERORG__CACHE__ENGINE", "memcached")]))
            .expect_err("unknown cache engine");
        assert!(err.to_string().contains("cache.engine"), "{err}");
        let err = Settings::load(None, &env(&[("USERORG__ACTORS__USER_OWNER_WORKERS", "0")]))
            .expect_err("zero workers");
        assert!(
            err.to_string().contains("actors.user_owner_workers"),
            "{err}"
        );
    }

    #[test]
    fn location_types_are_a_checked_list() {
        let settings = Settings::load(None, &HashMap::new()).expect("defaults");
        assert_eq!(
            settings.locations.types,
            ["state", "district", "block", "cluster", "school"]
        );
        let settings = Settings::load(None, &env(&[("USERORG__LOCATIONS__TYPES", "state,zone")]))
            .expect("env list");
        assert_eq!(settings.locations.types, ["state", "zone"]);
        let err = Settings::load(None, &env(&[("USERORG__LOCATIONS__TYPES", "state,State")]))
            .expect_err("duplicate type");
        assert!(err.to_string().contains("locations.types"), "{err}");
        let err = Settings::load(
            None,
            &env(&[("USERORG__SYNC__REBUILD_TIMEOUT_SECONDS", "0")]),
        )
        .expect_err("zero timeout");
        assert!(
            err.to_string().contains("sync.rebuild_timeout_seconds"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let err = Settings::load(None, &env(&[("USERORG__CACHE__MAX_ENTRIES", "many")]))
            .expect_err("not a number");
        assert!(err.to_string().contains("max_entries"), "{err}");
    }
}
