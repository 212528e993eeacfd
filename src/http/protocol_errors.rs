//! Envelopes for the answers hyper writes itself. A request whose head cannot be parsed (a
//! request line over hyper's 64 KiB, more headers than the parser takes, a negative or
//! 20-digit `Content-Length`) never reaches the router: hyper answers 400, 414 or 431 with an
//! empty body and closes the connection. This wrapper around a connection's byte stream
//! recognises such a bare answer as it is written and writes the same status with a Sunbird
//! envelope instead, so every client gets an envelope it can parse.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::domain::error::ErrorCode;

use super::SECURITY_HEADERS;
use super::envelope::{EnvelopeBody, JSON_CONTENT_TYPE, render};

/// A connection's stream whose bare protocol-error answers are replaced by envelopes.
pub struct EnvelopedErrors<T> {
    inner: T,
    /// Replacement bytes still to be written (the caller was told they were written).
    pending: Vec<u8>,
    written: usize,
}

impl<T> EnvelopedErrors<T> {
    pub fn new(inner: T) -> Self {
        EnvelopedErrors {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// The status of a bare answer hyper writes for a request it could not parse, or `None` when
/// `bytes` is anything else (the router's answers always carry an envelope body).
fn bare_protocol_error(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"HTTP/1.1 ")?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    if !matches!(status, 400 | 414 | 431) {
        return None;
    }
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let empty = head.lines().any(|line| line.trim() == "content-length: 0");
    // Only the head, nothing after it: a bare answer.
    (empty && bytes.len() == end + 4).then_some(status)
}

/// The whole HTTP answer that replaces a bare one of `status`.
fn enveloped_answer(status: u16) -> Vec<u8> {
    let (reason, message) = match status {
        414 => (
            "URI Too Long",
            "The request line is longer than this service accepts.",
        ),
        431 => (
            "Request Header Fields Too Large",
            "The request headers are more or larger than this service accepts.",
        ),
        _ => (
            "Bad Request",
            "The request could not be parsed as HTTP (request line, headers or Content-Length).",
        ),
    };
    let body = EnvelopeBody::Failure {
        code: ErrorCode::invalidRequestData,
        message: message.to_string(),
        result: serde_json::Map::new(),
        bare: false,
        legacy: None,
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let body = render("/", &request_id, status, &body, None);
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {JSON_CONTENT_TYPE}\r\n\
         content-length: {}\r\nconnection: close\r\nx-request-id: {request_id}\r\n",
        body.len()
    );
    for (name, value) in SECURITY_HEADERS {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut answer = head.into_bytes();
    answer.extend_from_slice(&body);
    answer
}

impl<T: AsyncWrite + Unpin> EnvelopedErrors<T> {
    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for EnvelopedErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EnvelopedErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(status) = bare_protocol_error(buf) {
            self.pending = enveloped_answer(status);
            self.written = 0;
            // The bare answer counts as written; the envelope goes out now or on the next
            // write, flush or shutdown.
            if let Poll::Ready(Err(error)) = self.poll_pending(cx) {
                return Poll::Ready(Err(error));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bare_parse_errors_are_recognised() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 12:00:00 GMT\r\n\r\n";
        assert_eq!(bare_protocol_error(bare), Some(431));
        let uri = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_protocol_error(uri), Some(414));
        // An answer with a body, another status, or more than a head is left alone.
        let enveloped = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n{\"id\":\"x\"}  ";
        assert_eq!(bare_protocol_error(enveloped), None);
        assert_eq!(
            bare_protocol_error(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(
            bare_protocol_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nx"),
            None
        );
        assert_eq!(bare_protocol_error(b"\x00\x00\x12\x04"), None);
    }

    #[test]
    fn the_replacement_is_a_whole_answer_with_an_envelope() {
        let answer = String::from_utf8(enveloped_answer(414)).expect("utf-8");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("\r\ncontent-security-policy: default-src 'none'"));
        let json: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(json["responseCode"], "CLIENT_ERROR");
        assert_eq!(json["params"]["status"], "FAILED");
    }
}
