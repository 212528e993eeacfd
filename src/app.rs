//! Building and running the service: `Application::build(settings)` opens the engines, seeds a
//! fresh data dir, starts the actor tree and binds both listeners (port 0 works, which is how
//! tests start the real app); `run_until_stopped` serves until the shutdown future completes,
//! then stops in order: listeners (draining requests), actors, engines.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tower::Layer;

use crate::actors::bulk::BulkContext;
use crate::actors::dispatcher::{DispatchSettings, DispatcherContext};
use crate::actors::indexer::IndexerContext;
use crate::actors::merge::MergeContext;
use crate::actors::org_owner::OrgOwnerContext;
use crate::actors::publisher::PublisherContext;
use crate::actors::scheduler::SchedulerContext;
use crate::actors::user_owner::UserOwnerContext;
use crate::actors::{ActorSettings, Actors};
use crate::auth::{KeyRing, LocalSigner, ServiceCredential, TokenVerifier, VerifierSettings};
use crate::cache::rate::RateCounter;
use crate::clock::{Clock, SystemClock};
use crate::config::{Settings, parse_nets};
use crate::crypto::PiiVault;
use crate::domain::location::LocationTypes;
use crate::domain::otp::OtpPolicy;
use crate::domain::rules::PasswordPolicy;
use crate::domain::signin::LockoutPolicy;
use crate::engines::{self, Engines};
use crate::http::tls::ReloadingTls;
use crate::http::{AppInner, AppState, Listener, build_router};
use crate::search::dsl::SearchLimits;
use crate::seed;
use crate::services::access::{CallerResolver, ManagedTokens};
use crate::services::audit::AuditTrail;
use crate::services::bulk::{BulkLimits, BulkService};
use crate::services::captcha::Captcha;
use crate::services::consent::ConsentService;
use crate::services::data_sync::DataSyncService;
use crate::services::declarations::DeclarationService;
use crate::services::feed::FeedService;
use crate::services::files::{FileOptions, FileService};
use crate::services::gateway::ConsumerKeys;
use crate::services::health::HealthService;
use crate::services::locations::LocationService;
use crate::services::managed::ManagedUserService;
use crate::services::merge::MergeService;
use crate::services::migration::MigrationService;
use crate::services::network::{
    AddressRules, Addressing, NetworkPolicy, RateLimitSettings, RateLimits,
};
use crate::services::notes::NoteService;
use crate::services::notifications::{NotificationOptions, NotificationService};
use crate::services::organisations::OrgService;
use crate::services::otp::OtpService;
use crate::services::ownership::OwnershipService;
use crate::services::preferences::PreferenceService;
use crate::services::reset::{ResetOptions, ResetService};
use crate::services::roles::RoleService;
use crate::services::settings::SettingsService;
use crate::services::signin::{OidcClient, SignInOptions, SignInService};
use crate::services::tnc::TncService;
use crate::services::users::{UserRules, UserService};
use crate::storage::ConsumerMode;

pub struct Application {
    public: TcpListener,
    internal: TcpListener,
    state: AppState,
    tree: Actors,
    signer: Option<LocalSigner>,
    service_credential: ServiceCredential,
    admin_user_id: Option<String>,
    settings: Settings,
}

impl Application {
    /// Builds the application on the engines its configuration names, on the system clock.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let engines = engines::open(&settings).await?;
        Self::build_with(settings, engines, Arc::new(SystemClock)).await
    }

    /// Builds the application on engines opened (and possibly decorated) by the caller and on
    /// the given clock: tests wrap the engines in fault-injecting decorators and move time.
    pub async fn build_with(
        settings: Settings,
        engines: Engines,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        std::fs::create_dir_all(&settings.data_dir)?;
        let keys_dir = settings.data_dir.join("keys");
        let public_keys_dir = settings.public_keys_dir();
        crate::crypto::tighten_key_material(&settings.data_dir, &keys_dir)?;
        let vault = PiiVault::load(
            &settings.security.pii_encryption_key,
            &settings.security.pii_retired_keys,
            &settings.security.blind_index_key,
            &keys_dir,
        )?;
        // Before anything reads or writes a value: the keys must be the store's.
        seed::check_key_material(&engines.store, &vault).await?;
        // The embedded install publishes the local key where the ring loads keys from; beside
        // an external provider the key stays out of its directory and is pinned, bound to its
        // own issuer.
        let publish_to = settings.local_key_publish_dir();
        let signer = if settings.local_signer_enabled() {
            let data_dir = settings.data_dir.clone();
            Some(
                tokio::task::spawn_blocking(move || {
                    LocalSigner::ensure(&data_dir, publish_to.as_deref())
                })
                .await??,
            )
        } else {
            None
        };
        let mut keys = KeyRing::load_dir(&public_keys_dir)?;
        let bound_key = match &signer {
            Some(signer) if settings.external_keys() => {
                keys.pin_pem(signer.kid(), signer.public_key_pem())?;
                Some((
                    signer.kid().to_string(),
                    settings.local_issuer().to_string(),
                ))
            }
            _ => None,
        };
        // Before anything is signed: the instances of one store sign with one key.
        let trusted: Vec<String> = keys.kids().map(str::to_string).collect();
        seed::check_signing_key(
            &engines.store,
            signer.as_ref().map(|signer| signer.kid()),
            &trusted,
        )
        .await?;
        let service_credential = ServiceCredential::load(
            &settings.security.service_credential,
            &keys_dir.join("service-credential"),
        )?;
        let verifier = TokenVerifier::new(
            keys,
            VerifierSettings {
                issuers: settings.accepted_issuers(),
                audience: (!settings.auth.audience.is_empty())
                    .then(|| settings.auth.audience.clone()),
                leeway_seconds: settings.auth.leeway_seconds,
                bound_key,
                ..VerifierSettings::default()
            },
        )?;
        let instance = instance_id(&settings.data_dir)?;
        let call_timeout = Duration::from_millis(settings.actors.call_timeout_ms);
        let bulk_rows: Arc<std::sync::OnceLock<Arc<dyn crate::actors::bulk::BulkRows>>> =
            Arc::default();
        let tree = crate::actors::start(ActorSettings {
            user_owner_context: Arc::new(UserOwnerContext {
                store: Arc::clone(&engines.store),
                vault: vault.clone(),
                clock: Arc::clone(&clock),
                username_suffix_length: settings.users.username_suffix_length,
                deletion_allowed_roles: settings.users.deletion_allowed_roles.clone(),
                managed_user_limit: settings.users.managed_user_limit,
            }),
            user_owner_workers: settings.actors.user_owner_workers,
            org_owner_context: Arc::new(OrgOwnerContext {
                store: Arc::clone(&engines.store),
                clock: Arc::clone(&clock),
            }),
            org_owner_workers: settings.actors.org_owner_workers,
            indexer_context: Arc::new(IndexerContext {
                store: Arc::clone(&engines.uncached_store),
                search: Arc::clone(&engines.search),
                clock: Arc::clone(&clock),
                instance: instance.clone(),
                mode: if engines.search.shared_across_instances() {
                    ConsumerMode::Competing
                } else {
                    ConsumerMode::EachInstance
                },
                lease_ttl_ms: settings.store.lease_ttl_ms,
            }),
            publisher_context: crate::engines::open_event_sink(&settings)
                .await?
                .map(|sink| {
                    Arc::new(PublisherContext {
                        store: Arc::clone(&engines.uncached_store),
                        sink,
                        clock: Arc::clone(&clock),
                        instance: instance.clone(),
                        lease_ttl_ms: settings.store.lease_ttl_ms,
                    })
                }),
            dispatcher_context: Arc::new(DispatcherContext {
                store: Arc::clone(&engines.uncached_store),
                vault: vault.clone(),
                email: Arc::clone(&engines.email),
                sms: Arc::clone(&engines.sms),
                calls: Arc::clone(&engines.calls),
                clock: Arc::clone(&clock),
                instance: instance.clone(),
                lease_ttl_ms: settings.store.lease_ttl_ms,
                settings: dispatch_settings(&settings),
            }),
            scheduler_context: Arc::new(SchedulerContext {
                store: Arc::clone(&engines.uncached_store),
                clock: Arc::clone(&clock),
                instance: instance.clone(),
                interval: Duration::from_secs(settings.scheduler.interval_seconds.max(1)),
            }),
            merge_context: Arc::new(MergeContext {
                // Through the cache: the merge rewrites user rows, whose cached copies its
                // commits must invalidate.
                store: Arc::clone(&engines.store),
                vault: vault.clone(),
                clock: Arc::clone(&clock),
                installation_name: settings.notifications.installation_name.clone(),
                message_id_domain: settings.notifications.message_id_domain.clone(),
                fail_after: merge_failure_point(),
            }),
            bulk_context: Arc::new(BulkContext {
                // Through the cache: rows are written by the owners, whose commits the runner's
                // reads must see.
                store: Arc::clone(&engines.store),
                clock: Arc::clone(&clock),
                instance: instance.clone(),
                lease_ttl_ms: settings.store.lease_ttl_ms,
                rows: Arc::clone(&bulk_rows),
            }),
            call_timeout,
        })
        .await?;

        seed::seed_reference_data(&engines.store, &settings, clock.as_ref()).await?;
        seed::seed_templates(&engines.store).await?;
        let admin_user_id =
            seed::seed_admin(&engines.store, &tree.user_owners, &settings, &vault).await?;

        let policy = PasswordPolicy::new(&settings.security.password_regex).map_err(|e| {
            anyhow::anyhow!("invalid configuration key `security.password_regex`: {e}")
        })?;
        let audit = AuditTrail::new(Arc::clone(&engines.store), Arc::clone(&clock));
        let users = UserService::new(
            Arc::clone(&engines.store),
            Arc::clone(&engines.search),
            tree.user_owners.clone(),
            vault,
            Arc::clone(&clock),
            UserRules {
                password_policy: policy,
                anonymous_profiles: settings.users.anonymous_lookup
                    == crate::config::AnonymousLookup::Sunbird,
                password_hash_concurrency: settings.users.password_hash_concurrency,
                default_country_code: settings.users.default_country_code.clone(),
                search_limits: SearchLimits {
                    default_limit: settings.search.default_limit,
                    max_limit: settings.search.max_limit,
                    max_offset: settings.search.max_offset,
                },
            },
        );
        let users = match &engines.frameworks {
            Some(api) => users.with_framework_api(Arc::clone(api)),
            None => users,
        };
        let users = if settings.captcha.enabled {
            users.with_captcha(Captcha::google(
                settings.captcha.verify_url.clone(),
                settings.captcha.private_key.clone(),
                settings.captcha.mobile_private_key.clone(),
                Duration::from_millis(settings.captcha.timeout_ms.max(1)),
            )?)
        } else {
            users
        };
        let search_limits = SearchLimits {
            default_limit: settings.search.default_limit,
            max_limit: settings.search.max_limit,
            max_offset: settings.search.max_offset,
        };
        let orgs = OrgService::new(
            Arc::clone(&engines.store),
            Arc::clone(&engines.search),
            tree.org_owners.clone(),
            search_limits,
        );
        let roles = RoleService::new(
            Arc::clone(&engines.store),
            tree.user_owners.clone(),
            settings.roles.single_organisation,
        );
        let location_types = LocationTypes::new(&settings.locations.types)
            .map_err(|e| anyhow::anyhow!("invalid configuration key `locations.types`: {e}"))?;
        let locations = LocationService::new(
            Arc::clone(&engines.store),
            Arc::clone(&engines.search),
            location_types,
            SearchLimits {
                default_limit: settings.search.default_limit,
                max_limit: settings.search.max_limit,
                max_offset: settings.search.max_offset,
            },
            Arc::clone(&clock),
        );
        let preferences = PreferenceService::new(Arc::clone(&engines.store), Arc::clone(&clock));
        let system_settings = SettingsService::new(Arc::clone(&engines.store), Arc::clone(&clock));
        let data_sync = DataSyncService::new(
            tree.indexer.clone(),
            Duration::from_secs(settings.sync.rebuild_timeout_seconds),
            audit.clone(),
        );
        let signin = SignInService::new(
            signin_options(&settings),
            signer.clone().filter(|_| settings.signin_enabled()),
            users.clone(),
            tree.user_owners.clone(),
            Arc::clone(&engines.store),
            Arc::clone(&clock),
        );
        let consumers = ConsumerKeys::new(
            Arc::clone(&engines.store),
            Arc::clone(&clock),
            settings.gateway_consumer_key()?,
            settings.gateway.require_api_key,
        );
        let notifications = NotificationService::new(
            Arc::clone(&engines.store),
            users.clone(),
            users.vault().clone(),
            Arc::clone(&clock),
            NotificationOptions {
                max_recipients: settings.notifications.max_recipients,
                installation_name: settings.notifications.installation_name.clone(),
                message_id_domain: settings.notifications.message_id_domain.clone(),
                default_country_code: settings.users.default_country_code.clone(),
            },
        );
        let orgs = if settings.content.channel_url().is_some() {
            orgs.with_channel_registration(notifications.clone())
        } else {
            orgs
        };
        let otp = OtpService::new(
            Arc::clone(&engines.store),
            users.vault().clone(),
            Arc::clone(&clock),
            OtpPolicy {
                length: settings.otp.length,
                ttl_ms: settings.otp.ttl_seconds * 1000,
                allowed_attempts: settings.otp.allowed_attempts,
                per_hour: settings.otp.per_hour,
                per_day: settings.otp.per_day,
            },
            notifications.clone(),
            settings.users.default_country_code.clone(),
        );
        let reset = ResetService::new(
            Arc::clone(&engines.store),
            users.clone(),
            notifications.clone(),
            users.vault().clone(),
            Arc::clone(&clock),
            ResetOptions {
                public_base_url: settings.signin.public_base_url.clone(),
                link_ttl_ms: settings.notifications.reset_link_ttl_seconds * 1000,
                default_country_code: settings.users.default_country_code.clone(),
            },
        );
        let bulk = BulkService::new(
            Arc::clone(&engines.store),
            users.vault().clone(),
            Arc::clone(&clock),
            BulkLimits {
                max_bytes: settings.bulk.max_bytes,
                user_rows: settings.bulk.user_rows,
                org_rows: settings.bulk.org_rows,
            },
        );
        // The runner started with the other actors; from here on it has rows to run.
        let _ = bulk_rows.set(Arc::new(bulk.rows(
            users.clone(),
            reset.clone(),
            orgs.clone(),
        )));
        let managed_tokens = signer.clone().map(|signer| {
            ManagedTokens::new(
                signer,
                settings.local_issuer().to_string(),
                settings.users.managed_token_ttl_seconds,
                Arc::clone(&clock),
            )
        });
        let callers = CallerResolver::new(
            verifier,
            service_credential.clone(),
            Arc::clone(&engines.store),
        )
        .with_managed_tokens(managed_tokens);
        let merge = MergeService::new(
            Arc::clone(&engines.store),
            callers.clone(),
            tree.merges.clone(),
            Arc::clone(&clock),
        );
        let feed = FeedService::new(Arc::clone(&engines.store), Arc::clone(&clock));
        let consent = ConsentService::new(
            Arc::clone(&engines.store),
            Arc::clone(&clock),
            settings.users.consent_expiry_days,
        );
        let declarations = DeclarationService::new(
            Arc::clone(&engines.store),
            users.vault().clone(),
            Arc::clone(&clock),
        );
        let migration = MigrationService::new(
            Arc::clone(&engines.store),
            users.owners().clone(),
            notifications.clone(),
            users.vault().clone(),
            Arc::clone(&clock),
            settings.users.default_country_code.clone(),
        );
        let notes = NoteService::new(
            Arc::clone(&engines.store),
            Arc::clone(&engines.search),
            Arc::clone(&clock),
            search_limits,
        );
        let files = FileService::new(
            Arc::clone(&engines.blobs),
            FileOptions {
                max_bytes: settings.files.max_bytes,
                allowed_types: settings
                    .files
                    .allowed_types
                    .iter()
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect(),
                default_container: settings.files.default_container.clone(),
            },
        );
        let ownership = OwnershipService::new(Arc::clone(&engines.store), Arc::clone(&clock));
        let tnc = TncService::new(Arc::clone(&engines.store), users.owners().clone());
        let managed = ManagedUserService::new(
            Arc::clone(&engines.store),
            users.clone(),
            reset.clone(),
            callers.clone(),
            settings.users.managed_user_limit,
            settings.users.default_country_code.clone(),
        );
        let liveness = tree.tree.liveness();
        let state = AppState(Arc::new(AppInner {
            network: network_policy(&settings, Arc::clone(&engines.rate_counter))?,
            callers,
            health: HealthService::new(engines.store, engines.search, liveness),
            users,
            orgs,
            roles,
            locations,
            preferences,
            settings: system_settings,
            data_sync,
            signin,
            notifications,
            otp,
            reset,
            merge,
            feed,
            managed,
            migration,
            notes,
            files,
            bulk,
            ownership,
            consent,
            declarations,
            tnc,
            consumers,
            request_timeout: Duration::from_secs(settings.http.request_timeout_seconds),
            body_limit: settings.http.body_limit_bytes,
            json_body_limit: settings.http.json_body_limit_bytes,
            max_concurrent_requests: settings.http.max_concurrent_requests,
            cors_allowed_origins: settings.http.cors_allowed_origins.clone(),
        }));
        let public = TcpListener::bind(&settings.http.listen).await?;
        let internal = TcpListener::bind(&settings.http.internal_listen).await?;
        Ok(Application {
            public,
            internal,
            state,
            tree,
            signer,
            service_credential,
            admin_user_id,
            settings,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn internal_addr(&self) -> SocketAddr {
        self.internal
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Signs tokens the service accepts (used by `userorg token` and by tests).
    pub fn signer(&self) -> Option<&LocalSigner> {
        self.signer.as_ref()
    }

    /// The indexer's client: tests wait for the index to catch up with it.
    pub fn indexer(&self) -> crate::actors::indexer::IndexerClient {
        self.tree.indexer.clone()
    }

    /// The bulk upload runner's client: tests make it run the uploads now.
    pub fn bulk_runner(&self) -> crate::actors::bulk::BulkClient {
        self.tree.bulk.clone()
    }

    /// The notification dispatcher's client: tests make it deliver now.
    pub fn dispatcher(&self) -> crate::actors::dispatcher::DispatcherClient {
        self.tree.dispatcher.clone()
    }

    /// The scheduler's client: tests run a housekeeping round now.
    pub fn scheduler(&self) -> crate::actors::scheduler::SchedulerClient {
        self.tree.scheduler.clone()
    }

    /// The credential other services present on the internal listener.
    pub fn service_credential(&self) -> &ServiceCredential {
        &self.service_credential
    }

    /// The bootstrap ADMIN user, unless `seed.bootstrap_admin` is off.
    pub fn admin_user_id(&self) -> Option<&str> {
        self.admin_user_id.as_deref()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves both listeners until `shutdown` completes, then drains requests and stops the
    /// actor tree.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_sender.send(true);
        });
        let tls_of = |cert: &str, key: &str| -> anyhow::Result<Option<Arc<ReloadingTls>>> {
            if cert.is_empty() {
                return Ok(None);
            }
            let tls = ReloadingTls::load(Path::new(cert), Path::new(key))?;
            tls.watch(Duration::from_secs(
                self.settings.http.tls_reload_seconds.max(1),
            ));
            Ok(Some(tls))
        };
        let http = &self.settings.http;
        let public_tls = tls_of(&http.tls_cert_file, &http.tls_key_file)?;
        let internal_tls = tls_of(&http.internal_tls_cert_file, &http.internal_tls_key_file)?;
        // Browsers that reached the service over TLS keep to it.
        let hsts = |on: bool| {
            move |mut response: axum::response::Response| {
                if on {
                    response.headers_mut().insert(
                        axum::http::header::STRICT_TRANSPORT_SECURITY,
                        axum::http::HeaderValue::from_static("max-age=31536000"),
                    );
                }
                response
            }
        };
        let public_app = tower::ServiceExt::map_response(
            axum::middleware::from_fn_with_state(
                (self.state.clone(), Listener::Public),
                crate::http::gateway::gateway,
            )
            .layer(build_router(self.state.clone(), Listener::Public)),
            hsts(public_tls.is_some()),
        );
        let internal_app = tower::ServiceExt::map_response(
            axum::middleware::from_fn_with_state(
                (self.state.clone(), Listener::Internal),
                crate::http::gateway::gateway,
            )
            .layer(build_router(self.state.clone(), Listener::Internal)),
            hsts(internal_tls.is_some()),
        );
        tracing::info!(
            public = %self.public_addr(),
            internal = %self.internal_addr(),
            "userorg listening"
        );
        let options = |tls| crate::http::server::ServeOptions {
            tls,
            header_read_timeout: Duration::from_secs(
                self.settings.http.header_read_timeout_seconds,
            ),
            drain_timeout: Duration::from_secs(self.settings.http.request_timeout_seconds + 5),
        };
        let public = crate::http::server::serve(
            self.public,
            public_app,
            stop_receiver.clone(),
            options(public_tls),
        );
        let internal = crate::http::server::serve(
            self.internal,
            internal_app,
            stop_receiver,
            options(internal_tls),
        );
        let (public_result, internal_result) = tokio::join!(public, internal);
        tracing::info!("listeners stopped, stopping actors");
        self.tree.shutdown().await;
        tracing::info!("userorg stopped");
        public_result?;
        internal_result?;
        Ok(())
    }
}

/// The address rules and rate limits of the configuration (already validated at load).
fn network_policy(
    settings: &Settings,
    counter: Arc<dyn RateCounter>,
) -> anyhow::Result<NetworkPolicy> {
    let nets = |key: &str, list: &[String]| {
        parse_nets(list)
            .map_err(|reason| anyhow::anyhow!("invalid configuration key `{key}`: {reason}"))
    };
    let network = &settings.network;
    let limits = &settings.rate_limits;
    Ok(NetworkPolicy {
        addressing: Addressing {
            trusted_proxies: nets("network.trusted_proxies", &network.trusted_proxies)?,
            public: AddressRules {
                allow: nets("network.public_allow", &network.public_allow)?,
                deny: nets("network.public_deny", &network.public_deny)?,
            },
            internal: AddressRules {
                allow: nets("network.internal_allow", &network.internal_allow)?,
                deny: nets("network.internal_deny", &network.internal_deny)?,
            },
        },
        limits: RateLimits::new(
            RateLimitSettings {
                per_client: limits.per_client_per_minute,
                lookup_per_client: limits.lookup_per_client_per_minute,
                signup_per_client: limits.signup_per_client_per_minute,
                per_identifier: limits.per_identifier_per_minute,
            },
            counter,
        ),
    })
}

/// This instance's id, kept in the data dir so an instance-local consumer (the embedded index's
/// indexer) resumes under the same name after a restart.
pub fn instance_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let file = data_dir.join("instance-id");
    match std::fs::read_to_string(&file) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            std::fs::write(&file, &id)?;
            Ok(id)
        }
    }
}

/// The process environment as a map, for [`Settings::load`].
pub fn process_environment() -> HashMap<String, String> {
    std::env::vars().collect()
}

/// The sign-in's options from `[signin]`.
fn signin_options(settings: &Settings) -> SignInOptions {
    let signin = &settings.signin;
    let brute_force = &signin.brute_force;
    SignInOptions {
        realms: signin
            .realms
            .iter()
            .map(|realm| (realm.clone(), settings.realm_issuer(realm)))
            .collect(),
        federation_id: signin.federation_id.clone(),
        access_ttl_seconds: signin.access_token_ttl_seconds,
        refresh_ttl_seconds: signin.refresh_token_ttl_seconds,
        session_max_seconds: signin.session_max_seconds,
        rotate_refresh_tokens: signin.rotate_refresh_tokens,
        clients: signin
            .clients
            .iter()
            .map(|client| OidcClient::parse(client))
            .collect(),
        lockout: LockoutPolicy {
            enabled: brute_force.enabled,
            failure_factor: brute_force.failure_factor,
            wait_increment_ms: brute_force.wait_increment_seconds * 1000,
            max_wait_ms: brute_force.max_wait_seconds * 1000,
            failure_reset_ms: brute_force.failure_reset_seconds * 1000,
            permanent: brute_force.permanent_lockout,
        },
    }
}

/// How the dispatcher addresses and retries messages (`[notifications]`).
fn dispatch_settings(settings: &Settings) -> DispatchSettings {
    let notifications = &settings.notifications;
    DispatchSettings {
        from: notifications.from.clone(),
        message_id_domain: notifications.message_id_domain.clone(),
        retry: crate::domain::notification::RetryPolicy {
            max_attempts: notifications.max_attempts,
            base_ms: notifications.retry_base_ms,
            max_ms: notifications.retry_max_ms,
        },
        concurrency: notifications.concurrency,
    }
}

/// The merge step after which a test's failure point aborts the process
/// (`USERORG_FAILPOINT=merge:<step>`, e.g. `merge:marked`); none otherwise.
fn merge_failure_point() -> Option<crate::domain::merge::MergeStep> {
    let point = std::env::var("USERORG_FAILPOINT").ok()?;
    let step = crate::domain::merge::MergeStep::from_name(point.strip_prefix("merge:")?)?;
    tracing::warn!(
        step = step.name(),
        "failure point armed: the process aborts after this merge step"
    );
    Some(step)
}
