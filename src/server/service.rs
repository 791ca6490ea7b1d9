//! The HTTP layer of the webhook port: routing, request limits, and turning pipeline outcomes
//! into responses. Thin: every decision is the pipeline's.
//!
//! Status codes: 200 with an AdmissionReview for every request whose body is a review (allowed
//! or denied); 400 for a body with no readable uid; 404/405/415/413/408 for the wrong path,
//! method, content type, size or a client too slow to send its body; 503 for a body that would
//! take the reviews in flight past their memory budget (`MemoryBudget`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::admission::respond;
use crate::admission::{Mode, Pipeline};
use crate::config::{MEMORY_PER_BODY_BYTE, MEMORY_PER_REQUEST, ServerConfig};
use crate::telemetry::{AuditSink, Metrics};

/// State shared by all connections. The pipeline is swapped whole on a config reload.
pub struct WebhookState {
    pub pipeline: ArcSwap<Pipeline>,
    pub metrics: Metrics,
    pub audit: ArcSwap<AuditSink>,
    pub memory: MemoryBudget,
}

/// The memory the requests in flight hold together, against `server.maxMemoryInFlight`. While a
/// request is read it is counted as what it holds: its headers and the body bytes that have
/// arrived. When its review starts it is counted as the most a review holds,
/// `MEMORY_PER_REQUEST` plus `MEMORY_PER_BODY_BYTE` per byte of body (the bound the fuzzer
/// holds every review to), until it is answered. Each review is bounded on its own (the list
/// limits), but without this a thousand connections sending 4 MiB each would hold 4 GiB before
/// any review ran, and a few hundred large reviews at once would hold more than the container.
///
/// Bytes are counted as they arrive, not as a request declares them, and at their own size: a
/// client that declares a large body and sends it slowly holds only what it has sent, and
/// filling the budget takes as many bytes as the budget. Nothing waits for room: a request
/// that does not fit is answered 503 at once. Waiting would let requests that each hold part of
/// their body wait for each other until their read timeout, where failing one lets the others
/// finish. The limit is read from the configuration in force when the request arrives.
pub struct MemoryBudget {
    held: AtomicUsize,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl MemoryBudget {
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            held: AtomicUsize::new(0),
            gauge: metrics.review_memory.clone(),
        }
    }

    fn reservation(&self, limit: usize) -> Reservation<'_> {
        Reservation {
            budget: self,
            limit,
            held: 0,
        }
    }
}

/// What one request holds of the `MemoryBudget`; given back when dropped.
struct Reservation<'a> {
    budget: &'a MemoryBudget,
    limit: usize,
    held: usize,
}

/// The budget has no room for what a request needs next.
struct BudgetFull;

impl Reservation<'_> {
    /// Counts `bytes` more, if the budget has room for them.
    fn grow(&mut self, bytes: usize) -> Result<(), BudgetFull> {
        let (b, limit) = (self.budget, self.limit);
        b.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= limit)
            })
            .map_err(|_| BudgetFull)?;
        self.held += bytes;
        b.gauge.inc_by(i64::try_from(bytes).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Counts the request as the review of a body of `body_len` bytes holds at most.
    fn grow_for_review(&mut self, body_len: usize) -> Result<(), BudgetFull> {
        let review = body_len
            .saturating_mul(MEMORY_PER_BODY_BYTE)
            .saturating_add(MEMORY_PER_REQUEST);
        self.grow(review.saturating_sub(self.held))
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.held, Ordering::AcqRel);
        self.budget
            .gauge
            .dec_by(i64::try_from(self.held).unwrap_or(i64::MAX));
    }
}

/// What a request's head holds, as near as its parts tell: the path and each header (read
/// without allocating: this runs for every request).
fn head_bytes<B>(req: &Request<B>) -> usize {
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    headers + req.uri().path_and_query().map_or(0, |p| p.as_str().len())
}

/// Why a request body was not read whole.
enum ReadError {
    TooLarge,
    BudgetFull,
    Body(hyper::Error),
}

/// Reads a request body of at most `max` bytes into a buffer of its own, counting the buffer's
/// growth against `held` as the bytes arrive. The bytes are copied out of the connection's
/// buffers, which would otherwise stay pinned, uncounted, by the chunks of a body held open.
async fn read_body(
    mut body: Incoming,
    max: usize,
    held: &mut Reservation<'_>,
) -> Result<Bytes, ReadError> {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(ReadError::Body)?.into_data() else {
            continue; // trailers
        };
        let len = buf.len().saturating_add(data.len());
        if len > max {
            return Err(ReadError::TooLarge);
        }
        if len > buf.capacity() {
            // Doubling, as `Vec` grows, but never past the limit.
            let capacity = len.max(buf.capacity().saturating_mul(2)).min(max);
            held.grow(capacity - buf.capacity())
                .map_err(|BudgetFull| ReadError::BudgetFull)?;
            buf.reserve_exact(capacity - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    Ok(Bytes::from(buf))
}

pub type Body = Full<Bytes>;

fn status_json(code: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "code": code.as_u16(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// An error answered before the request body was read: the connection cannot be reused (the
/// unread body is still on the wire), so tell the client not to put it back in its pool.
fn early_reject(code: StatusCode, message: &str) -> Response<Body> {
    let mut resp = status_json(code, message);
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    resp
}

fn json_ok(body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

#[derive(Deserialize)]
struct UidOnly {
    request: UidRequest,
}

#[derive(Deserialize)]
struct UidRequest {
    uid: String,
}

/// Handles one HTTP request on the webhook port.
pub async fn handle(
    state: Arc<WebhookState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let mode = match req.uri().path() {
        "/mutate" => Mode::Mutate,
        "/validate" => Mode::Validate,
        _ => {
            state.metrics.reject("not_found");
            return Ok(early_reject(
                StatusCode::NOT_FOUND,
                "not found: sparkward answers POST /mutate and POST /validate",
            ));
        }
    };
    if req.method() != Method::POST {
        state.metrics.reject("method");
        let mut resp = early_reject(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: send admission reviews with POST",
        );
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return Ok(resp);
    }
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        state.metrics.reject("content_type");
        return Ok(early_reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported content type: send Content-Type: application/json",
        ));
    }
    let pipeline = state.pipeline.load_full();
    let server = pipeline.config.server.clone();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > server.max_body_bytes as u64) {
        state.metrics.reject("too_large");
        return Ok(too_large(server.max_body_bytes));
    }
    let mut held = state.memory.reservation(server.max_memory_in_flight);
    if held.grow(head_bytes(&req)).is_err() {
        return Ok(budget_full(&state, &server));
    }
    let read = read_body(req.into_body(), server.max_body_bytes, &mut held);
    let body = match tokio::time::timeout(server.read_timeout, read).await {
        Err(_) => {
            state.metrics.reject("timeout");
            return Ok(early_reject(
                StatusCode::REQUEST_TIMEOUT,
                "timed out reading the request body",
            ));
        }
        Ok(Err(ReadError::TooLarge)) => {
            state.metrics.reject("too_large");
            return Ok(too_large(server.max_body_bytes));
        }
        Ok(Err(ReadError::BudgetFull)) => return Ok(budget_full(&state, &server)),
        Ok(Err(ReadError::Body(e))) => {
            state.metrics.reject("bad_request");
            return Ok(status_json(
                StatusCode::BAD_REQUEST,
                &format!("failed to read the request body: {e}"),
            ));
        }
        Ok(Ok(body)) => body,
    };
    if held.grow_for_review(body.len()).is_err() {
        return Ok(budget_full(&state, &server));
    }
    Ok(review(&state, pipeline, mode, body, server.review_deadline).await)
}

/// The answer to a request the memory budget has no room for. The connection is closed: the
/// request's body may still be on the wire.
fn budget_full(state: &WebhookState, server: &ServerConfig) -> Response<Body> {
    state.metrics.reject("memory");
    let mut resp = early_reject(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "sparkward is holding as many reviews as its memory budget allows \
             (server.maxMemoryInFlight, {} MiB; a review counts {} KiB plus {MEMORY_PER_BODY_BYTE} \
             bytes per byte of its body); nothing was decided, retry shortly",
            server.max_memory_in_flight >> 20,
            MEMORY_PER_REQUEST >> 10
        ),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    resp
}

fn too_large(max: usize) -> Response<Body> {
    early_reject(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body is larger than the {max}-byte limit (server.maxBodyBytes)"),
    )
}

async fn review(
    state: &WebhookState,
    pipeline: Arc<Pipeline>,
    mode: Mode,
    body: Bytes,
    deadline: Duration,
) -> Response<Body> {
    let started = Instant::now();
    state.metrics.in_flight.inc();
    let result = tokio::time::timeout(deadline, pipeline.review(mode, &body)).await;
    state.metrics.in_flight.dec();
    let elapsed = started.elapsed();
    match result {
        Ok(Ok(outcome)) => {
            let response = outcome.response();
            state.metrics.observe_review(
                mode.as_str(),
                &outcome.facts.kind,
                outcome.facts.operation,
                outcome.allowed(),
                outcome.reason_code(),
                elapsed,
            );
            state
                .audit
                .load()
                .write_json(outcome.audit_record(elapsed).to_json());
            if let Err(reason) = &outcome.decision {
                tracing::info!(uid = %outcome.facts.uid, kind = %outcome.facts.kind,
                    namespace = %outcome.facts.namespace, reason = reason.code(), "denied: {reason}");
            }
            json_ok(response.into_review().to_json())
        }
        Ok(Err(message)) => {
            state.metrics.reject("bad_request");
            status_json(StatusCode::BAD_REQUEST, &message)
        }
        Err(_) => {
            // The pipeline was dropped at its deadline: nothing after that point ran, and a
            // policy apply in flight is bounded by applyTimeout (< deadline), so this is rare.
            let message = format!(
                "sparkward could not decide within {}s (server.reviewDeadline); nothing was \
                 admitted, retrying is safe",
                deadline.as_secs_f64()
            );
            match serde_json::from_slice::<UidOnly>(&body) {
                Ok(u) => {
                    state
                        .metrics
                        .observe_review(mode.as_str(), "", "", false, "deadline", elapsed);
                    json_ok(
                        respond::Response::deny(&u.request.uid, 504, message)
                            .into_review()
                            .to_json(),
                    )
                }
                Err(_) => status_json(StatusCode::GATEWAY_TIMEOUT, &message),
            }
        }
    }
}
