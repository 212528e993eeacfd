//! SMS delivery: the [`SmsSender`] trait, an HTTP provider engine shaped as MSG91's send-SMS
//! request (Sunbird's default provider: JSON with sender, route, country and the DLT template
//! id, the auth key in the `authkey` header) and a JSON-lines file engine (the default).

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::io::AsyncWriteExt;

pub use super::email::SendError;

/// One SMS to one number (international form, `+` and digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sms {
    pub id: String,
    pub to: String,
    pub body: String,
    /// The registered (DLT) template id of the text, if the template has one.
    pub template_id: Option<String>,
}

#[async_trait]
pub trait SmsSender: Send + Sync + 'static {
    async fn send(&self, sms: &Sms) -> Result<(), SendError>;
}

#[derive(Debug, Clone)]
pub struct HttpSmsOptions {
    pub url: String,
    pub auth_key: String,
    pub sender: String,
    pub route: String,
    pub timeout: Duration,
}

/// A provider reached over HTTP(S).
pub struct HttpSmsSender {
    client: reqwest::Client,
    options: HttpSmsOptions,
}

impl HttpSmsSender {
    pub fn new(options: HttpSmsOptions) -> anyhow::Result<HttpSmsSender> {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .build()?;
        Ok(HttpSmsSender { client, options })
    }
}

/// The request body: MSG91's `sendsms` shape, one message to one number.
pub fn provider_request(sms: &Sms, sender: &str, route: &str) -> serde_json::Value {
    let digits: String = sms.to.chars().filter(char::is_ascii_digit).collect();
    let mut body = json!({
        "sender": sender,
        "route": route,
        "country": "0",
        "unicode": 1,
        "sms": [{"message": sms.body, "to": [digits]}],
    });
    if let Some(template_id) = &sms.template_id {
        body["DLT_TE_ID"] = json!(template_id);
    }
    body
}

#[async_trait]
impl SmsSender for HttpSmsSender {
    async fn send(&self, sms: &Sms) -> Result<(), SendError> {
        let response = self
            .client
            .post(&self.options.url)
            .header("authkey", &self.options.auth_key)
            .json(&provider_request(
                sms,
                &self.options.sender,
                &self.options.route,
            ))
            .send()
            .await
            .map_err(|error| {
                SendError::Transient(format!("sms provider unreachable: {}", error.without_url()))
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.as_u16() == 429 || status.is_server_error() {
            Err(SendError::Transient(format!(
                "sms provider answered {status}"
            )))
        } else {
            Err(SendError::Permanent(format!(
                "sms provider answered {status}"
            )))
        }
    }
}

/// Appends one JSON object per SMS to a file (`{"id","to","body","templateId"}`).
pub struct FileSmsSender {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl FileSmsSender {
    pub fn new(path: PathBuf) -> std::io::Result<FileSmsSender> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(FileSmsSender {
            path,
            lock: tokio::sync::Mutex::new(()),
        })
    }
}

#[async_trait]
impl SmsSender for FileSmsSender {
    async fn send(&self, sms: &Sms) -> Result<(), SendError> {
        let mut line = json!({
            "id": sms.id,
            "to": sms.to,
            "body": sms.body,
            "templateId": sms.template_id,
        })
        .to_string();
        line.push('\n');
        let _one_writer = self.lock.lock().await;
        let write = async {
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await?;
            file.write_all(line.as_bytes()).await?;
            file.flush().await
        };
        write
            .await
            .map_err(|error| SendError::Transient(format!("cannot write the sms file: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_request_is_msg91_shaped_with_the_dlt_template() {
        let sms = Sms {
            id: "n".into(),
            to: "+919876543210".into(),
            body: "123456 is your code".into(),
            template_id: Some("1007".into()),
        };
        assert_eq!(
            provider_request(&sms, "SBTEST", "4"),
            json!({
                "sender": "SBTEST", "route": "4", "country": "0", "unicode": 1,
                "sms": [{"message": "123456 is your code", "to": ["919876543210"]}],
                "DLT_TE_ID": "1007",
            })
        );
    }

    #[tokio::test]
    async fn the_file_engine_appends_one_line_per_sms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sender = FileSmsSender::new(dir.path().join("sms/sent.jsonl")).expect("file");
        for n in 0..2 {
            sender
                .send(&Sms {
                    id: format!("n{n}"),
                    to: "+919876543210".into(),
                    body: "hello".into(),
                    template_id: None,
                })
                .await
                .expect("written");
        }
        let text = std::fs::read_to_string(dir.path().join("sms/sent.jsonl")).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["id"], "n1");
        assert_eq!(lines[1]["to"], "+919876543210");
    }
}
