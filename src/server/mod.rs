//! The servers: HTTPS for the webhook (`/mutate`, `/validate`) and plain HTTP for `/healthz`,
//! `/readyz` and `/metrics`.
//!
//! The accept loop follows the hyper 1 shape: `select! { biased; shutdown; accept }`, TCP_NODELAY
//! on every socket (Nagle + delayed ACK would add ~40 ms to small answers), a bounded TLS
//! handshake and header read (slow or idle clients cannot hold a connection open), HTTP/1.1
//! keep-alive and HTTP/2 through `auto::Builder`, and graceful shutdown: on cancellation the
//! listener closes, connections finish their in-flight requests, and the drain is bounded.

pub mod service;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::service::WebhookState;

/// Limits applied to every connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// TLS handshake and request-header read timeout.
    pub read_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

fn http_builder(limits: ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

/// Serves the webhook over TLS until `shutdown` is cancelled, then drains.
pub async fn serve_webhook(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<WebhookState>,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    let builder = Arc::new(http_builder(limits));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "failed to set TCP_NODELAY");
        }
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let state = state.clone();
        let watcher = graceful.watcher();
        let span = tracing::debug_span!("conn", %peer);
        let open = OpenConnection::new(&state.metrics.connections_open);
        tokio::spawn(
            async move {
                // Counted until this task ends, whichever way it ends.
                let _open = open;
                let tls = match tokio::time::timeout(limits.read_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                };
                let svc = service_fn(move |req| service::handle(state.clone(), req));
                let conn = builder
                    .serve_connection(TokioIo::new(tls), svc)
                    .into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    tracing::info!("webhook listener closed; draining in-flight reviews");
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}

/// Keeps `sparkward_connections_open` counting one connection while it lives.
struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl OpenConnection {
    fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What `/readyz` reports.
pub trait Readiness: Send + Sync + 'static {
    /// `Ok(summary)` when ready, `Err(reasons)` when not.
    fn check(&self) -> Result<String, Vec<String>>;
}

/// Serves `/healthz`, `/readyz` and `/metrics` over plain HTTP until `shutdown`.
pub async fn serve_probes<R, M, F>(
    listener: TcpListener,
    readiness: Arc<R>,
    metrics: M,
    shutdown: CancellationToken,
) where
    R: Readiness,
    M: Fn() -> F + Send + Sync + Clone + 'static,
    F: Future<Output = String> + Send,
{
    let limits = ConnLimits {
        read_timeout: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(2),
    };
    let builder = Arc::new(http_builder(limits));
    loop {
        let (stream, _) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let readiness = readiness.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let readiness = readiness.clone();
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(probe(req, &*readiness, metrics).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn probe<R, M, F>(req: Request<Incoming>, readiness: &R, metrics: M) -> Response<Full<Bytes>>
where
    R: Readiness + ?Sized,
    M: Fn() -> F,
    F: Future<Output = String>,
{
    let text = |code: StatusCode, body: String, ctype: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(ctype),
        );
        r
    };
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET\n".into(),
            "text/plain; charset=utf-8",
        );
    }
    match req.uri().path() {
        "/healthz" | "/livez" => text(StatusCode::OK, "ok\n".into(), "text/plain; charset=utf-8"),
        "/readyz" => match readiness.check() {
            Ok(summary) => text(
                StatusCode::OK,
                format!("ok\n{summary}"),
                "text/plain; charset=utf-8",
            ),
            Err(reasons) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready:\n{}\n", reasons.join("\n")),
                "text/plain; charset=utf-8",
            ),
        },
        "/metrics" => text(
            StatusCode::OK,
            metrics().await,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /healthz, /readyz, /metrics\n".into(),
            "text/plain; charset=utf-8",
        ),
    }
}
