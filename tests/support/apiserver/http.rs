//! The HTTP face of the stand-in: hyper 1 on 127.0.0.1, routing like kube-apiserver's, the
//! verbs on top of [`Store`], chunked watch streams, fault injection and the request log.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::admission::AdmissionCall;
use super::fault::{Fault, FaultAction, RecordedRequest};
use super::resource::{CONNECT_SUBRESOURCES, RESOURCES, Resource, Target, parse_target};
use super::selector::{FieldSelector, LabelSelector, Selectors};
use super::status::ApiError;
use super::store::{EventType, Logged, PatchKind, Store, WriteCtx};
use super::user::{self, User};
use super::webhooks::Registry;
use super::writes::Write;

pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The token `FakeApiServer::write_kubeconfig` writes: it authenticates as sparkward's service
/// account, as sparkward's own requests do in a cluster.
pub(crate) const STANDIN_TOKEN: &str = "standin-token";

/// The real API server's default request body limit.
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// State shared by the accept loop, every connection and every watch.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub faults: Mutex<Vec<Fault>>,
    pub requests: Mutex<Vec<RecordedRequest>>,
    /// Latest resourceVersion; watches wake up when it changes.
    pub changes: watch::Sender<u64>,
    /// Bumped by `drop_watches()`: every open watch ends.
    pub drop_watches: watch::Sender<u64>,
    pub shutdown: watch::Sender<bool>,
    pub bookmark_interval: Mutex<Duration>,
    /// Registered mutating and validating webhook configurations.
    pub webhooks: Mutex<Registry>,
    /// Every webhook call, in order.
    pub admission_calls: Mutex<Vec<AdmissionCall>>,
    /// Bearer tokens the stand-in knows (others, and none, authenticate as the admin).
    pub tokens: Mutex<HashMap<String, User>>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        let store = Store::new();
        let rv = store.resource_version();
        Self {
            store: Mutex::new(store),
            faults: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            changes: watch::Sender::new(rv),
            drop_watches: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
            bookmark_interval: Mutex::new(Duration::from_secs(10)),
            webhooks: Mutex::new(Registry::default()),
            admission_calls: Mutex::new(Vec::new()),
            tokens: Mutex::new(HashMap::from([(
                STANDIN_TOKEN.to_string(),
                User::service_account("sparkward-system", "sparkward"),
            )])),
        }
    }

    /// Wakes watches after a write.
    pub(crate) fn notify(&self) {
        let rv = {
            let mut store = lock(&self.store);
            store.collect_garbage();
            store.resource_version()
        };
        self.changes.send_replace(rv);
    }
}

/// Locks without propagating poison: a panicking test thread must not wedge the server.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accept loop; ends on shutdown, dropping (and so closing) every connection.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| handle(shared.clone(), req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

fn take_fault(shared: &Shared, method: &Method, target: &str) -> Option<FaultAction> {
    let mut faults = lock(&shared.faults);
    let index = faults.iter().position(|f| f.matches(method, target))?;
    let fault = &mut faults[index];
    fault.times -= 1;
    let action = fault.action.clone();
    if fault.times == 0 {
        faults.remove(index);
    }
    Some(action)
}

struct Arrival {
    method: Method,
    target: String,
    content_type: Option<String>,
    received: Instant,
}

fn record(shared: &Shared, arrival: Arrival, status: Option<u16>) {
    lock(&shared.requests).push(RecordedRequest {
        method: arrival.method,
        path: arrival.target,
        content_type: arrival.content_type,
        status,
        received: arrival.received,
        answered: Instant::now(),
    });
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let arrival = Arrival {
        method: req.method().clone(),
        target: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), ToString::to_string),
        content_type: req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        received: Instant::now(),
    };
    let fault = take_fault(&shared, &arrival.method, &arrival.target);
    match fault {
        Some(FaultAction::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(FaultAction::Throttle { retry_after }) => {
            // The filter's own words (`http.Error` adds the newline and the content type).
            let mut response = Response::new(
                Full::new(Bytes::from_static(
                    b"Too many requests, please try again later.\n",
                ))
                .boxed_unsync(),
            );
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            let headers = response.headers_mut();
            headers.insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            headers.insert(
                "x-content-type-options",
                http::HeaderValue::from_static("nosniff"),
            );
            if let Ok(v) = retry_after.to_string().parse() {
                headers.insert(RETRY_AFTER, v);
            }
            record(&shared, arrival, Some(429));
            return Ok(response);
        }
        Some(FaultAction::Status {
            code,
            message,
            retry_after,
        }) => {
            let mut error = ApiError::for_code(code, message);
            if let Some(secs) = retry_after {
                // As errors.NewTooManyRequests and friends: the delay is in the Status, and the
                // response writer copies it into the header.
                error.details = Some(json!({ "retryAfterSeconds": secs }));
            }
            let mut response = status_response(&error);
            if let Some(secs) = retry_after
                && let Ok(v) = secs.to_string().parse()
            {
                response.headers_mut().insert(RETRY_AFTER, v);
            }
            record(&shared, arrival, Some(code));
            return Ok(response);
        }
        Some(FaultAction::DropConnection) => {
            record(&shared, arrival, None);
            // A service error makes hyper close the connection without writing a response.
            return Err(std::io::Error::other(
                "connection dropped by an injected fault",
            ));
        }
        Some(FaultAction::DropAnswer) | None => {}
    }
    let (parts, body) = req.into_parts();
    let response = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => route(&shared, &parts, &collected.to_bytes()).await,
        Err(_) => status_response(&ApiError::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )),
    };
    if fault == Some(FaultAction::DropAnswer) {
        // The write happened; the client never learns it.
        record(&shared, arrival, None);
        return Err(std::io::Error::other("answer dropped by an injected fault"));
    }
    record(&shared, arrival, Some(response.status().as_u16()));
    Ok(response)
}

pub(crate) fn json_response(code: u16, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn status_response(error: &ApiError) -> Response<Body> {
    json_response(error.code, &error.to_status())
}

/// Percent-decodes a query string (`+` is a space, as form encoding has it); a repeated
/// parameter keeps its last value.
pub(crate) fn parse_query(query: &str) -> HashMap<String, String> {
    parse_query_pairs(query).into_iter().collect()
}

/// Every parameter of a query string, in order, repeated ones included (`command=ls&command=-l`).
pub(crate) fn parse_query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

async fn route(shared: &Arc<Shared>, parts: &Parts, body: &Bytes) -> Response<Body> {
    let query = parse_query(parts.uri.query().unwrap_or(""));
    let segments: Vec<&str> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let discovery = match segments.as_slice() {
        ["version"] => Some(version_info()),
        ["api"] => Some(
            json!({ "kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [] }),
        ),
        ["apis"] => Some(group_list()),
        ["api", "v1"] => Some(resource_list("", "v1")),
        ["apis", group] => group_list()["groups"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["name"] == *group).cloned())
            .map(|mut g| {
                g["kind"] = json!("APIGroup");
                g["apiVersion"] = json!("v1");
                g
            }),
        ["apis", group, version]
            if RESOURCES
                .iter()
                .any(|r| r.group == *group && r.version == *version) =>
        {
            Some(resource_list(group, version))
        }
        _ => None,
    };
    if let Some(document) = discovery {
        return if parts.method == Method::GET {
            json_response(200, &document)
        } else {
            status_response(&ApiError::method_not_allowed())
        };
    }
    let target = match segments.as_slice() {
        ["api", "v1", rest @ ..] => parse_target("", "v1", rest),
        ["apis", group, version, rest @ ..] => parse_target(group, version, rest),
        _ => None,
    };
    let Some(target) = target else {
        return status_response(&ApiError::path_not_found());
    };
    serve_target(shared, parts, &target, &query, body)
        .await
        .unwrap_or_else(|e| status_response(&e))
}

fn write_ctx(parts: &Parts, query: &HashMap<String, String>, target: &Target) -> WriteCtx {
    let explicit = query.get("fieldManager").filter(|m| !m.is_empty()).cloned();
    // Without fieldManager the real API server names the manager after the User-Agent's prefix.
    let derived = parts
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.split('/').next().unwrap_or(ua).to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    WriteCtx {
        explicit_manager: explicit.is_some(),
        manager: explicit.unwrap_or(derived),
        dry_run: query.get("dryRun").is_some_and(|v| v == "All"),
        subresource: target.subresource.clone(),
        force: query.get("force").is_some_and(|v| v == "true"),
    }
}

/// DeleteOptions: empty body, or a JSON object.
fn delete_options(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(ApiError::bad_request(
            "the body of a delete must be DeleteOptions (a JSON object)",
        )),
    }
}

fn selectors(query: &HashMap<String, String>, resource: &Resource) -> Result<Selectors, ApiError> {
    Ok(Selectors {
        labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?,
        fields: FieldSelector::parse(
            query.get("fieldSelector").map_or("", String::as_str),
            resource,
        )?,
    })
}

fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    matches!(query.get(name).map(String::as_str), Some("true" | "1"))
}

async fn serve_target(
    shared: &Arc<Shared>,
    parts: &Parts,
    target: &Target,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let resource = target.resource;
    let ns = target.namespace.as_deref();
    let write = Write {
        shared,
        target,
        query,
        user: user::from_headers(&parts.headers, &lock(&shared.tokens)),
        ctx: write_ctx(parts, query, target),
    };
    let special = target.subresource.as_deref().is_some_and(|s| {
        CONNECT_SUBRESOURCES.contains(&s) || ["binding", "eviction", "token"].contains(&s)
    });
    if special {
        let pairs = parse_query_pairs(parts.uri.query().unwrap_or(""));
        return write.subresource(&parts.method, &pairs, body).await;
    }
    match (&parts.method, target.name.as_deref()) {
        (&Method::GET, None) => {
            let selectors = selectors(query, &resource)?;
            if flag(query, "watch") {
                return start_watch(shared, target.clone(), selectors, query);
            }
            Ok(json_response(
                200,
                &list(shared, &resource, ns, &selectors, query)?,
            ))
        }
        (&Method::POST, None) if !resource.namespaced || ns.is_some() => write.create(body).await,
        (&Method::DELETE, None) => {
            let selectors = selectors(query, &resource)?;
            let options = delete_options(body)?;
            let names: Vec<(String, String)> = lock(&shared.store)
                .list(&resource, ns, &selectors)
                .iter()
                .map(|o| {
                    let meta = &o["metadata"];
                    let text = |f: &str| meta[f].as_str().unwrap_or("").to_string();
                    (text("namespace"), text("name"))
                })
                .collect();
            let (items, warnings) = write.delete_collection(names, &options).await?;
            let rv = lock(&shared.store).resource_version();
            Ok(super::writes::respond(
                200,
                &list_document(&resource, items, rv, None, None),
                &warnings,
            ))
        }
        (&Method::GET, Some(name)) => Ok(json_response(
            200,
            &lock(&shared.store).get(&resource, ns, name)?,
        )),
        (&Method::PUT, Some(_)) => write.replace(body).await,
        (&Method::PATCH, Some(_)) => write.patch(patch_kind(parts, &resource)?, body).await,
        (&Method::DELETE, Some(_)) if target.subresource.is_none() => {
            write.delete(&delete_options(body)?).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn patch_kind(parts: &Parts, resource: &Resource) -> Result<PatchKind, ApiError> {
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/apply-patch+yaml" => Ok(PatchKind::Apply),
        // Custom resources have no Go struct tags to merge by: the real API refuses this type.
        "application/strategic-merge-patch+json" if resource.crd.is_none() => {
            Ok(PatchKind::Strategic)
        }
        _ => {
            let mut accepted = vec![
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ];
            if resource.crd.is_none() {
                accepted.push("application/strategic-merge-patch+json");
            }
            Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: {}",
                    accepted.join(", ")
                ),
            ))
        }
    }
}

fn list_document(
    resource: &Resource,
    items: Vec<Value>,
    rv: u64,
    cont: Option<String>,
    remaining: Option<usize>,
) -> Value {
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if let Some(c) = cont {
        metadata["continue"] = json!(c);
        metadata["remainingItemCount"] = json!(remaining.unwrap_or(0));
    }
    json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": items,
    })
}

/// LIST with `limit`/`continue` paging (the continue token is an offset, and pages are not a
/// consistent snapshot — a simplification).
fn list(
    shared: &Shared,
    resource: &Resource,
    ns: Option<&str>,
    selectors: &Selectors,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let store = lock(&shared.store);
    let items = store.list(resource, ns, selectors);
    let rv = store.resource_version();
    drop(store);
    let offset: usize = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => c
            .parse()
            .map_err(|_| ApiError::bad_request("continue key is not valid: illegal base64 data"))?,
        None => 0,
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    let next = offset.saturating_add(page.len());
    let cont = (next < total).then(|| next.to_string());
    Ok(list_document(
        resource,
        page,
        rv,
        cont,
        Some(total.saturating_sub(next)),
    ))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({ "type": kind, "object": object })).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark_line(resource: &Resource, rv: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if initial_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    event_line(
        "BOOKMARK",
        &json!({ "kind": resource.kind, "apiVersion": resource.api_version(), "metadata": metadata }),
    )
}

/// The line a watcher sees for a logged change, if any: a MODIFIED that enters the selection is
/// an ADDED, one that leaves it a DELETED (as the real watch cache reports them).
fn watch_line(event: &Logged, target: &Target, selectors: &Selectors) -> Option<Bytes> {
    if event.resource != target.resource
        || (target.resource.namespaced
            && target
                .namespace
                .as_deref()
                .is_some_and(|ns| ns != event.namespace))
    {
        return None;
    }
    let now = selectors.matches(&event.object);
    let before = event
        .previous
        .as_ref()
        .is_some_and(|p| selectors.matches(p));
    let kind = match (event.kind, before, now) {
        (EventType::Added, _, true) => "ADDED",
        (EventType::Deleted, _, true) => "DELETED",
        (EventType::Modified, true, true) => "MODIFIED",
        (EventType::Modified, false, true) => "ADDED",
        (EventType::Modified, true, false) => "DELETED",
        _ => return None,
    };
    Some(event_line(kind, &event.object))
}

struct WatchPlan {
    target: Target,
    selectors: Selectors,
    initial: Vec<Value>,
    start: u64,
    expired: Option<ApiError>,
    bookmarks: bool,
    initial_end_bookmark: bool,
    timeout: Duration,
}

fn start_watch(
    shared: &Arc<Shared>,
    target: Target,
    selectors: Selectors,
    query: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let send_initial = flag(query, "sendInitialEvents");
    let bookmarks = flag(query, "allowWatchBookmarks");
    if send_initial && !bookmarks {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            &[crate::support::upstream::Violation {
                field: "sendInitialEvents".into(),
                reason: "FieldValueForbidden",
                message:
                    "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true"
                        .into(),
            }],
        ));
    }
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800)
        .min(24 * 3600);
    let store = lock(&shared.store);
    let ns = target.namespace.as_deref();
    let plan = match query
        .get("resourceVersion")
        .map(String::as_str)
        .filter(|v| !v.is_empty())
    {
        // Unset or "0": synthetic ADDED events for the current state, then changes.
        None | Some("0") => WatchPlan {
            initial: store.list(&target.resource, ns, &selectors),
            start: store.resource_version(),
            expired: None,
            ..empty_plan(&target, &selectors)
        },
        Some(v) => {
            let rv: u64 = v
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?;
            WatchPlan {
                initial: if send_initial {
                    store.list(&target.resource, ns, &selectors)
                } else {
                    Vec::new()
                },
                start: rv,
                expired: (rv < store.compacted()).then(|| ApiError::expired(rv, store.compacted())),
                ..empty_plan(&target, &selectors)
            }
        }
    };
    drop(store);
    let plan = WatchPlan {
        bookmarks,
        initial_end_bookmark: send_initial,
        timeout: Duration::from_secs(timeout),
        ..plan
    };
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    tokio::spawn(run_watch(shared.clone(), plan, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, Infallible>(Frame::data(line)), rx))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn empty_plan(target: &Target, selectors: &Selectors) -> WatchPlan {
    WatchPlan {
        target: target.clone(),
        selectors: selectors.clone(),
        initial: Vec::new(),
        start: 0,
        expired: None,
        bookmarks: false,
        initial_end_bookmark: false,
        timeout: Duration::from_secs(1800),
    }
}

async fn run_watch(shared: Arc<Shared>, plan: WatchPlan, tx: mpsc::Sender<Bytes>) {
    // Subscribe before reading the log, so no change between the two is missed.
    let mut changes = shared.changes.subscribe();
    let mut dropped = shared.drop_watches.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    if *shutdown.borrow() {
        return;
    }
    if let Some(error) = &plan.expired {
        let _ = tx.send(event_line("ERROR", &error.to_status())).await;
        return;
    }
    for object in &plan.initial {
        if tx.send(event_line("ADDED", object)).await.is_err() {
            return;
        }
    }
    let resource = plan.target.resource;
    let mut last = plan.start;
    if plan.initial_end_bookmark && tx.send(bookmark_line(&resource, last, true)).await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + plan.timeout;
    let interval = *lock(&shared.bookmark_interval);
    let mut next_bookmark = tokio::time::Instant::now() + interval;
    loop {
        let (lines, expired, head) = {
            let store = lock(&shared.store);
            // Checked under the store lock: a write that follows `drop_watches()` is never
            // delivered on a watch opened before it.
            if dropped.has_changed().unwrap_or(true) || *shutdown.borrow() {
                return;
            }
            match store.events_after(last) {
                Ok(events) => {
                    let lines: Vec<Bytes> = events
                        .filter_map(|e| watch_line(e, &plan.target, &plan.selectors))
                        .collect();
                    (lines, None, store.resource_version().max(last))
                }
                Err(e) => (Vec::new(), Some(e), last),
            }
        };
        for line in lines {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if let Some(error) = expired {
            let _ = tx.send(event_line("ERROR", &error.to_status())).await;
            return;
        }
        last = head;
        tokio::select! {
            biased;
            _ = dropped.changed() => return,
            _ = shutdown.changed() => return,
            _ = changes.changed() => {}
            _ = tx.closed() => return,
            _ = tokio::time::sleep_until(deadline) => {
                if plan.bookmarks {
                    let _ = tx.send(bookmark_line(&resource, last, false)).await;
                }
                return;
            }
            _ = tokio::time::sleep_until(next_bookmark), if plan.bookmarks => {
                if tx.send(bookmark_line(&resource, last, false)).await.is_err() {
                    return;
                }
                next_bookmark += interval;
            }
        }
    }
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-sparkward-standin",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn group_list() -> Value {
    let mut groups: Vec<Value> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if groups.iter().any(|g| g["name"] == r.group) {
            continue;
        }
        let version = json!({ "groupVersion": r.api_version(), "version": r.version });
        groups.push(json!({ "name": r.group, "versions": [version], "preferredVersion": version }));
    }
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(json!({
            "name": r.plural,
            "singularName": r.kind.to_lowercase(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        }));
        for sub in r.subresources() {
            let Some((group, version, kind)) = r.subresource_kind(sub) else {
                continue;
            };
            let verbs = match sub {
                "status" | "ephemeralcontainers" => json!(["get", "patch", "update"]),
                "exec" | "attach" | "portforward" => json!(["create", "get"]),
                _ => json!(["create"]),
            };
            let mut entry = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if (group, version) != (r.group, r.version) {
                entry["group"] = json!(group);
                entry["version"] = json!(version);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources })
}
