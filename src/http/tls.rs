//! TLS for a listener: a certificate chain and private key from PEM files, TLS 1.2 and 1.3
//! only (rustls has nothing older) with the ring provider, ALPN for HTTP/2 and HTTP/1.1. The
//! files are read again when their modification time changes (checked every
//! `http.tls_reload_seconds`), so a renewed certificate is served without a restart; a renewal
//! that does not load keeps the current certificate, with a warning.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// A listener's certificate, reloaded when its files change.
pub struct ReloadingTls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
    stamp: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn server_config(cert: &Path, key: &Path) -> anyhow::Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("bad certificate in {}: {e}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("no certificate in {}", cert.display());
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("cannot read the private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            anyhow::anyhow!(
                "certificate and key of {} do not match: {e}",
                cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

impl ReloadingTls {
    /// Loads the files; an error here stops the start-up.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<ReloadingTls>> {
        let stamp = (modified(cert), modified(key));
        let config = server_config(cert, key)?;
        Ok(Arc::new(ReloadingTls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(Arc::new(config)),
            stamp: Mutex::new(stamp),
        }))
    }

    /// The acceptor of the certificate in force.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        TlsAcceptor::from(config)
    }

    /// Reads the files again if either changed; true when a new certificate is in force.
    pub fn reload_if_changed(&self) -> bool {
        let stamp = (modified(&self.cert), modified(&self.key));
        let mut seen = match self.stamp.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if *seen == stamp {
            return false;
        }
        *seen = stamp;
        match server_config(&self.cert, &self.key) {
            Ok(config) => {
                match self.current.write() {
                    Ok(mut guard) => *guard = Arc::new(config),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(config),
                }
                tracing::info!(file = %self.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(error) => {
                tracing::warn!(%error, "TLS files changed but do not load, keeping the current certificate");
                false
            }
        }
    }

    /// Checks the files every `every` until the process ends.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let tls = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let tls = Arc::clone(&tls);
                let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
            }
        });
    }
}
