//! Reading mail in tests: the `.eml` files of the file engine and of the real SMTP server the
//! tests start (`tests/support/smtp_sink.py` on aiosmtpd), decoded (quoted-printable, base64),
//! and that server's lifecycle.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One message as received.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub message_id: String,
    pub body: String,
    pub raw: String,
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse(raw: &str) -> Mail {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))
        .unwrap_or((raw, ""));
    let encoding = header(head, "Content-Transfer-Encoding").unwrap_or("7bit");
    let body = if encoding.eq_ignore_ascii_case("quoted-printable") {
        decode_quoted_printable(body)
    } else if encoding.eq_ignore_ascii_case("base64") {
        use base64::Engine;
        let compact: String = body.split_whitespace().collect();
        String::from_utf8_lossy(
            &base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap_or_default(),
        )
        .into_owned()
    } else {
        body.to_string()
    };
    Mail {
        to: header(head, "To").unwrap_or_default().to_string(),
        subject: header(head, "Subject").unwrap_or_default().to_string(),
        message_id: header(head, "Message-ID").unwrap_or_default().to_string(),
        body,
        raw: raw.to_string(),
    }
}

/// Every complete `.eml` in `dir`, in file-name order (the SMTP sink names them by arrival).
pub fn read_dir(dir: &Path) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .filter(|path| {
            !path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|raw| parse(&raw))
        .collect()
}

/// The code of an OTP message: the first run of six digits.
pub fn code_in(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(5)).find_map(|start| {
        let run = &bytes[start..start + 6];
        let before = start.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(start + 6).copied();
        (run.iter().all(u8::is_ascii_digit)
            && !before.is_some_and(|b| b.is_ascii_digit())
            && !after.is_some_and(|b| b.is_ascii_digit()))
        .then(|| String::from_utf8_lossy(run).into_owned())
    })
}

/// A real SMTP server (aiosmtpd) on a loopback port, writing what it accepts to `dir`.
pub struct SmtpSink {
    pub port: u16,
    pub dir: PathBuf,
    python: String,
    child: Option<Child>,
}

impl SmtpSink {
    /// A server on a free port, or `None` (skip, reason printed) without aiosmtpd.
    pub fn start(dir: &Path) -> Option<SmtpSink> {
        let python = userorg::test_tiers::smtp_python()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut sink = SmtpSink {
            port,
            dir: dir.to_path_buf(),
            python,
            child: None,
        };
        sink.up(None);
        Some(sink)
    }

    /// Starts the server (again) on its port; with `refuse`, every message is answered so.
    pub fn up(&mut self, refuse: Option<&str>) {
        self.down();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut command = Command::new(&self.python);
        command
            .arg(script)
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(reply) = refuse {
            command.args(["--refuse", reply]);
        }
        let mut child = command.spawn().expect("the SMTP sink starts");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).expect("the sink speaks");
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        self.child = Some(child);
    }

    /// Stops the server: connections are refused until [`SmtpSink::up`].
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn received(&self) -> Vec<Mail> {
        read_dir(&self.dir)
    }

    /// The settings pointing the app's email engine at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("USERORG__NOTIFICATIONS__EMAIL_ENGINE".into(), "smtp".into()),
            (
                "USERORG__NOTIFICATIONS__SMTP__HOST".into(),
                "127.0.0.1".into(),
            ),
            (
                "USERORG__NOTIFICATIONS__SMTP__PORT".into(),
                self.port.to_string(),
            ),
            (
                "USERORG__NOTIFICATIONS__SMTP__SECURITY".into(),
                "none".into(),
            ),
            (
                "USERORG__NOTIFICATIONS__SMTP__TIMEOUT_MS".into(),
                "3000".into(),
            ),
        ]
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.down();
    }
}
