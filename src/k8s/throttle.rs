//! Makes the API server's `Retry-After` visible to sparkward's retry loops.
//!
//! kube-apiserver throttles in two ways. Errors built as a `Status` (`TooManyRequests` from
//! storage or eviction) carry `details.retryAfterSeconds`, which kube-client keeps. The
//! max-in-flight and priority-and-fairness filters, the usual source of a 429, answer
//! `text/plain` "Too many requests, please try again later." with only a `Retry-After` header;
//! kube-client turns that body into a `Status` without details and the header is lost, so a
//! retry loop would come back after its own short backoff instead of the delay asked for
//! (client-go waits for it). This layer rewrites such an answer (429, or 503 with the header,
//! and a body that is not JSON) into the `Status` the API server would have sent, with
//! `retryAfterSeconds` filled from the header. Nothing else is touched.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full};
use serde_json::json;

/// Longest `Retry-After` believed (a bogus huge value must not park a retry loop; the loops
/// are bounded by their own deadlines anyway).
const MAX_RETRY_AFTER_SECS: u64 = 60;

/// Whole seconds of a delta-seconds `Retry-After` (what kube-apiserver sends); dates and
/// garbage are ignored.
fn retry_after_secs(value: &HeaderValue) -> Option<u64> {
    let secs: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(secs.min(MAX_RETRY_AFTER_SECS))
}

/// The response with a throttling answer turned into a `Status` that names its retry delay.
pub fn normalize<B>(response: Response<B>) -> Response<Either<B, Full<Bytes>>> {
    let status = response.status();
    let throttled =
        status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE;
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let secs = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(retry_after_secs);
    let (Some(secs), true, false) = (secs, throttled, is_json) else {
        return response.map(Either::Left);
    };
    let (reason, what) = if status == StatusCode::TOO_MANY_REQUESTS {
        ("TooManyRequests", "is throttling requests")
    } else {
        ("ServiceUnavailable", "is unavailable")
    };
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("the Kubernetes API server {what} (HTTP {}, Retry-After: {secs}s)", status.as_u16()),
        "reason": reason,
        "details": {"retryAfterSeconds": secs},
        "code": status.as_u16(),
    });
    let (mut parts, _) = response.into_parts();
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(
        parts,
        Either::Right(Full::new(Bytes::from(body.to_string()))),
    )
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use serde_json::Value;

    use super::*;

    fn mk(status: u16, content_type: &str, retry_after: Option<&str>) -> Response<Full<Bytes>> {
        let mut b = Response::builder()
            .status(status)
            .header(CONTENT_TYPE, content_type);
        if let Some(r) = retry_after {
            b = b.header(RETRY_AFTER, r);
        }
        b.body(Full::new(Bytes::from_static(
            b"Too many requests, please try again later.\n",
        )))
        .unwrap()
    }

    async fn body(r: Response<Either<Full<Bytes>, Full<Bytes>>>) -> Vec<u8> {
        r.into_body().collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn a_plain_text_429_becomes_a_status_with_its_retry_delay() {
        let out = normalize(mk(429, "text/plain; charset=utf-8", Some("3")));
        assert_eq!(out.status(), 429);
        let status: Value = serde_json::from_slice(&body(out).await).unwrap();
        assert_eq!(status["details"]["retryAfterSeconds"], 3);
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["code"], 429);
    }

    #[tokio::test]
    async fn other_answers_pass_unchanged() {
        for (code, ct, ra) in [
            (429, "text/plain", None),
            (429, "application/json", Some("1")),
            (500, "text/plain", Some("1")),
            (200, "text/plain", Some("1")),
            (429, "text/plain", Some("Wed, 21 Oct 2015 07:28:00 GMT")),
        ] {
            let out = normalize(mk(code, ct, ra));
            assert_eq!(
                body(out).await,
                b"Too many requests, please try again later.\n",
                "{code} {ct} {ra:?}"
            );
        }
    }

    #[test]
    fn a_huge_retry_after_is_capped() {
        assert_eq!(
            retry_after_secs(&HeaderValue::from_static("999999")),
            Some(MAX_RETRY_AFTER_SECS)
        );
    }
}
