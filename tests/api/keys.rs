//! Key hygiene: the local signing key beside an external identity provider's keys, its own
//! issuer, the bootstrap admin switch, and private modes of the data dir and key files.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;
use tokio::sync::oneshot;

use userorg::app::Application;
use userorg::auth::{LocalSigner, MintClaims};
use userorg::config::Settings;

const PROVIDER_ISSUER: &str = "http://localhost:9000/auth/realms/sunbird";

fn settings(data_dir: &Path, extra: &[(&str, String)]) -> Result<Settings, String> {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("USERORG__DATA_DIR".into(), data_dir.display().to_string());
    env.insert("USERORG__HTTP__LISTEN".into(), "127.0.0.1:0".into());
    env.insert(
        "USERORG__HTTP__INTERNAL_LISTEN".into(),
        "127.0.0.1:0".into(),
    );
    for (key, value) in extra {
        env.insert((*key).to_string(), value.clone());
    }
    Settings::load(None, &env).map_err(|e| e.to_string())
}

/// A served application and how to stop it.
struct Served {
    base: String,
    admin_id: Option<String>,
    local: Option<LocalSigner>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    async fn start(settings: Settings) -> Served {
        let app = Application::build(settings).await.expect("app builds");
        let base = format!("http://{}", app.public_addr());
        let admin_id = app.admin_user_id().map(str::to_string);
        let local = app.signer().cloned();
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            app.run_until_stopped(async move {
                let _ = stopped.await;
            })
            .await
            .expect("serves");
        });
        Served {
            base,
            admin_id,
            local,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    async fn read_status(&self, token: &str) -> u16 {
        let id = self.admin_id.as_deref().expect("admin");
        reqwest::Client::new()
            .get(format!("{}/v1/user/read/{id}", self.base))
            .header("x-authenticated-user-token", token)
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }
}

/// An "identity provider": a key pair whose public half is in `dir/public`, the directory the
/// service is pointed at.
fn provider(dir: &Path) -> LocalSigner {
    LocalSigner::ensure(&dir.join("provider"), Some(&dir.join("public"))).expect("provider key")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

fn mint(signer: &LocalSigner, subject: &str, issuer: &str) -> String {
    signer
        .mint(MintClaims::new(subject, issuer, 600))
        .expect("token")
}

#[tokio::test]
async fn beside_an_external_provider_the_local_signer_is_off_and_never_writes_into_its_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = provider(dir.path());
    let public = dir.path().join("public");
    let before = files_in(&public);
    let data_dir = dir.path().join("data");
    let settings = settings(
        &data_dir,
        &[(
            "USERORG__AUTH__PUBLIC_KEYS_DIR",
            public.display().to_string(),
        )],
    )
    .expect("settings");
    let served = Served::start(settings).await;
    assert!(
        served.local.is_none(),
        "no local signer beside external keys"
    );
    assert_eq!(
        files_in(&public),
        before,
        "nothing written among the provider's keys"
    );
    assert!(!data_dir.join("keys").join("local-signing-key.pem").exists());
    let admin = served.admin_id.clone().expect("admin");
    assert_eq!(
        served
            .read_status(&mint(&provider, &admin, PROVIDER_ISSUER))
            .await,
        200
    );
    served.stop().await;

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_userorg"))
        .args(["token", "--admin"])
        .env("USERORG__DATA_DIR", &data_dir)
        .envs(crate::helpers::engine_env(&data_dir))
        .env("USERORG__AUTH__PUBLIC_KEYS_DIR", &public)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the local signer is off"), "{stderr}");
    assert_eq!(files_in(&public), before);
}

#[tokio::test]
async fn a_local_signer_beside_external_keys_signs_with_its_own_issuer_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = provider(dir.path());
    let public = dir.path().join("public");
    let before = files_in(&public);
    let external = [
        (
            "USERORG__AUTH__PUBLIC_KEYS_DIR",
            public.display().to_string(),
        ),
        ("USERORG__AUTH__LOCAL_SIGNER", "on".to_string()),
    ];
    let served =
        Served::start(settings(&dir.path().join("data"), &external).expect("settings")).await;
    let local = served.local.clone().expect("local signer on");
    assert_eq!(
        files_in(&public),
        before,
        "the local key stays out of the provider's keys"
    );
    let admin = served.admin_id.clone().expect("admin");
    let cases = [
        (
            mint(&local, &admin, "userorg-local"),
            200,
            "local key, local issuer",
        ),
        (
            mint(&local, &admin, PROVIDER_ISSUER),
            401,
            "local key, provider's issuer",
        ),
        (
            mint(&provider, &admin, "userorg-local"),
            401,
            "provider key, local issuer",
        ),
        (
            mint(&provider, &admin, PROVIDER_ISSUER),
            200,
            "provider key, provider's issuer",
        ),
    ];
    for (token, status, case) in cases {
        assert_eq!(served.read_status(&token).await, status, "{case}");
    }
    served.stop().await;

    let mut same = external.to_vec();
    same.push(("USERORG__AUTH__LOCAL_ISSUER", PROVIDER_ISSUER.to_string()));
    let refused = settings(&dir.path().join("data2"), &same).expect_err("refused");
    assert!(refused.contains("auth.local_issuer"), "{refused}");
}

#[tokio::test]
async fn the_bootstrap_admin_can_be_disabled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let served = Served::start(
        settings(
            &data_dir,
            &[("USERORG__SEED__BOOTSTRAP_ADMIN", "false".to_string())],
        )
        .expect("settings"),
    )
    .await;
    assert_eq!(served.admin_id, None);
    assert!(!userorg::seed::bootstrap_admin_file(&data_dir).exists());
    let exists: Value = reqwest::Client::new()
        .get(format!(
            "{}/v1/user/exists/email/admin@userorg.local",
            served.base
        ))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(exists["result"]["exists"], false, "{exists}");
    served.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn loosened_modes_of_the_data_dir_and_key_files_are_made_private_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let served = Served::start(settings(&data_dir, &[]).expect("settings")).await;
    served.stop().await;
    let keys = data_dir.join("keys");
    let mode = |path: &Path| std::fs::metadata(path).expect("meta").permissions().mode() & 0o777;
    let key_files: Vec<_> = std::fs::read_dir(&keys)
        .expect("keys")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    assert!(key_files.len() >= 3, "{key_files:?}");
    for path in [&data_dir, &keys] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    for file in &key_files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let served = Served::start(settings(&data_dir, &[]).expect("settings")).await;
    served.stop().await;
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&keys), 0o700);
    for file in &key_files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

/// A start with keys other than the store's is refused before it writes anything, naming the
/// key; a rotated key (the old one retired) is accepted, after which the old one can go.
#[tokio::test]
async fn a_start_with_keys_other_than_the_stores_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let key = || {
        let bytes: [u8; 32] = rand::random();
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
    };
    let (pii, blind, other_pii, other_blind) = (key(), key(), key(), key());
    let with = |pii: &str, retired: &str, blind: &str| {
        let mut extra: Vec<(&str, String)> = vec![
            ("USERORG__SECURITY__PII_ENCRYPTION_KEY", pii.to_string()),
            ("USERORG__SECURITY__BLIND_INDEX_KEY", blind.to_string()),
        ];
        if !retired.is_empty() {
            extra.push(("USERORG__SECURITY__PII_RETIRED_KEYS", retired.to_string()));
        }
        let engine: Vec<(String, String)> = crate::helpers::engine_env(&data_dir);
        for (name, value) in &engine {
            extra.push((name.as_str(), value.clone()));
        }
        settings(&data_dir, &extra).expect("settings")
    };
    Served::start(with(&pii, "", &blind)).await.stop().await;

    let refused = |settings: Settings| async move {
        match Application::build(settings).await {
            Ok(_) => panic!("a start with other keys must be refused"),
            Err(error) => error.to_string(),
        }
    };
    let message = refused(with(&other_pii, "", &blind)).await;
    assert!(
        message.starts_with(
            "this store's values are sealed with a PII key this instance does not have"
        ),
        "{message}"
    );
    let message = refused(with(&pii, "", &other_blind)).await;
    assert!(
        message.starts_with("this store was written with another blind-index key"),
        "{message}"
    );

    // Rotation: the new key with the old one retired starts, and reseals the check, so the
    // next start needs the new key only.
    Served::start(with(&other_pii, &pii, &blind))
        .await
        .stop()
        .await;
    Served::start(with(&other_pii, "", &blind))
        .await
        .stop()
        .await;
    let message = refused(with(&pii, "", &blind)).await;
    assert!(message.contains("does not have"), "{message}");
}
