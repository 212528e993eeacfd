//! Email delivery: the [`EmailSender`] trait, an SMTP engine on lettre (STARTTLS, implicit TLS
//! or plain on a trusted network; authentication; a connection pool; timeouts) and a file
//! engine writing one `.eml` per message (the default, for a laptop: the mail can be read
//! there).
//!
//! A sender answers once the message is taken (the SMTP server's `250` after the data), or
//! says whether a failure may pass ([`SendError::Transient`]: tried again later) or not
//! ([`SendError::Permanent`]: the server refused the message or its address for good).

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// One message to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The notification id: the file engine's file name.
    pub id: String,
    /// `<id@domain>`: the same on every attempt.
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub html: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// May pass (connection refused, timeout, a 4xx answer): tried again later.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// Refused for good (a 5xx answer, an address that cannot be written): not tried again.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

#[async_trait]
pub trait EmailSender: Send + Sync + 'static {
    async fn send(&self, email: &Email) -> Result<(), SendError>;
}

/// The message as lettre builds it (headers, MIME, encoding).
fn build(email: &Email) -> Result<Message, SendError> {
    let mailbox = |address: &str, what: &str| {
        address
            .parse::<Mailbox>()
            .map_err(|_| SendError::Permanent(format!("the {what} address cannot be written")))
    };
    Message::builder()
        .from(mailbox(&email.from, "sender")?)
        .to(mailbox(&email.to, "recipient")?)
        .subject(email.subject.clone())
        .message_id(Some(email.message_id.clone()))
        .header(if email.html {
            ContentType::TEXT_HTML
        } else {
            ContentType::TEXT_PLAIN
        })
        .body(email.body.clone())
        .map_err(|error| SendError::Permanent(format!("the message cannot be built: {error}")))
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server cannot.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on the same host or a trusted network.
    None,
}

#[derive(Debug, Clone)]
pub struct SmtpOptions {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: String,
    pub password: String,
    pub timeout: Duration,
    pub pool_size: u32,
}

/// Delivery through an SMTP server, over a pool of kept connections.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpSender {
    pub fn new(options: &SmtpOptions) -> anyhow::Result<SmtpSender> {
        let builder = match options.security {
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&options.host)?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&options.host)?,
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&options.host)
            }
        };
        let mut builder = builder
            .port(options.port)
            .timeout(Some(options.timeout))
            .pool_config(PoolConfig::new().max_size(options.pool_size.max(1)));
        if !options.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                options.username.clone(),
                options.password.clone(),
            ));
        }
        Ok(SmtpSender {
            transport: builder.build(),
        })
    }
}

#[async_trait]
impl EmailSender for SmtpSender {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        let message = build(email)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_permanent() => Err(SendError::Permanent(smtp_reason(&error))),
            Err(error) => Err(SendError::Transient(smtp_reason(&error))),
        }
    }
}

/// What a failed SMTP exchange says, without the message: its reply code, or the kind of
/// failure.
fn smtp_reason(error: &lettre::transport::smtp::Error) -> String {
    match error.status() {
        Some(code) => format!("smtp server answered {code}"),
        None if error.is_timeout() => "smtp server did not answer in time".into(),
        None => format!("smtp server unreachable: {error}"),
    }
}

/// One `<id>.eml` per message in a directory (written whole, then renamed into place, so a
/// reader never sees half a message, and a repeat overwrites its own file).
pub struct FileSender {
    dir: PathBuf,
}

impl FileSender {
    pub fn new(dir: PathBuf) -> std::io::Result<FileSender> {
        std::fs::create_dir_all(&dir)?;
        Ok(FileSender { dir })
    }
}

#[async_trait]
impl EmailSender for FileSender {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        let formatted = build(email)?.formatted();
        let name = sanitised_file_name(&email.id);
        let (partial, done) = (
            self.dir.join(format!(".{name}.eml.partial")),
            self.dir.join(format!("{name}.eml")),
        );
        let write = async {
            tokio::fs::write(&partial, &formatted).await?;
            tokio::fs::rename(&partial, &done).await
        };
        write
            .await
            .map_err(|error| SendError::Transient(format!("cannot write the mail file: {error}")))
    }
}

/// An id as a file name: only letters, digits, `-` and `_`.
pub fn sanitised_file_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(to: &str) -> Email {
        Email {
            id: "n-1".into(),
            message_id: "<n-1@userorg.local>".into(),
            from: "no-reply@userorg.local".into(),
            to: to.into(),
            subject: "Code".into(),
            body: "<p>123456</p>".into(),
            html: true,
        }
    }

    #[tokio::test]
    async fn the_file_engine_writes_one_eml_per_message_and_a_repeat_overwrites_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sender = FileSender::new(dir.path().join("mail")).expect("dir");
        sender
            .send(&email("asha@example.org"))
            .await
            .expect("written");
        sender
            .send(&email("asha@example.org"))
            .await
            .expect("again");
        let files: Vec<_> = std::fs::read_dir(dir.path().join("mail"))
            .expect("dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(files, vec![std::ffi::OsString::from("n-1.eml")]);
        let text = std::fs::read_to_string(dir.path().join("mail/n-1.eml")).expect("read");
        assert!(text.contains("Message-ID: <n-1@userorg.local>"), "{text}");
        assert!(text.contains("To: asha@example.org"), "{text}");
        assert!(text.contains("Content-Type: text/html"), "{text}");
    }

    #[tokio::test]
    async fn an_address_that_cannot_be_written_is_a_permanent_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sender = FileSender::new(dir.path().to_path_buf()).expect("dir");
        let outcome = sender.send(&email("not an address")).await;
        assert_eq!(
            outcome,
            Err(SendError::Permanent(
                "the recipient address cannot be written".into()
            ))
        );
    }

    #[tokio::test]
    async fn an_unreachable_smtp_server_is_a_temporary_failure() {
        // A port nothing listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let sender = SmtpSender::new(&SmtpOptions {
            host: "127.0.0.1".into(),
            port,
            security: SmtpSecurity::None,
            username: String::new(),
            password: String::new(),
            timeout: Duration::from_secs(2),
            pool_size: 1,
        })
        .expect("transport");
        match sender.send(&email("asha@example.org")).await {
            Err(SendError::Transient(reason)) => {
                assert!(reason.starts_with("smtp server unreachable"), "{reason}")
            }
            other => panic!("expected a temporary failure, got {other:?}"),
        }
    }
}
