//! The HTTP layer of the webhook port: routing, request limits, and turning pipeline outcomes
//! into responses. Thin: every decision is the pipeline's.
//!
//! Status codes: 200 with an AdmissionReview for every request whose body is a review (allowed
//! or denied); 400 for a body with no readable uid; 404/405/415/413/408 for the wrong path,
//! method, content type, size or a client too slow to send its body.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::admission::respond;
use crate::admission::{Mode, Pipeline};
use crate::telemetry::{AuditSink, Metrics};

/// State shared by all connections. The pipeline is swapped whole on a config reload.
pub struct WebhookState {
    pub pipeline: ArcSwap<Pipeline>,
    pub metrics: Metrics,
    pub audit: ArcSwap<AuditSink>,
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
    let limited = Limited::new(req.into_body(), server.max_body_bytes);
    let body = match tokio::time::timeout(server.read_timeout, limited.collect()).await {
        Err(_) => {
            state.metrics.reject("timeout");
            return Ok(early_reject(
                StatusCode::REQUEST_TIMEOUT,
                "timed out reading the request body",
            ));
        }
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                state.metrics.reject("too_large");
                return Ok(too_large(server.max_body_bytes));
            }
            state.metrics.reject("bad_request");
            return Ok(status_json(
                StatusCode::BAD_REQUEST,
                &format!("failed to read the request body: {e}"),
            ));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    Ok(review(&state, pipeline, mode, body, server.review_deadline).await)
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
            state.audit.load().write(&outcome.audit_record(elapsed));
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
