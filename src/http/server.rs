//! The serve loop of a listener: hyper's HTTP/1 and HTTP/2 connection builder with a header
//! read timeout (a client that never finishes its request head is dropped instead of holding a
//! connection: the slowloris exposure `axum::serve` leaves open), the peer address handed to the
//! router as `ConnectInfo`, and a graceful stop that lets requests in flight finish.

use std::net::SocketAddr;
use std::time::Duration;

use std::convert::Infallible;
use std::sync::Arc;

use super::protocol_errors::EnvelopedErrors;
use super::tls::ReloadingTls;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// A connection's byte stream, plain TCP or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// How connections are served.
#[derive(Clone)]
pub struct ServeOptions {
    /// TLS, when the listener has a certificate.
    pub tls: Option<Arc<ReloadingTls>>,
    /// Time a client has to send its whole request head.
    pub header_read_timeout: Duration,
    /// Time requests in flight get to finish once a stop is asked for.
    pub drain_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` turns true, then drains the open connections.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    mut stop: tokio::sync::watch::Receiver<bool>,
    options: ServeOptions,
) -> std::io::Result<()>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let stopping = async move {
        let _ = stop.wait_for(|stopped| *stopped).await.map(drop);
    };
    tokio::pin!(stopping);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: the listener itself is fine.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopping => break,
        };
        let service = app
            .clone()
            .map_request(move |request: hyper::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let service = TowerToHyperService::new(service);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = options.tls.as_ref().map(|tls| tls.acceptor());
        let handshake_timeout = options.header_read_timeout;
        tokio::spawn(async move {
            let io: Box<dyn Io> = match tls {
                None => Box::new(stream),
                // The handshake is part of the request head's time budget.
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => Box::new(stream),
                        Ok(Err(error)) => {
                            tracing::debug!(client.ip = %peer.ip(), %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(client.ip = %peer.ip(), "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let io = EnvelopedErrors::new(io);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            let outcome = watcher.watch(connection.into_owned()).await;
            if let Err(error) = outcome {
                tracing::debug!(client.ip = %peer.ip(), %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(options.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout, closing them");
    }
    Ok(())
}
