//! The `userorg` binary: parses the command line, loads the configuration and hands over to the
//! library. `serve` is the default command.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use userorg::app::{Application, process_environment};
use userorg::auth::{LocalSigner, MintClaims, ServiceCredential};
use userorg::config::{LogFormat, Settings};
use userorg::services::audit::Verdict;

#[derive(Parser)]
#[command(name = "userorg", version, about = "Sunbird UserOrg service")]
struct Cli {
    /// A TOML file layered over the defaults.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Print a token signed with the local key.
    Token {
        /// The user the token is for.
        #[arg(long, conflicts_with = "admin")]
        user: Option<String>,
        /// A token for the bootstrap administrator.
        #[arg(long, conflicts_with = "service")]
        admin: bool,
        /// The service credential of the internal listener (send it as
        /// `Authorization: Bearer <credential>`).
        #[arg(long, conflicts_with = "user")]
        service: bool,
        /// Lifetime in seconds (default: auth.local_token_ttl_seconds).
        #[arg(long)]
        ttl: Option<i64>,
    },
    /// Rebuild the search index from the store (run while the server is stopped).
    Reindex,
    /// Load users in bulk from CSV or JSON lines, straight into the store, then rebuild the
    /// search index (run while the server is stopped; run again to resume).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// The audit trail of sensitive operations.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The PII encryption key (run while the server is stopped).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// API consumers of the gateway, as Kong's (run while the server is stopped).
    Consumer {
        #[command(subcommand)]
        command: ConsumerCommand,
    },
    /// Outgoing email and SMS messages: their delivery state, and a retry of dead ones (with
    /// the embedded store, run while the server is stopped).
    Notifications {
        #[command(subcommand)]
        command: NotificationsCommand,
    },
    /// Email and SMS templates: Sunbird's seeded ones and a tenant's own versions of them.
    Templates {
        #[command(subcommand)]
        command: TemplatesCommand,
    },
    /// The store engine's schema (tables, indexes): safe to run at any time, also while
    /// instances serve.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Users: a CSV with a header of field names (or of `userProfileConfig.csv` display
    /// names), or JSON lines of create bodies. Rejected rows go to `<file>.rejected.jsonl`.
    Users {
        file: std::path::PathBuf,
        /// Rows per commit.
        #[arg(long, default_value_t = 2000)]
        batch: usize,
    },
}

#[derive(Subcommand)]
enum TemplatesCommand {
    /// One line per stored template: name, tenant (`-` for the installation's), kind.
    List,
    /// Stores a template: the installation's version of a seeded one, or with `--tenant` the
    /// version used for that tenant's users (a root organisation id). The body is checked by
    /// rendering it before it is stored.
    Set {
        /// A seeded template name (`welcome`, `resetPasswordLink`, `otp`, ...).
        name: String,
        /// The root organisation whose users get this version.
        #[arg(long)]
        tenant: Option<String>,
        /// The body: minijinja, HTML for email templates (auto-escaped), text for SMS ones.
        #[arg(long)]
        body_file: std::path::PathBuf,
        /// The email subject (minijinja); the seeded one when not given.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Removes a tenant's version (its users get the installation's again), or with no
    /// `--tenant` puts the seeded text back.
    Unset {
        name: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum NotificationsCommand {
    /// One line per message, oldest first: id, channel, state, attempts, source, template,
    /// created (UTC), last error. Never the address or the text.
    List {
        /// Only messages in this state: queued, retrying, delivered or dead.
        #[arg(long)]
        state: Option<String>,
    },
    /// Queue dead messages again with a fresh attempt budget: the ids given, or every dead one.
    Retry {
        ids: Vec<String>,
        /// Every dead message.
        #[arg(long, conflicts_with = "ids")]
        dead: bool,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Create what is missing (idempotent); prints what was done.
    Apply,
}

#[derive(Subcommand)]
enum ConsumerCommand {
    /// Create a consumer (or add groups and a credential to one) and print its key: a consumer
    /// token to send as `Authorization: Bearer <key>` on `/api/...` paths.
    Create {
        /// The consumer's name (Kong's `username`), e.g. `portal_loggedin`.
        name: String,
        /// Its ACL groups, comma separated, e.g. `userAccess,userUpdate`.
        #[arg(long, value_delimiter = ',', required = true)]
        groups: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Replace the key file's key with a new one (the old one is kept as retired), then reseal.
    Rotate,
    /// Rewrite every value not sealed with the current key under it.
    Reseal,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain: exits 1 when an entry was changed or removed.
    Verify,
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // The PostgreSQL driver logs every statement's parameters at debug level (whole rows,
        // password hashes and session tokens among them) and the server's notices at info:
        // warnings and errors only, whatever RUST_LOG says.
        .add_directive("tokio_postgres=warn".parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref(), &process_environment()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("userorg: {error}");
            std::process::exit(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Token { service: true, .. } => service_credential(settings),
        Command::Token {
            user, admin, ttl, ..
        } => token(settings, user, admin, ttl),
        Command::Reindex => reindex(settings).await,
        Command::Import {
            command: ImportCommand::Users { file, batch },
        } => import_users(settings, &file, batch).await,
        Command::Audit {
            command: AuditCommand::Verify,
        } => audit_verify(settings).await,
        Command::Keys {
            command: KeysCommand::Rotate,
        } => {
            let keys_dir = settings.data_dir.join("keys");
            let id =
                userorg::crypto::rotate_key_file(&settings.security.pii_encryption_key, &keys_dir)?;
            println!("new PII key {id}");
            reseal(settings).await
        }
        Command::Consumer {
            command: ConsumerCommand::Create { name, groups },
        } => consumer_create(settings, &name, &groups).await,
        Command::Keys {
            command: KeysCommand::Reseal,
        } => reseal(settings).await,
        Command::Notifications {
            command: NotificationsCommand::List { state },
        } => notifications_list(settings, state.as_deref()).await,
        Command::Notifications {
            command: NotificationsCommand::Retry { ids, dead },
        } => notifications_retry(settings, ids, dead).await,
        Command::Templates { command } => templates(settings, command).await,
        Command::Schema {
            command: SchemaCommand::Apply,
        } => {
            for line in userorg::engines::apply_schema(&settings).await? {
                println!("{line}");
            }
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    init_tracing(settings.log.format);
    let app = Application::build(settings).await?;
    tracing::info!(
        "get an admin token with: userorg token --admin (send it as x-authenticated-user-token)"
    );
    app.run_until_stopped(shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("interrupt received, shutting down"),
        _ = terminate => tracing::info!("terminate received, shutting down"),
    }
}

fn service_credential(settings: Settings) -> anyhow::Result<()> {
    let credential = ServiceCredential::load(
        &settings.security.service_credential,
        &settings.data_dir.join("keys").join("service-credential"),
    )?;
    println!("{}", credential.reveal());
    Ok(())
}

fn token(
    settings: Settings,
    user: Option<String>,
    admin: bool,
    ttl: Option<i64>,
) -> anyhow::Result<()> {
    let subject = match (user, admin) {
        (Some(user), _) => user,
        (None, true) => userorg::seed::read_bootstrap_admin(&settings.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "no bootstrap admin in {} (start the server once first): {e}",
                settings.data_dir.display()
            )
        })?,
        (None, false) => anyhow::bail!("give --user ID or --admin"),
    };
    if !settings.local_signer_enabled() {
        anyhow::bail!(
            "the local signer is off (auth.local_signer, or external keys in auth.public_keys_dir): tokens come from your identity provider"
        );
    }
    let publish_to = settings.local_key_publish_dir();
    let signer = LocalSigner::ensure(&settings.data_dir, publish_to.as_deref())?;
    let claims = MintClaims::new(
        subject,
        settings.local_issuer().to_string(),
        ttl.unwrap_or(settings.auth.local_token_ttl_seconds),
    );
    println!("{}", signer.mint(claims)?);
    Ok(())
}

async fn reseal(settings: Settings) -> anyhow::Result<()> {
    let store = userorg::engines::open_store(&settings).await?;
    let vault = open_vault(&settings)?;
    let report = userorg::services::users::reseal::reseal_all(&store, &vault)
        .await
        .map_err(|e| anyhow::anyhow!("reseal stopped: {e}"))?;
    let rows = userorg::services::users::reseal::reseal_rows(&store, &vault)
        .await
        .map_err(|e| anyhow::anyhow!("reseal stopped: {e}"))?;
    println!(
        "resealed {} notification and declaration rows",
        rows.rows_rewritten
    );
    // The store's key check too, so the retired key can go before the next start.
    userorg::seed::check_key_material(&store, &vault).await?;
    println!(
        "resealed {} values in {} of {} users under key {}",
        report.values_resealed,
        report.users_rewritten,
        report.users_scanned,
        vault.current_key_id()
    );
    if !rows.unreadable.is_empty() {
        anyhow::bail!(
            "{} rows have values no configured key opens: {}",
            rows.unreadable.len(),
            rows.unreadable.join(", ")
        );
    }
    if !report.unreadable.is_empty() {
        anyhow::bail!(
            "{} users have values no configured key opens: {}",
            report.unreadable.len(),
            report.unreadable.join(", ")
        );
    }
    Ok(())
}

async fn audit_verify(settings: Settings) -> anyhow::Result<()> {
    let store = userorg::engines::open_store(&settings).await?;
    match userorg::services::audit::verify(&store)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the audit trail: {e}"))?
    {
        Verdict::Intact { entries } => {
            println!("audit trail intact: {entries} entries");
            Ok(())
        }
        Verdict::Broken { sequence, reason } => {
            println!("audit trail broken at entry {sequence}: {reason}");
            std::process::exit(1);
        }
    }
}

async fn consumer_create(settings: Settings, name: &str, groups: &[String]) -> anyhow::Result<()> {
    let store = userorg::engines::open_store(&settings).await?;
    let keys = userorg::services::gateway::ConsumerKeys::new(
        store,
        std::sync::Arc::new(userorg::clock::SystemClock),
        settings.gateway_consumer_key()?,
        settings.gateway.require_api_key,
    );
    let token = keys
        .create(name, groups)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the consumer: {e}"))?;
    println!("{token}");
    if !settings.gateway.require_api_key {
        eprintln!("note: [gateway] require_api_key is off: /api paths do not ask for keys yet");
    }
    Ok(())
}

async fn templates(settings: Settings, command: TemplatesCommand) -> anyhow::Result<()> {
    use userorg::notify::templates::{MessageTemplate, defaults};
    use userorg::storage::{Expect, KEY_SEPARATOR, Table, Transaction, compose_key};
    let store = userorg::engines::open_store(&settings).await?;
    let seeded = |name: &str| -> anyhow::Result<MessageTemplate> {
        defaults()
            .into_iter()
            .find(|template| template.name == name)
            .ok_or_else(|| anyhow::anyhow!("no seeded template is called {name}"))
    };
    let key_of = |name: &str, tenant: Option<&str>| match tenant {
        Some(tenant) => compose_key(&[name, tenant]),
        None => name.to_string(),
    };
    let mut transaction = Transaction::default();
    match command {
        TemplatesCommand::List => {
            let rows = store
                .scan(Table::MessageTemplate, "", None, 100_000)
                .await?;
            for row in rows {
                let (name, tenant) = row
                    .key
                    .split_once(KEY_SEPARATOR)
                    .unwrap_or((row.key.as_str(), "-"));
                let kind = if row.doc["html"].as_bool().unwrap_or(false) {
                    "email"
                } else {
                    "text"
                };
                println!("{name}\t{tenant}\t{kind}");
            }
            return Ok(());
        }
        TemplatesCommand::Set {
            name,
            tenant,
            body_file,
            subject,
        } => {
            let mut template = seeded(&name)?;
            template.body = std::fs::read_to_string(&body_file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", body_file.display()))?;
            if let Some(subject) = subject {
                template.subject = subject;
            }
            // A template that does not render is refused here, not at the first message.
            template
                .render(&serde_json::json!({}))
                .map_err(|e| anyhow::anyhow!("the template does not render: {e}"))?;
            transaction.put(
                Table::MessageTemplate,
                key_of(&name, tenant.as_deref()),
                serde_json::to_value(&template)?,
                Expect::Any,
            );
        }
        TemplatesCommand::Unset { name, tenant } => {
            let template = seeded(&name)?;
            match tenant.as_deref() {
                Some(tenant) => transaction.delete(
                    Table::MessageTemplate,
                    key_of(&name, Some(tenant)),
                    Expect::Any,
                ),
                None => transaction.put(
                    Table::MessageTemplate,
                    name.clone(),
                    serde_json::to_value(&template)?,
                    Expect::Any,
                ),
            }
        }
    }
    store.commit(transaction).await?;
    println!("done");
    Ok(())
}

async fn notifications_list(settings: Settings, state: Option<&str>) -> anyhow::Result<()> {
    use userorg::domain::notification::DeliveryState;
    let state = match state {
        Some(name) => Some(DeliveryState::from_name(name).ok_or_else(|| {
            anyhow::anyhow!("unknown state {name}: queued, retrying, delivered or dead")
        })?),
        None => None,
    };
    let store = userorg::engines::open_store(&settings).await?;
    let messages = userorg::actors::dispatcher::list(&store, state)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the notifications: {e}"))?;
    for message in &messages {
        let created = chrono::DateTime::from_timestamp_millis(message.created_ms)
            .map(|at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            message.id,
            message.channel.name(),
            message.state.name(),
            message.attempts,
            message.source,
            message.template,
            created,
            message.last_error
        );
    }
    eprintln!("{} messages", messages.len());
    Ok(())
}

async fn notifications_retry(
    settings: Settings,
    ids: Vec<String>,
    dead: bool,
) -> anyhow::Result<()> {
    use userorg::domain::notification::DeliveryState;
    let store = userorg::engines::open_store(&settings).await?;
    let ids = if dead {
        userorg::actors::dispatcher::list(&store, Some(DeliveryState::Dead))
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the notifications: {e}"))?
            .into_iter()
            .map(|message| message.id)
            .collect()
    } else if ids.is_empty() {
        anyhow::bail!("give message ids, or --dead for every dead message");
    } else {
        ids
    };
    let mut revived = 0;
    for id in &ids {
        match userorg::actors::dispatcher::revive(&store, id).await {
            Ok(true) => revived += 1,
            Ok(false) => eprintln!("{id}: not dead, left alone"),
            Err(error) => eprintln!("{id}: {error}"),
        }
    }
    println!("queued {revived} messages again");
    Ok(())
}

/// The progress bar of a long job: position, rate and ETA on standard error (hidden when it is
/// not a terminal).
fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}} ETA {{eta}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

async fn import_users(
    settings: Settings,
    file: &std::path::Path,
    batch: usize,
) -> anyhow::Result<()> {
    init_tracing(settings.log.format);
    let engines = userorg::engines::open(&settings).await?;
    let clock = userorg::clock::SystemClock;
    let vault = open_vault(&settings)?;
    userorg::seed::seed_reference_data(&engines.uncached_store, &settings, &clock).await?;
    userorg::seed::check_key_material(&engines.uncached_store, &vault).await?;
    let options = userorg::services::import::ImportOptions {
        policy: userorg::domain::rules::PasswordPolicy::new(&settings.security.password_regex)?,
        default_country_code: settings.users.default_country_code.clone(),
        username_suffix_length: settings.users.username_suffix_length,
        batch: batch.max(1),
        abort_after_batches: std::env::var("USERORG_FAILPOINT")
            .ok()
            .and_then(|point| point.strip_prefix("import:")?.parse().ok()),
    };
    // Lines, for the bar's length (the header of a CSV is one more than its rows).
    let lines = {
        use std::io::BufRead as _;
        std::io::BufReader::new(std::fs::File::open(file)?)
            .lines()
            .count() as u64
    };
    let bar = progress_bar(lines, "import");
    let started = std::time::Instant::now();
    let report = userorg::services::import::import_users(
        &engines.uncached_store,
        &vault,
        &clock,
        &options,
        file,
        &|line| bar.set_position(line),
    )
    .await?;
    bar.finish();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "imported {} users, rejected {}, skipped {} done before; {} rows read in {seconds:.1}s ({:.0} rows/s)",
        report.imported,
        report.rejected,
        report.skipped,
        report.read,
        report.read as f64 / seconds.max(1e-9)
    );
    for (reason, count) in &report.reasons {
        println!("  {count} rejected: {reason}");
    }
    if report.rejected > 0 {
        println!("rejected rows: {}", report.rejected_file.display());
    }
    rebuild_index(&engines).await
}

/// The vault of the configured PII keys.
fn open_vault(settings: &Settings) -> anyhow::Result<userorg::crypto::PiiVault> {
    userorg::crypto::PiiVault::load(
        &settings.security.pii_encryption_key,
        &settings.security.pii_retired_keys,
        &settings.security.blind_index_key,
        &settings.data_dir.join("keys"),
    )
}

/// Rebuilds the search index from the store and says how long it took.
async fn rebuild_index(engines: &userorg::engines::Engines) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let count =
        userorg::actors::indexer::rebuild_all(&engines.uncached_store, &engines.search).await?;
    println!(
        "reindexed {count} documents in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn reindex(settings: Settings) -> anyhow::Result<()> {
    init_tracing(settings.log.format);
    let engines = userorg::engines::open(&settings).await?;
    rebuild_index(&engines).await
}
