//! Injected faults and the request log tests inspect.

use std::time::{Duration, Instant};

use http::Method;

/// What an injected fault does to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer this HTTP code with a `Status` body (message defaults to the real one's wording);
    /// `retry_after` adds a `Retry-After` header (kube's client honours it on 429/503/504).
    Status {
        code: u16,
        message: Option<String>,
        retry_after: Option<u64>,
    },
    /// Wait, then handle the request normally (a slow API server).
    Delay(Duration),
    /// Close the connection without answering; the request is not handled.
    DropConnection,
    /// Handle the request (a write is stored, watches see it), then close the connection
    /// without sending the answer: the client cannot tell whether its write happened.
    DropAnswer,
    /// What kube-apiserver's max-in-flight and priority-and-fairness filters answer when they
    /// shed a request: 429, `text/plain` "Too many requests, please try again later." and a
    /// `Retry-After` header (no `Status` body).
    Throttle { retry_after: u64 },
}

/// A fault for the next `times` requests that match `method` (if set) and whose path and query
/// contain `path` (if set). Build with [`Fault::status`], [`Fault::delay`] or
/// [`Fault::drop_connection`], then narrow with `.method(..)`, `.path(..)`, `.times(..)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub method: Option<Method>,
    pub path: Option<String>,
    pub times: usize,
    pub action: FaultAction,
}

impl Fault {
    fn new(action: FaultAction) -> Self {
        Self {
            method: None,
            path: None,
            times: 1,
            action,
        }
    }

    /// Answer `code` (500, 503, 429, 409, ...) with a `Status` body.
    pub fn status(code: u16) -> Self {
        Self::new(FaultAction::Status {
            code,
            message: None,
            retry_after: None,
        })
    }

    /// Handle the request normally, but only after `delay`.
    pub fn delay(delay: Duration) -> Self {
        Self::new(FaultAction::Delay(delay))
    }

    /// Close the connection without an answer.
    pub fn drop_connection() -> Self {
        Self::new(FaultAction::DropConnection)
    }

    /// Handle the request, then close the connection before the answer is sent.
    pub fn drop_answer() -> Self {
        Self::new(FaultAction::DropAnswer)
    }

    /// Shed the request as kube-apiserver's flow control does: 429 with `Retry-After: secs` and
    /// a plain-text body.
    pub fn throttled(secs: u64) -> Self {
        Self::new(FaultAction::Throttle { retry_after: secs })
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Match requests whose path and query contain this string, e.g. `"ciliumnetworkpolicies"`.
    pub fn path(mut self, fragment: &str) -> Self {
        self.path = Some(fragment.to_string());
        self
    }

    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    /// Sets the `Status` message (only for [`Fault::status`]).
    pub fn message(mut self, text: &str) -> Self {
        if let FaultAction::Status { message, .. } = &mut self.action {
            *message = Some(text.to_string());
        }
        self
    }

    /// Adds `Retry-After: secs` (only for [`Fault::status`]).
    pub fn retry_after(mut self, secs: u64) -> Self {
        if let FaultAction::Status { retry_after, .. } = &mut self.action {
            *retry_after = Some(secs);
        }
        self
    }

    pub(crate) fn matches(&self, method: &Method, target: &str) -> bool {
        self.times > 0
            && self.method.as_ref().is_none_or(|m| m == method)
            && self.path.as_deref().is_none_or(|p| target.contains(p))
    }
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path and query, as sent.
    pub path: String,
    pub content_type: Option<String>,
    /// HTTP status answered; `None` when the connection was dropped by a fault.
    pub status: Option<u16>,
    pub received: Instant,
    /// When the answer (for a watch: its headers) was ready.
    pub answered: Instant,
}

impl RecordedRequest {
    /// The query parameter `name`, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let (_, query) = self.path.split_once('?')?;
        super::http::parse_query(query).remove(name)
    }

    pub fn is_watch(&self) -> bool {
        matches!(self.query("watch").as_deref(), Some("true" | "1"))
    }
}
