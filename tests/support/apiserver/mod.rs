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

mod fault;
mod fields;
mod http;
mod resource;
mod selector;
mod status;
mod store;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub use self::fault::{Fault, FaultAction, RecordedRequest};
use self::http::{Shared, lock};
pub use self::resource::{
    CNP, LEASE, NAMESPACE, POD, RESOURCES, Resource, SCHEDULED_SPARK_APP, SPARK_APP,
};
pub use self::status::ApiError;
use self::store::WriteCtx;
use crate::support::upstream::crd_validator;

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

    /// Writes `<dir>/kubeconfig` pointing at this server (for starting sparkward as a process).
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n    namespace: default\ncurrent-context: standin\nusers:\n- name: standin\n  user:\n    token: standin-token\n",
            self.url()
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

    /// Replaces `.status` as a controller would through the status subresource.
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
        let body = json!({
            "apiVersion": resource.api_version(),
            "kind": resource.kind,
            "metadata": { "name": name },
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
