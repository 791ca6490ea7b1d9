//! A stateful stand-in for kube-apiserver, for integration tests that talk to it with the real
//! `kube::Client` over plain HTTP on 127.0.0.1.
//!
//! It keeps objects (uid, one global resourceVersion, generation, finalizers), answers the verbs
//! kube uses (get, list, watch, create, replace, the four patch types including server-side apply
//! with field ownership, delete with preconditions) with the real API server's `Status` errors,
//! validates custom resources against the pinned upstream CRD schemas (rejecting unknown fields),
//! and lets tests inject faults and inspect requests.
//!
//! ```ignore
//! let api = FakeApiServer::start().await;
//! let cnps: Api<DynamicObject> = Api::namespaced_with(api.client(), "default", &CNP.api_resource());
//! api.inject(Fault::status(500).method(Method::PATCH).path("ciliumnetworkpolicies"));
//! assert!(api.get(CNP, "default", "sparkward-sj-x").is_none());
//! ```
//!
//! # Admission
//!
//! Every write through HTTP passes an admission chain that calls the registered webhooks the way
//! kube-apiserver does ([`FakeApiServer::install_webhooks`], or
//! [`FakeApiServer::install_sparkward_webhooks`] for the project's own `webhook-config/`); with
//! none registered, writes behave as before. The calls are recorded
//! ([`FakeApiServer::admission_calls`]). Requests are made as a user: the bearer token's user
//! (`write_kubeconfig`'s token is sparkward's service account), else a cluster admin, with
//! impersonation on top ([`FakeApiServer::client_as`], [`FakeApiServer::create_as`]).
//!
//! Modelled (details in `admission`, `writes`, `subresources`, `webhooks` and `user`):
//! - registration: `clientConfig.service` replaced by a base URL plus the service's path, the
//!   CA given (or `caBundle`); rules with `resource/subresource` forms and `*`, operations,
//!   scope, `namespaceSelector`, `objectSelector`, a CEL subset for `matchConditions`,
//!   `failurePolicy`, `timeoutSeconds`, `sideEffects`, `reinvocationPolicy`;
//! - AdmissionReview v1 over TLS with a fresh `uid` per call (reinvocations included), the
//!   request's fields in kube-apiserver's order, `?timeout=Ns` on the URL, `dryRun` from
//!   `dryRun=All`, `options` (CreateOptions, UpdateOptions for PUT and every PATCH including
//!   apply, DeleteOptions, null for CONNECT), `userInfo` from impersonation (service-account
//!   groups, `system:authenticated`, uid, extras);
//! - mutating webhooks in order with JSONPatch and `IfNeeded` reinvocation, then validating
//!   webhooks (concurrently) on the final object; the real error texts for denials and failed
//!   calls; webhook warnings as `Warning` headers;
//! - CREATE: `generateName`, `uid`, `creationTimestamp` set after mutating and before
//!   validating admission; UPDATE: `object` after the patch, `oldObject` stored; DELETE:
//!   `oldObject`, `object` null; subresources `status`, `ephemeralcontainers`, `binding`,
//!   `eviction`, CONNECT `exec`/`attach`/`portforward`, and `serviceaccounts/token`.
//!
//! Where it differs from a real API server:
//! - no authorization, and every user may impersonate; unknown tokens are the admin;
//! - no in-tree admission plugins (defaulting, ServiceAccount, LimitRanger, PodSecurity...);
//! - one version per resource, so `matchPolicy: Equivalent` never converts;
//! - `matchConditions` understand only a CEL subset (others are refused at registration);
//! - webhook configurations are registered through the test API, not stored as objects;
//! - `managedFields` appear only in what validating webhooks see (mutating webhooks get the
//!   object without them) and changes made by webhooks are not attributed to a field manager;
//! - the built-in garbage collector and namespace cleanup delete without admission (in a cluster
//!   they are DELETE requests by controller service accounts that webhooks see);
//! - a graceful pod deletion calls each webhook once (the real registry may call them twice)
//!   and its DeleteOptions get no defaulted `gracePeriodSeconds`; validating errors are
//!   reported in configuration order, not in order of arrival;
//! - Go's transport errors are imitated for refused connections and timeouts only; a non-200
//!   webhook answer gets an approximation of client-go's wording.

mod admission;
mod fault;
mod fields;
mod http;
mod resource;
mod selector;
mod status;
mod store;
mod subresources;
mod user;
mod validate;
mod webhooks;
mod writes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub use self::admission::AdmissionCall;
pub use self::fault::{Fault, FaultAction, RecordedRequest};
use self::http::{Shared, lock};
pub use self::resource::{
    CNP, CONFIG_MAP, LEASE, NAMESPACE, NETWORK_POLICY, POD, RESOURCES, Resource,
    SCHEDULED_SPARK_APP, SECRET, SERVICE_ACCOUNT, SPARK_APP,
};
pub use self::status::ApiError;
use self::store::WriteCtx;
pub use self::subresources::DEFAULT_AUDIENCE;
pub use self::user::{AUTHENTICATED, User};
pub use self::webhooks::{Condition, FailurePolicy, Rule, RuleTarget, WebhookTarget};
use crate::support::upstream::crd_validator;

/// An HTTP answer of the stand-in: status, JSON body (a `Status` on errors) and the `Warning`
/// headers' texts.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub warnings: Vec<String>,
}

/// An `Impersonate-Extra-` key made a valid header name, escaped as client-go escapes it.
fn escape_extra_key(key: &str) -> String {
    key.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The text of a `Warning: 299 - "text"` header.
fn warning_text(header: &str) -> String {
    let quoted = header.splitn(3, ' ').nth(2).unwrap_or(header);
    serde_json::from_str::<String>(quoted).unwrap_or_else(|_| quoted.to_string())
}

/// The running stand-in; stops when dropped (or on [`FakeApiServer::shutdown`]).
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

fn namespace_arg(resource: &Resource, ns: &str) -> Option<String> {
    (resource.namespaced && !ns.is_empty()).then(|| ns.to_string())
}

impl FakeApiServer {
    /// Binds 127.0.0.1 on a random port and serves from the current tokio runtime. The
    /// namespaces `default`, `kube-system`, `kube-public` and `kube-node-lease` exist.
    pub async fn start() -> Self {
        // Decide about the upstream schemas here, in the test's thread: with
        // SPARKWARD_REQUIRE_UPSTREAM=1 a missing directory fails the test right away.
        let _ = crate::support::upstream::upstream_dir();
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("stand-in API server cannot bind 127.0.0.1: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("stand-in API server has no local address: {e}"),
        };
        let shared = Arc::new(Shared::new());
        let task = tokio::spawn(http::serve(listener, shared.clone()));
        Self {
            addr,
            shared,
            task: Some(task),
        }
    }

    /// Whether custom resources are checked against the upstream CRD schemas (false when the
    /// upstream directory is absent; see `upstream::upstream_dir`).
    pub fn schema_validation() -> bool {
        RESOURCES
            .iter()
            .filter_map(|r| r.crd)
            .all(|crd| crd_validator(crd).is_some())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `kube::Client` for this server, default namespace `default`.
    pub fn client(&self) -> kube::Client {
        let url = match self.url().parse() {
            Ok(u) => u,
            Err(e) => panic!("stand-in URL does not parse: {e}"),
        };
        match kube::Client::try_from(kube::Config::new(url)) {
            Ok(c) => c,
            Err(e) => panic!("cannot build a kube client for the stand-in: {e}"),
        }
    }

    /// A `kube::Client` that impersonates `user` (user, uid, groups and extras as
    /// `Impersonate-*` headers, as kubectl's `--as`/`--as-group` send them).
    pub fn client_as(&self, user: &User) -> kube::Client {
        let url = match self.url().parse() {
            Ok(u) => u,
            Err(e) => panic!("stand-in URL does not parse: {e}"),
        };
        let mut config = kube::Config::new(url);
        config.auth_info.impersonate = Some(user.username.clone());
        config.auth_info.impersonate_uid = user.uid.clone();
        config.auth_info.impersonate_groups =
            (!user.groups.is_empty()).then(|| user.groups.clone());
        config.auth_info.impersonate_user_extra = (!user.extra.is_empty()).then(|| {
            user.extra
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        });
        match kube::Client::try_from(config) {
            Ok(c) => c,
            Err(e) => panic!("cannot build an impersonating kube client: {e}"),
        }
    }

    /// Sends one request as `user` (impersonated) and returns the answer, errors included.
    /// `path` is e.g. `/api/v1/namespaces/ns/pods`; a body is sent as JSON, or with
    /// `content_type` when given (patches).
    pub async fn request_as(
        &self,
        user: &User,
        method: ::http::Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        use http_body_util::BodyExt;
        let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let mut request = ::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url()))
            .header("impersonate-user", &user.username);
        if let Some(uid) = &user.uid {
            request = request.header("impersonate-uid", uid);
        }
        for group in &user.groups {
            request = request.header("impersonate-group", group);
        }
        for (key, values) in &user.extra {
            let escaped = escape_extra_key(key);
            for v in values {
                request = request.header(format!("impersonate-extra-{escaped}"), v);
            }
        }
        let bytes = body.map_or_else(Vec::new, |b| serde_json::to_vec(b).unwrap_or_default());
        if body.is_some() {
            request = request.header(
                ::http::header::CONTENT_TYPE,
                content_type.unwrap_or("application/json"),
            );
        }
        let request = match request.body(http_body_util::Full::new(bytes::Bytes::from(bytes))) {
            Ok(r) => r,
            Err(e) => panic!("cannot build a request for {path}: {e}"),
        };
        let response = match client.request(request).await {
            Ok(r) => r,
            Err(e) => panic!("request to the stand-in failed: {e}"),
        };
        let status = response.status().as_u16();
        let warnings = response
            .headers()
            .get_all(::http::header::WARNING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(warning_text)
            .collect();
        let body = match response.into_body().collect().await {
            Ok(b) => serde_json::from_slice(&b.to_bytes()).unwrap_or(Value::Null),
            Err(e) => panic!("reading the stand-in's answer failed: {e}"),
        };
        Reply {
            status,
            body,
            warnings,
        }
    }

    /// Creates `object` through the API, as `user`, so the admission chain runs: `Ok` with the
    /// stored object, or `Err` with the `Status` answered. The resource comes from the object's
    /// `apiVersion`/`kind`, the namespace from its metadata (default `default`).
    pub async fn create_as(&self, user: &User, object: Value) -> Result<Value, Value> {
        let api_version = object["apiVersion"].as_str().unwrap_or("");
        let kind = object["kind"].as_str().unwrap_or("");
        let Some(resource) = Resource::for_kind(api_version, kind) else {
            panic!("the stand-in serves no {api_version} {kind}");
        };
        let prefix = if resource.group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{}", resource.api_version())
        };
        let path = if resource.namespaced {
            let ns = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default");
            format!("{prefix}/namespaces/{ns}/{}", resource.plural)
        } else {
            format!("{prefix}/{}", resource.plural)
        };
        let reply = self
            .request_as(user, ::http::Method::POST, &path, None, Some(&object))
            .await;
        if (200..300).contains(&reply.status) {
            Ok(reply.body)
        } else {
            Err(reply.body)
        }
    }

    /// Registers webhook configurations from YAML (one or more documents of
    /// MutatingWebhookConfiguration / ValidatingWebhookConfiguration; other documents, such as
    /// a kustomization, are skipped). A configuration with the same kind and name is replaced.
    pub fn try_install_webhooks(&self, yaml: &str, target: &WebhookTarget) -> Result<(), String> {
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(yaml).map_err(|e| format!("webhook YAML: {e}"))?;
        let mut registry = lock(&self.shared.webhooks);
        for doc in documents.iter().filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration")
            )
        }) {
            registry.install(doc, target)?;
        }
        Ok(())
    }

    /// [`Self::try_install_webhooks`], panicking on a configuration it cannot register.
    pub fn install_webhooks(&self, yaml: &str, target: &WebhookTarget) {
        if let Err(e) = self.try_install_webhooks(yaml, target) {
            panic!("cannot register the webhook configurations: {e}");
        }
    }

    /// Registers the project's own `webhook-config/*.yaml`, with every service reference pointing
    /// at `base_url` (e.g. a running sparkward's `https://127.0.0.1:PORT`) trusted through
    /// `ca_pem`.
    pub fn install_sparkward_webhooks(&self, base_url: &str, ca_pem: &str) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("webhook-config");
        let target = WebhookTarget {
            base_url: base_url.to_string(),
            ca_pem: ca_pem.to_string(),
        };
        for file in ["mutating.yaml", "validating.yaml"] {
            let path = dir.join(file);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => panic!("cannot read {}: {e}", path.display()),
            };
            self.install_webhooks(&text, &target);
        }
    }

    /// Unregisters every webhook configuration.
    pub fn clear_webhooks(&self) {
        lock(&self.shared.webhooks).clear();
    }

    /// Every webhook call so far, in order of completion.
    pub fn admission_calls(&self) -> Vec<AdmissionCall> {
        lock(&self.shared.admission_calls).clone()
    }

    pub fn clear_admission_calls(&self) {
        lock(&self.shared.admission_calls).clear();
    }

    /// Makes `Authorization: Bearer <token>` authenticate as `user`.
    pub fn add_token(&self, token: &str, user: User) {
        lock(&self.shared.tokens).insert(token.to_string(), user);
    }

    /// Writes `<dir>/kubeconfig` pointing at this server (for starting sparkward as a process).
    /// Its token authenticates as sparkward's service account
    /// (`system:serviceaccount:sparkward-system:sparkward`), as sparkward's requests do in a
    /// cluster.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n    namespace: default\ncurrent-context: standin\nusers:\n- name: standin\n  user:\n    token: {}\n",
            self.url(),
            http::STANDIN_TOKEN
        );
        if let Err(e) = std::fs::write(&path, text) {
            panic!("cannot write {}: {e}", path.display());
        }
        path
    }

    /// Adds a fault; faults are tried in the order added.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Every request so far, in order of answer.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// The stored object (with `metadata.managedFields`), if any; `ns` is ignored for
    /// cluster-scoped resources.
    pub fn get(&self, resource: Resource, ns: &str, name: &str) -> Option<Value> {
        lock(&self.shared.store)
            .get(&resource, namespace_arg(&resource, ns).as_deref(), name)
            .ok()
    }

    /// Stored objects of a type, sorted by namespace and name; `None`: all namespaces.
    pub fn list(&self, resource: Resource, ns: Option<&str>) -> Vec<Value> {
        lock(&self.shared.store).list(&resource, ns, &Default::default())
    }

    /// Seeds an object as if a client had created it (same validation; `.status` is kept;
    /// namespace defaults to `default`). Panics if the API would reject it.
    pub fn insert(&self, object: Value) -> Value {
        match self.try_insert(object) {
            Ok(v) => v,
            Err(e) => panic!("stand-in rejected the seeded object: {e}"),
        }
    }

    pub fn try_insert(&self, object: Value) -> Result<Value, ApiError> {
        let result = lock(&self.shared.store).insert(object);
        self.shared.notify();
        result
    }

    /// Creates a namespace with these labels unless it exists; returns it.
    pub fn ensure_namespace(&self, name: &str, labels: Value) -> Value {
        if let Some(ns) = self.get(NAMESPACE, "", name) {
            return ns;
        }
        self.insert(json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": labels } }))
    }

    /// Replaces `.status` as a controller would through the status subresource (with the
    /// object's current metadata: pods/status also writes labels and annotations).
    pub fn update_status(
        &self,
        resource: Resource,
        ns: &str,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let ctx = WriteCtx {
            manager: "sparkward-tests".into(),
            subresource: Some("status".into()),
            ..WriteCtx::default()
        };
        let mut metadata = self
            .get(resource, ns, name)
            .map_or_else(|| json!({ "name": name }), |o| o["metadata"].clone());
        if let Some(m) = metadata.as_object_mut() {
            m.remove("managedFields");
        }
        let body = json!({
            "apiVersion": resource.api_version(),
            "kind": resource.kind,
            "metadata": metadata,
            "status": status,
        });
        let result = lock(&self.shared.store).replace(
            &resource,
            namespace_arg(&resource, ns).as_deref(),
            name,
            body,
            &ctx,
        );
        self.shared.notify();
        result
    }

    /// Removes an object at once, ignoring finalizers (watches see DELETED).
    pub fn remove(&self, resource: Resource, ns: &str, name: &str) -> Option<Value> {
        let removed = lock(&self.shared.store).remove(
            &resource,
            namespace_arg(&resource, ns).as_deref(),
            name,
        );
        self.shared.notify();
        removed
    }

    /// Turns the garbage collector off (on by default): then dependents whose owners are gone
    /// stay, e.g. to seed a CNP that points at a SparkApplication the test never creates.
    pub fn set_garbage_collection(&self, enabled: bool) {
        lock(&self.shared.store).set_garbage_collection(enabled);
    }

    /// Ends every open watch (clients see the stream close and must re-watch).
    pub fn drop_watches(&self) {
        self.shared.drop_watches.send_modify(|g| *g += 1);
    }

    /// Forgets the event log: watches resuming from an older resourceVersion get 410 Gone.
    pub fn compact(&self) {
        lock(&self.shared.store).compact();
    }

    /// Keeps at most `events` changes for watches to resume from (default 4096).
    pub fn set_event_log_capacity(&self, events: usize) {
        lock(&self.shared.store).set_log_capacity(events);
    }

    /// How often watches that asked for bookmarks get one (default 10 s).
    pub fn set_bookmark_interval(&self, interval: Duration) {
        *lock(&self.shared.bookmark_interval) = interval.max(Duration::from_millis(1));
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).resource_version()
    }

    /// Stops accepting, closes connections and ends watches; waits for the accept loop.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
