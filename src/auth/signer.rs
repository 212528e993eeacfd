//! The signing key pair of an embedded install, and tokens minted with it.
//!
//! Sunbird gets its tokens from Keycloak. An embedded `userorg serve` has no Keycloak, so on first
//! start it creates an RSA key pair, publishes the public half in the token key directory (file
//! name = `kid`, exactly like a Keycloak key) and mints tokens with the private half. The verifier
//! then treats local tokens like any other: there is no second code path to get wrong.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::AuthError;
use super::keys::{MIN_RSA_BITS, parse_public_key};

/// Prefix of the `kid` of locally generated keys, so an operator can tell them from Keycloak's.
pub const LOCAL_KID_PREFIX: &str = "userorg-local-";

/// File name of the private key under `<data dir>/keys/`.
const PRIVATE_KEY_FILE: &str = "local-signing-key.pem";

/// Size of generated keys: Keycloak's default, and what RS256 is specified for.
const GENERATED_KEY_BITS: usize = 2048;

/// Claims of a token to mint. Registered claims (`sub`, `iss`, `aud`, `iat`, `nbf`, `exp`, `jti`,
/// `typ`) are set by [`LocalSigner::mint`] and win over entries of the same name in `extra`, so a
/// caller cannot stretch a lifetime or change the subject through `extra` by mistake.
#[derive(Debug, Clone, PartialEq)]
pub struct MintClaims {
    /// The `sub` claim: the user id, or Keycloak's `f:<provider>:<user id>` form.
    pub subject: String,
    /// The `iss` claim; must be one the verifier accepts.
    pub issuer: String,
    /// Lifetime in seconds; must be positive.
    pub ttl_seconds: i64,
    /// The `aud` claim, when the verifier checks audiences.
    pub audience: Option<String>,
    /// Any other claims (`parentId` of a for-token, `roles`, ...).
    pub extra: Map<String, Value>,
}

impl MintClaims {
    /// Claims for `subject` from `issuer`, valid `ttl_seconds`, no audience, nothing extra.
    pub fn new(subject: impl Into<String>, issuer: impl Into<String>, ttl_seconds: i64) -> Self {
        MintClaims {
            subject: subject.into(),
            issuer: issuer.into(),
            ttl_seconds,
            audience: None,
            extra: Map::new(),
        }
    }
}

/// Mints RS256 tokens with the embedded install's own key.
///
/// The `kid` is derived from the public key (`userorg-local-` + 16 hex digits of the SHA-256 of
/// its SPKI DER), so it is stable across restarts without being stored anywhere, and a replaced key
/// gets a new `kid` instead of silently invalidating tokens under the old name.
#[derive(Clone)]
pub struct LocalSigner {
    kid: String,
    encoding_key: EncodingKey,
    public_key_pem: String,
    private_key_path: PathBuf,
}

impl fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSigner")
            .field("kid", &self.kid)
            .field("private_key_path", &self.private_key_path)
            .finish_non_exhaustive()
    }
}

impl LocalSigner {
    /// Loads the local signing key, creating it on first use, and makes sure its public key is in
    /// `public_keys_dir` under its `kid`.
    ///
    /// The private key lives in `data_dir/keys/local-signing-key.pem` (PKCS#8 PEM, mode 0600, in a
    /// 0700 directory). It is written to a temporary file and hard-linked into place, so a crash
    /// never leaves a half-written key and two processes starting at once agree on one key. An
    /// existing key file readable by group or others is tightened to 0600 with a warning. Call this
    /// before loading the [`crate::auth::KeyRing`], so the ring sees the public key.
    ///
    /// Blocking: generation takes a fraction of a second, file I/O is synchronous.
    pub fn ensure(data_dir: &Path, public_keys_dir: &Path) -> Result<LocalSigner, AuthError> {
        LocalSigner::ensure_with(data_dir, public_keys_dir, generate_private_key)
    }

    /// [`LocalSigner::ensure`] with the key generator injected, so tests reuse one generated key.
    pub(crate) fn ensure_with(
        data_dir: &Path,
        public_keys_dir: &Path,
        generate: impl FnOnce() -> Result<RsaPrivateKey, AuthError>,
    ) -> Result<LocalSigner, AuthError> {
        let keys_dir = data_dir.join("keys");
        let private_key_path = keys_dir.join(PRIVATE_KEY_FILE);
        let private_key = match load_private_key(&private_key_path)? {
            Some(key) => key,
            None => create_private_key(&keys_dir, &private_key_path, generate)?,
        };

        let public_key = private_key.to_public_key();
        let public_der = public_key
            .to_public_key_der()
            .map_err(|_| AuthError::Signing("cannot encode the local public key"))?;
        let fingerprint = hex::encode(Sha256::digest(public_der.as_bytes()));
        let kid = format!("{LOCAL_KID_PREFIX}{}", &fingerprint[..16]);
        let public_key_pem = public_key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| AuthError::Signing("cannot encode the local public key"))?;
        publish_public_key(public_keys_dir, &kid, &public_key, &public_key_pem)?;

        let private_der = private_key
            .to_pkcs1_der()
            .map_err(|_| AuthError::Signing("cannot encode the local private key"))?;
        Ok(LocalSigner {
            kid,
            encoding_key: EncodingKey::from_rsa_der(private_der.as_bytes()),
            public_key_pem,
            private_key_path,
        })
    }

    /// The `kid` tokens are signed under, which is also the public key's file name.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// Where the private key is stored.
    pub fn private_key_path(&self) -> &Path {
        &self.private_key_path
    }

    /// Mints a token valid from now for `claims.ttl_seconds`.
    pub fn mint(&self, claims: MintClaims) -> Result<String, AuthError> {
        self.mint_at(claims, chrono::Utc::now().timestamp())
    }

    /// Mints a token as if the time were `now` (seconds since the Unix epoch): `iat` = `nbf` =
    /// `now`, `exp` = `now + ttl_seconds`, a random `jti` and `typ: "Bearer"` like a Keycloak
    /// access token. The header carries `alg: RS256`, `typ: JWT` and the `kid`.
    pub fn mint_at(&self, claims: MintClaims, now: i64) -> Result<String, AuthError> {
        if claims.ttl_seconds <= 0 {
            return Err(AuthError::Settings("token lifetime must be positive"));
        }
        if claims.subject.is_empty() || claims.issuer.is_empty() {
            return Err(AuthError::Settings(
                "token subject and issuer must not be empty",
            ));
        }
        let expires_at = now
            .checked_add(claims.ttl_seconds)
            .ok_or(AuthError::Settings("token lifetime is out of range"))?;

        let mut payload = claims.extra;
        payload.insert("iat".into(), now.into());
        payload.insert("nbf".into(), now.into());
        payload.insert("exp".into(), expires_at.into());
        payload.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
        payload.insert("typ".into(), "Bearer".into());
        payload.insert("sub".into(), claims.subject.into());
        payload.insert("iss".into(), claims.issuer.into());
        match claims.audience {
            Some(audience) => payload.insert("aud".into(), audience.into()),
            None => payload.remove("aud"),
        };

        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &payload, &self.encoding_key)
            .map_err(|_| AuthError::Signing("rs256 signing failed"))
    }
}

fn generate_private_key() -> Result<RsaPrivateKey, AuthError> {
    RsaPrivateKey::new(&mut rand_core::OsRng, GENERATED_KEY_BITS)
        .map_err(|_| AuthError::Signing("rsa key generation failed"))
}

/// Reads the private key if the file exists. PKCS#8 is what we write; PKCS#1
/// (`BEGIN RSA PRIVATE KEY`) is accepted too, for a key made by hand with older openssl.
fn load_private_key(path: &Path) -> Result<Option<RsaPrivateKey>, AuthError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(AuthError::io(path, error)),
    };
    tighten_permissions(path)?;
    let unusable = |reason| AuthError::Key {
        origin: path.display().to_string(),
        reason,
    };
    let key = RsaPrivateKey::from_pkcs8_pem(&text)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&text))
        .map_err(|_| unusable("not an rsa private key in pem"))?;
    if key.n().bits() < MIN_RSA_BITS {
        return Err(unusable("rsa modulus shorter than 2048 bits"));
    }
    Ok(Some(key))
}

fn create_private_key(
    keys_dir: &Path,
    key_path: &Path,
    generate: impl FnOnce() -> Result<RsaPrivateKey, AuthError>,
) -> Result<RsaPrivateKey, AuthError> {
    create_private_dir(keys_dir)?;
    let key = generate()?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| AuthError::Signing("cannot encode the local private key"))?;

    // Written under a hidden temporary name, then hard-linked: a link fails when the target
    // exists, so of two processes creating a key at once exactly one wins and the other loads it.
    let temp_path = keys_dir.join(format!(".{PRIVATE_KEY_FILE}.{}.tmp", std::process::id()));
    write_new_file(&temp_path, pem.as_bytes(), 0o600)?;
    let linked = fs::hard_link(&temp_path, key_path);
    let _ = fs::remove_file(&temp_path);
    match linked {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return load_private_key(key_path)?.ok_or_else(|| AuthError::io(key_path, error));
        }
        Err(error) => return Err(AuthError::io(key_path, error)),
    }
    sync_dir(keys_dir);
    tracing::info!(path = %key_path.display(), "created local token signing key");
    Ok(key)
}

/// Writes the public key as `public_keys_dir/<kid>` unless an equal key is already there.
fn publish_public_key(
    public_keys_dir: &Path,
    kid: &str,
    public_key: &RsaPublicKey,
    pem: &str,
) -> Result<(), AuthError> {
    fs::create_dir_all(public_keys_dir).map_err(|error| AuthError::io(public_keys_dir, error))?;
    let path = public_keys_dir.join(kid);
    match fs::read_to_string(&path) {
        Ok(existing) if parse_public_key(&existing).as_ref() == Ok(public_key) => return Ok(()),
        Ok(_) => {
            tracing::warn!(file = %path.display(), "replacing a different key under the local kid")
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(AuthError::io(&path, error)),
    }
    // Hidden temporary name: a key ring loading concurrently ignores it.
    let temp_path = public_keys_dir.join(format!(".{kid}.{}.tmp", std::process::id()));
    write_new_file(&temp_path, pem.as_bytes(), 0o644)?;
    fs::rename(&temp_path, &path).map_err(|error| {
        let _ = fs::remove_file(&temp_path);
        AuthError::io(&path, error)
    })?;
    sync_dir(public_keys_dir);
    tracing::info!(key.id = kid, file = %path.display(), "published local token verification key");
    Ok(())
}

/// Creates `path` (replacing a stale leftover) with `mode` from the start, so the secret is
/// never readable by others even for an instant, and flushes it to disk.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), AuthError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(AuthError::io(path, error)),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = options.open(path).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    result.map_err(|error| {
        let _ = fs::remove_file(path);
        AuthError::io(path, error)
    })
}

/// Creates the private key directory with mode 0700 (its parents with the default mode).
fn create_private_dir(dir: &Path) -> Result<(), AuthError> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).map_err(|error| AuthError::io(parent, error))?;
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|error| AuthError::io(dir, error))
}

/// Makes an existing private key file private again if someone loosened its mode.
fn tighten_permissions(path: &Path) -> Result<(), AuthError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = fs::metadata(path).map_err(|error| AuthError::io(path, error))?;
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "local signing key was readable by others, setting mode 0600");
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                .map_err(|error| AuthError::io(path, error))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Best-effort fsync of a directory so a new entry survives a crash; failure only weakens
/// durability (the key would be regenerated), so it is not an error.
fn sync_dir(dir: &Path) {
    if let Ok(handle) = fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}
