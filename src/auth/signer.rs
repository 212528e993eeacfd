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

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
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

/// The `typ` of access tokens, as Keycloak writes it.
pub const ACCESS_TOKEN_TYPE: &str = "Bearer";

/// Longest token [`LocalSigner::open_own`] reads (the sign-in's own tokens are far shorter).
const MAX_OWN_TOKEN_BYTES: usize = 8 * 1024;

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
    /// The `typ` claim: `Bearer` for access tokens (what the verifier accepts), `Refresh` or
    /// `ID` for the sign-in's other tokens.
    pub token_type: &'static str,
    /// The `jti` claim; a random one when `None`.
    pub id: Option<String>,
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
            token_type: ACCESS_TOKEN_TYPE,
            id: None,
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
    decoding_key: DecodingKey,
    /// The public key as a JWK (`kty`, `kid`, `use`, `alg`, `n`, `e`), for the JWKS endpoint.
    jwk: Value,
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
    ///
    /// `publish_to` is the key directory of the embedded install; beside an external identity
    /// provider it is `None`, so the local key is never written among the provider's keys (the
    /// caller pins it into the ring, bound to its own issuer).
    pub fn ensure(data_dir: &Path, publish_to: Option<&Path>) -> Result<LocalSigner, AuthError> {
        LocalSigner::ensure_with(data_dir, publish_to, generate_private_key)
    }

    /// [`LocalSigner::ensure`] with the key generator injected, so tests reuse one generated key.
    pub(crate) fn ensure_with(
        data_dir: &Path,
        publish_to: Option<&Path>,
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
        if let Some(dir) = publish_to {
            publish_public_key(dir, &kid, &public_key, &public_key_pem)?;
        }

        let private_der = private_key
            .to_pkcs1_der()
            .map_err(|_| AuthError::Signing("cannot encode the local private key"))?;
        let jwk = serde_json::json!({
            "kid": kid,
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(public_key.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public_key.e().to_bytes_be()),
        });
        let decoding_key = DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .map_err(|_| AuthError::Signing("cannot decode the local public key"))?;
        Ok(LocalSigner {
            kid,
            encoding_key: EncodingKey::from_rsa_der(private_der.as_bytes()),
            decoding_key,
            jwk,
            public_key_pem,
            private_key_path,
        })
    }

    /// The `kid` tokens are signed under, which is also the public key's file name.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JSON Web Key.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The claims of a token this key signed, of type `token_type`, from `issuer`, unexpired at
    /// `now`: the sign-in's check of its own refresh tokens, which the verifier of access tokens
    /// refuses by their type. Only RS256 under this key's `kid` is accepted.
    pub fn open_own(
        &self,
        token: &str,
        token_type: &str,
        issuer: &str,
        now: i64,
    ) -> Result<Map<String, Value>, AuthError> {
        if token.len() > MAX_OWN_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Malformed("not a compact JWS"))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Algorithm);
        }
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(AuthError::UnknownKey);
        }
        let mut validation = Validation::new(Algorithm::RS256);
        // Expiry is checked below against the injected time, not the system clock.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims =
            jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding_key, &validation)
                .map_err(|_| AuthError::BadSignature)?
                .claims;
        match claims.get("exp").and_then(Value::as_i64) {
            Some(exp) if exp > now => {}
            Some(_) => return Err(AuthError::Expired),
            None => return Err(AuthError::Malformed("no exp")),
        }
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(AuthError::WrongIssuer);
        }
        if claims.get("typ").and_then(Value::as_str) != Some(token_type) {
            return Err(AuthError::WrongTokenType);
        }
        Ok(claims)
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
    /// `now`, `exp` = `now + ttl_seconds`, the `jti` (random unless given) and the `typ`
    /// (`Bearer` by default, like a Keycloak access token). The header carries `alg: RS256`,
    /// `typ: JWT` and the `kid`.
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
        let id = claims
            .id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        payload.insert("jti".into(), id.into());
        payload.insert("typ".into(), claims.token_type.into());
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
    match fs::hard_link(&temp_path, key_path) {
        Ok(()) => {
            let _ = fs::remove_file(&temp_path);
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            let _ = fs::remove_file(&temp_path);
            return load_private_key(key_path)?.ok_or_else(|| AuthError::io(key_path, error));
        }
        Err(_) => {
            // Some network and FUSE file systems have no hard links. A rename is still atomic (no
            // half-written key) but may replace a key a concurrent process just created; that
            // process keeps working with its own kid until it restarts.
            if let Err(error) = fs::rename(&temp_path, key_path) {
                let _ = fs::remove_file(&temp_path);
                return Err(AuthError::io(key_path, error));
            }
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;
    use crate::auth::test_support::{ISSUER, test_keys};
    use crate::auth::{AuthError, KeyRing, TokenVerifier, VerifierSettings};

    const NOW: i64 = 1_750_000_000;

    struct Dirs {
        _root: tempfile::TempDir,
        data: PathBuf,
        public: PathBuf,
    }

    fn dirs() -> Dirs {
        let root = tempfile::tempdir().expect("tempdir");
        let data = root.path().join("data");
        let public = root.path().join("public-keys");
        Dirs {
            _root: root,
            data,
            public,
        }
    }

    /// `ensure` with the shared test key and a count of how often a key was generated.
    fn ensure(dirs: &Dirs, generated: &AtomicUsize) -> LocalSigner {
        LocalSigner::ensure_with(&dirs.data, Some(&dirs.public), || {
            generated.fetch_add(1, Ordering::SeqCst);
            Ok(test_keys().attacker.clone())
        })
        .expect("ensure")
    }

    fn verifier_for(dirs: &Dirs) -> TokenVerifier {
        let ring = KeyRing::load_dir(&dirs.public).expect("ring");
        TokenVerifier::new(ring, VerifierSettings::for_issuers([ISSUER])).expect("verifier")
    }

    #[test]
    fn ensure_twice_keeps_the_key_and_the_kid() {
        let dirs = dirs();
        let generated = AtomicUsize::new(0);
        let first = ensure(&dirs, &generated);
        let second = ensure(&dirs, &generated);
        assert_eq!(
            generated.load(Ordering::SeqCst),
            1,
            "the key is generated once"
        );
        assert_eq!(first.kid(), second.kid());
        assert_eq!(first.public_key_pem(), second.public_key_pem());

        let suffix = first
            .kid()
            .strip_prefix(LOCAL_KID_PREFIX)
            .expect("kid prefix");
        assert_eq!(suffix.len(), 16);
        assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            first.private_key_path(),
            dirs.data.join("keys").join("local-signing-key.pem")
        );
        assert!(
            first
                .public_key_pem()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        let debug = format!("{first:?}");
        assert!(
            !debug.contains("PRIVATE") && !debug.contains("MII"),
            "{debug}"
        );
    }

    #[test]
    fn ensure_writes_only_the_key_files() {
        let dirs = dirs();
        let signer = ensure(&dirs, &AtomicUsize::new(0));
        let mut public_files: Vec<_> = fs::read_dir(&dirs.public)
            .expect("public dir")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .into_string()
                    .expect("utf-8")
            })
            .collect();
        public_files.sort();
        assert_eq!(public_files, [signer.kid()]);
        let private_files: Vec<_> = fs::read_dir(dirs.data.join("keys"))
            .expect("keys dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(
            private_files,
            ["local-signing-key.pem"],
            "no temporary file is left"
        );
    }

    #[cfg(unix)]
    #[test]
    fn private_key_is_mode_0600_in_a_0700_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dirs = dirs();
        let signer = ensure(&dirs, &AtomicUsize::new(0));
        let mode = |path: &Path| fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(signer.private_key_path()), 0o600);
        assert_eq!(mode(&dirs.data.join("keys")), 0o700);

        // A loosened mode is tightened on the next start.
        fs::set_permissions(signer.private_key_path(), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        ensure(&dirs, &AtomicUsize::new(0));
        assert_eq!(mode(signer.private_key_path()), 0o600);
    }

    #[test]
    fn ensure_restores_a_missing_or_replaced_public_key() {
        let dirs = dirs();
        let generated = AtomicUsize::new(0);
        let signer = ensure(&dirs, &generated);
        let public_path = dirs.public.join(signer.kid());

        fs::remove_file(&public_path).expect("remove public key");
        ensure(&dirs, &generated);
        assert_eq!(
            fs::read_to_string(&public_path).expect("restored"),
            signer.public_key_pem()
        );

        let other = crate::auth::test_support::spki_pem(&test_keys().trusted);
        fs::write(&public_path, other).expect("overwrite");
        ensure(&dirs, &generated);
        assert_eq!(
            fs::read_to_string(&public_path).expect("restored"),
            signer.public_key_pem()
        );
        assert_eq!(generated.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn minted_tokens_verify_against_the_published_key() {
        let dirs = dirs();
        let signer = ensure(&dirs, &AtomicUsize::new(0));
        let verifier = verifier_for(&dirs);
        let mut claims =
            MintClaims::new("f:local:8454cb21-3ce9-4e30-85b5-fade097880d8", ISSUER, 600);
        claims.extra.insert("roles".into(), json!(["PUBLIC"]));
        let token = signer.mint_at(claims, NOW).expect("mint");

        let verified = verifier.verify_at(&token, NOW + 10).expect("verifies");
        assert_eq!(verified.user_id, "8454cb21-3ce9-4e30-85b5-fade097880d8");
        assert_eq!(verified.expires_at, NOW + 600);
        assert_eq!(verified.claims["iat"], json!(NOW));
        assert_eq!(verified.claims["nbf"], json!(NOW));
        assert_eq!(verified.claims["typ"], json!("Bearer"));
        assert_eq!(verified.claims["roles"], json!(["PUBLIC"]));
        assert!(
            verified.claims["jti"]
                .as_str()
                .is_some_and(|jti| jti.len() == 36)
        );
        assert!(!verified.claims.contains_key("aud"));

        assert!(matches!(
            verifier.verify_at(&token, NOW + 600 + 31),
            Err(AuthError::Expired)
        ));

        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.kid.as_deref(), Some(signer.kid()));
        assert_eq!(header.alg, Algorithm::RS256);

        // A fresh jti per token.
        let again = signer
            .mint_at(MintClaims::new("u", ISSUER, 60), NOW)
            .expect("mint");
        let again = verifier.verify_at(&again, NOW).expect("verifies");
        assert_ne!(again.claims["jti"], verified.claims["jti"]);
    }

    #[test]
    fn mint_uses_the_system_clock_and_sets_the_audience() {
        let dirs = dirs();
        let signer = ensure(&dirs, &AtomicUsize::new(0));
        let settings = VerifierSettings {
            audience: Some(vec!["userorg".into()]),
            ..VerifierSettings::for_issuers([ISSUER])
        };
        let verifier = TokenVerifier::new(KeyRing::load_dir(&dirs.public).expect("ring"), settings)
            .expect("verifier");
        let mut claims = MintClaims::new("admin", ISSUER, 60);
        claims.audience = Some("userorg".into());
        let token = signer.mint(claims).expect("mint");
        assert_eq!(verifier.verify(&token).expect("verifies").user_id, "admin");
    }

    #[test]
    fn registered_claims_win_over_extra() {
        let dirs = dirs();
        let signer = ensure(&dirs, &AtomicUsize::new(0));
        let mut claims = MintClaims::new("real-user", ISSUER, 60);
        for (name, value) in [
            ("exp", json!(i64::MAX)),
            ("sub", json!("someone-else")),
            ("typ", json!("ID")),
            ("aud", json!("anything")),
        ] {
            claims.extra.insert(name.into(), value);
        }
        let token = signer.mint_at(claims, NOW).expect("mint");
        let verified = verifier_for(&dirs)
            .verify_at(&token, NOW)
            .expect("verifies");
        assert_eq!(verified.user_id, "real-user");
        assert_eq!(verified.expires_at, NOW + 60);
        assert_eq!(verified.claims["typ"], json!("Bearer"));
        assert!(!verified.claims.contains_key("aud"));
    }

    #[test]
    fn mint_refuses_useless_claims() {
        let dirs = dirs();
        let signer = ensure(&dirs, &AtomicUsize::new(0));
        for claims in [
            MintClaims::new("u", ISSUER, 0),
            MintClaims::new("u", ISSUER, -5),
            MintClaims::new("", ISSUER, 60),
            MintClaims::new("u", "", 60),
            MintClaims::new("u", ISSUER, i64::MAX),
        ] {
            assert!(matches!(
                signer.mint_at(claims, NOW),
                Err(AuthError::Settings(_))
            ));
        }
    }

    #[test]
    fn corrupt_private_key_is_reported_without_its_contents() {
        let dirs = dirs();
        let keys_dir = dirs.data.join("keys");
        fs::create_dir_all(&keys_dir).expect("mkdir");
        fs::write(
            keys_dir.join("local-signing-key.pem"),
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let error = LocalSigner::ensure_with(&dirs.data, Some(&dirs.public), || {
            panic!("an existing key file must never be regenerated")
        })
        .expect_err("corrupt key refused");
        let message = error.to_string();
        assert!(matches!(error, AuthError::Key { .. }), "{error:?}");
        assert!(message.contains("local-signing-key.pem"), "{message}");
        assert!(!message.contains("c2VjcmV0"), "{message}");
    }

    #[test]
    fn a_pkcs1_private_key_made_by_hand_is_accepted() {
        let dirs = dirs();
        let keys_dir = dirs.data.join("keys");
        fs::create_dir_all(&keys_dir).expect("mkdir");
        let pem = test_keys()
            .trusted
            .to_pkcs1_pem(LineEnding::LF)
            .expect("pkcs1 pem");
        fs::write(keys_dir.join("local-signing-key.pem"), pem.as_bytes()).expect("write");
        let signer = LocalSigner::ensure_with(&dirs.data, Some(&dirs.public), || {
            panic!("an existing key file must never be regenerated")
        })
        .expect("pkcs1 key loads");
        let token = signer
            .mint_at(MintClaims::new("u", ISSUER, 60), NOW)
            .expect("mint");
        assert!(verifier_for(&dirs).verify_at(&token, NOW).is_ok());
    }

    #[test]
    fn a_concurrent_creator_wins_and_its_key_is_used() {
        // Another process writes the key between our "not found" and our link: ours is dropped.
        let dirs = dirs();
        let key_path = dirs.data.join("keys").join("local-signing-key.pem");
        let signer = LocalSigner::ensure_with(&dirs.data, Some(&dirs.public), || {
            let winner = test_keys()
                .trusted
                .to_pkcs8_pem(LineEnding::LF)
                .expect("pkcs8 pem");
            fs::write(&key_path, winner.as_bytes()).expect("winner writes");
            Ok(test_keys().attacker.clone())
        })
        .expect("ensure");
        let winner_public = crate::auth::test_support::spki_pem(&test_keys().trusted);
        assert_eq!(signer.public_key_pem(), winner_public);
    }

    #[test]
    fn ensure_generates_a_real_key() {
        // The one test that runs the real generator: it must be fast in a debug build.
        let dirs = dirs();
        let started = std::time::Instant::now();
        let signer = LocalSigner::ensure(&dirs.data, Some(&dirs.public)).expect("ensure");
        let token = signer
            .mint_at(MintClaims::new("u", ISSUER, 60), NOW)
            .expect("mint");
        assert!(verifier_for(&dirs).verify_at(&token, NOW).is_ok());
        let again = LocalSigner::ensure(&dirs.data, Some(&dirs.public)).expect("ensure again");
        assert_eq!(signer.kid(), again.kid());
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }
}
