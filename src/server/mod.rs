//! The servers: HTTPS for the webhook (`/mutate`, `/validate`) and plain HTTP for `/healthz`,
//! `/readyz` and `/metrics`.
//!
//! The accept loop follows the hyper 1 shape: `select! { biased; shutdown; accept }`, TCP_NODELAY
//! on every socket (Nagle + delayed ACK would add ~40 ms to small answers), a bounded TLS
//! handshake and header read (slow or idle clients cannot hold a connection open), HTTP/1.1
//! keep-alive and HTTP/2 through `auto::Builder`, and graceful shutdown: on cancellation the
//! listener closes, connections finish their in-flight requests, and the drain is bounded.
//!
//! Hostile clients: at most `maxConnections` connections are held (further clients wait in the
//! listen backlog, as with Go's `LimitListener`); a connection is closed when its TLS handshake
//! or its first request takes longer than `readTimeout`, or when it has had no request in
//! flight for `idleTimeout` (HTTP/2 connections answer keep-alive pings forever, and
//! `auto::Builder`'s protocol sniffing waits for bytes without a timer of its own). HTTP/1
//! headers are bounded by `max_buf_size` (431) and HTTP/2 header lists by h2's 16 KiB default.

pub mod service;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
use tokio::sync::Semaphore;
use tokio::time::Instant;
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
    /// How long a connection that has served a request may sit with none in flight.
    pub idle_timeout: Duration,
    /// Connections held at once.
    pub max_connections: usize,
}

/// What the idle watchdog of one connection knows: requests in flight, whether any was
/// served, and when the last one started or ended.
struct Activity {
    in_flight: AtomicUsize,
    state: Mutex<(bool, Instant)>,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            state: Mutex::new((false, Instant::now())),
        })
    }

    fn touch(&self, served: bool) {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *s = (s.0 || served, Instant::now());
    }

    /// When the connection becomes idle too long, or `None` while a request is in flight.
    fn idle_deadline(&self, limits: &ConnLimits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let (served, last) = *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Before its first request a client gets readTimeout, like a slow header.
        Some(
            last + if served {
                limits.idle_timeout
            } else {
                limits.read_timeout
            },
        )
    }
}

/// Marks one request in flight on a connection until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.touch(false);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch(true);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts an open connection in `connections_open` until dropped.
struct OpenConn(Arc<WebhookState>);

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.metrics.connections_open.dec();
    }
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
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // A slot first: at the limit, new clients wait in the kernel's backlog until a
        // connection ends (timeouts shed the slow and idle ones), costing nothing here.
        let slot = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
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
        state.metrics.connections_open.inc();
        // Counted until this task ends, whichever way it ends.
        let open = OpenConn(state.clone());
        tokio::spawn(
            async move {
                let _slot = slot;
                let _open = open;
                let tls = match tokio::time::timeout(limits.read_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        state.metrics.shed("handshake_failed");
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        state.metrics.shed("handshake_timeout");
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                };
                let activity = Activity::new();
                let svc = {
                    let (state, activity) = (state.clone(), activity.clone());
                    service_fn(move |req| {
                        let guard = InFlight::begin(&activity);
                        let state = state.clone();
                        async move {
                            let resp = service::handle(state, req).await;
                            drop(guard);
                            resp
                        }
                    })
                };
                let conn = watcher.watch(
                    builder
                        .serve_connection(TokioIo::new(tls), svc)
                        .into_owned(),
                );
                tokio::pin!(conn);
                loop {
                    let deadline = activity.idle_deadline(&limits);
                    // While a request is in flight, look again after readTimeout (the body
                    // read and the review have their own bounds).
                    let wake = deadline.unwrap_or_else(|| Instant::now() + limits.read_timeout);
                    tokio::select! {
                        ended = &mut conn => {
                            if let Err(e) = ended {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                            break;
                        }
                        _ = tokio::time::sleep_until(wake) => {
                            if activity
                                .idle_deadline(&limits)
                                .is_some_and(|d| d <= Instant::now())
                            {
                                // No request in flight: dropping the connection loses nothing.
                                state.metrics.shed("idle_timeout");
                                tracing::debug!("idle connection closed");
                                break;
                            }
                        }
                    }
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
        idle_timeout: Duration::from_secs(60),
        max_connections: 64,
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
