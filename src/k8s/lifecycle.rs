//! The lifecycle controller: adopts, ends and reaps job policies (DESIGN.md, "Lifecycle").
//!
//! It acts only while this replica holds the Lease (`k8s::lease`). While leading it keeps
//! watch-backed caches (kube-runtime reflectors) of managed CiliumNetworkPolicies,
//! SparkApplications and job pods; once all three completed their first list it turns them into
//! plain data every tick, asks `core::lifecycle::plan_lifecycle` what to do, and applies each
//! action with a timeout: an adoption is a JSON merge patch adding the owner reference, guarded
//! by the policy's uid and resourceVersion; a deletion carries a uid precondition. 404 means the
//! work is done already. Every action is counted in `sparkward_lifecycle_actions` and written as
//! one audit line. Errors are logged and the next tick tries again.
//!
//! Stepping down (a failed renewal, another holder, shutdown) cancels the leadership term at
//! once: the in-flight call is dropped, the caches stop, and nothing more is sent. On shutdown the
//! Lease is released so a successor takes over without waiting for it to expire.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams,
    Preconditions,
};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::LifecycleConfig;
use crate::core::labels::{self, JOB_ID_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::core::lifecycle::{
    Action, JobObject, LifecycleInput, ManagedPolicy, Owner, TerminalClock, plan_lifecycle,
};
use crate::k8s::cache::meta_from;
use crate::k8s::lease::{Elector, LeaseSettings, Timings};
use crate::k8s::policy;
use crate::telemetry::{AuditSink, LifecycleLabels, Metrics};

/// Field manager of the adoption patches (distinct from the admission's server-side apply, so
/// the owner reference is never pruned by a later apply of the policy).
pub const FIELD_MANAGER: &str = "sparkward-lifecycle";

/// The current lifecycle section of the configuration (it may change on reload).
pub type ConfigSource = Arc<dyn Fn() -> LifecycleConfig + Send + Sync>;
/// The current audit sink (it may change on reload).
pub type AuditSource = Arc<dyn Fn() -> Arc<AuditSink> + Send + Sync>;

/// How the controller runs.
#[derive(Clone)]
pub struct LifecycleSettings {
    /// Read at every tick and every Lease round.
    pub config: ConfigSource,
    /// How often the caches are reconciled while leading.
    pub tick: Duration,
    /// Bound on each adopt or delete call.
    pub action_timeout: Duration,
}

impl LifecycleSettings {
    /// A 5 s tick and a 5 s bound on each action.
    pub fn new(config: impl Fn() -> LifecycleConfig + Send + Sync + 'static) -> Self {
        Self {
            config: Arc::new(config),
            tick: Duration::from_secs(5),
            action_timeout: Duration::from_secs(5),
        }
    }

    /// Settings with a configuration that never changes.
    pub fn fixed(config: LifecycleConfig) -> Self {
        Self::new(move || config.clone())
    }

    pub fn with_tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    pub fn with_action_timeout(mut self, timeout: Duration) -> Self {
        self.action_timeout = timeout;
        self
    }
}

/// The lifecycle controller of one replica.
pub struct Lifecycle {
    inner: Arc<Inner>,
    leading: watch::Sender<bool>,
}

struct Inner {
    client: Client,
    settings: LifecycleSettings,
    metrics: Metrics,
    audit: AuditSource,
    identity: String,
}

/// Why a leadership term ended.
enum StepDown {
    Shutdown,
    /// The configuration names another Lease now.
    Moved,
    Lost(String),
}

impl Lifecycle {
    /// `identity` is this replica's Lease holder identity (`k8s::lease::holder_identity`).
    pub fn new(
        client: Client,
        settings: LifecycleSettings,
        metrics: Metrics,
        audit: impl Fn() -> Arc<AuditSink> + Send + Sync + 'static,
        identity: String,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                settings,
                metrics,
                audit: Arc::new(audit),
                identity,
            }),
            leading: watch::channel(false).0,
        }
    }

    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// `true` while this replica holds the Lease and may act.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Campaigns for the Lease and leads while holding it, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        // Dropping this future (an aborted task) stops everything it started, too.
        let own = shutdown.child_token();
        let _stop_children = own.clone().drop_guard();
        let mut elector = Elector::new(self.inner.client.clone(), self.inner.identity.clone());
        tracing::info!(identity = %self.inner.identity, "lifecycle controller campaigning for the lease");
        loop {
            let lease = lease_settings(&(self.inner.settings.config)());
            let timings = Timings::for_duration(lease.duration);
            let sent = Instant::now();
            let attempt = tokio::select! {
                biased;
                _ = own.cancelled() => break,
                r = tokio::time::timeout(timings.renew_deadline, elector.try_acquire(&lease)) => r,
            };
            match attempt {
                Ok(Ok(true)) => {
                    if let StepDown::Shutdown = self.lead(&mut elector, lease, sent, &own).await {
                        break;
                    }
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "lifecycle lease: acquisition failed"),
                Err(_) => tracing::warn!("lifecycle lease: acquisition timed out"),
            }
            tokio::select! {
                biased;
                _ = own.cancelled() => break,
                _ = tokio::time::sleep(timings.retry_every) => {}
            }
        }
        tracing::info!(identity = %self.inner.identity, "lifecycle controller stopped");
    }

    /// One leadership term: works while renewing; returns why it ended (the work has stopped
    /// by then, and the lease is released unless it was lost).
    async fn lead(
        &self,
        elector: &mut Elector,
        mut lease: LeaseSettings,
        acquired: Instant,
        own: &CancellationToken,
    ) -> StepDown {
        // Deadlines count from when the winning write was sent, never from when it was answered.
        let mut last_ok = acquired;
        tracing::info!(identity = %self.inner.identity, lease = %lease.name, namespace = %lease.namespace,
            "lifecycle controller leading");
        self.leading.send_replace(true);
        let term = own.child_token();
        let worker = tokio::spawn(self.inner.clone().work(term.clone()));
        let reason = loop {
            let timings = Timings::for_duration(lease.duration);
            tokio::select! {
                biased;
                _ = own.cancelled() => break StepDown::Shutdown,
                _ = tokio::time::sleep_until(last_ok + timings.renew_every) => {}
            }
            let current = lease_settings(&(self.inner.settings.config)());
            if (&current.name, &current.namespace) != (&lease.name, &lease.namespace) {
                break StepDown::Moved;
            }
            lease.duration = current.duration;
            let sent = Instant::now();
            let deadline = last_ok + timings.renew_deadline;
            let renewed = tokio::select! {
                biased;
                _ = own.cancelled() => break StepDown::Shutdown,
                r = tokio::time::timeout_at(deadline, elector.renew(&lease)) => r,
            };
            match renewed {
                Ok(Ok(())) => last_ok = sent,
                Ok(Err(e)) => break StepDown::Lost(e.to_string()),
                Err(_) => break StepDown::Lost("the renewal did not succeed in time".into()),
            }
        };
        // Stop acting at once, then wait for the worker to notice (it drops its in-flight call).
        term.cancel();
        self.leading.send_replace(false);
        if let Err(e) = worker.await {
            tracing::error!(error = %e, "lifecycle worker task failed");
        }
        match &reason {
            StepDown::Lost(why) => {
                elector.forget();
                tracing::warn!(identity = %self.inner.identity, reason = %why, "lifecycle controller stepped down");
            }
            StepDown::Shutdown | StepDown::Moved => {
                elector.release(Duration::from_secs(2)).await;
            }
        }
        reason
    }
}

fn lease_settings(config: &LifecycleConfig) -> LeaseSettings {
    LeaseSettings {
        name: config.lease_name.clone(),
        namespace: config.lease_namespace.clone(),
        duration: config.lease_duration,
    }
}

/// How an action ended, for metrics (`outcome`) and audit.
enum Outcome {
    Success,
    /// The policy was already gone (404), or replaced by another object of the same name.
    Gone,
    Failure(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Gone => "gone",
            Outcome::Failure(_) => "failure",
        }
    }
}

/// One audit line per lifecycle action.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditRecord<'a> {
    time: String,
    component: &'static str,
    action: &'static str,
    namespace: &'a str,
    policy: &'a str,
    policy_uid: &'a str,
    job_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<AuditOwner<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    holder: &'a str,
    latency_ms: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditOwner<'a> {
    api_version: &'a str,
    kind: &'a str,
    name: &'a str,
    uid: &'a str,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Inner {
    /// The leader's work: caches, then a reconcile every tick, until `term` is cancelled.
    async fn work(self: Arc<Self>, term: CancellationToken) {
        let caches = Caches::start(&self.client, &term);
        tokio::select! {
            biased;
            _ = term.cancelled() => return,
            _ = caches.synced() => {}
        }
        tracing::info!("lifecycle caches synced");
        let mut clock = TerminalClock::default();
        // Policies acted on, by uid, with the resourceVersion they had: skipped until the cache
        // shows them changed or gone, so a lagging cache does not cause the same action twice.
        let mut acted: HashMap<String, String> = HashMap::new();
        let mut ticker = tokio::time::interval(self.settings.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = term.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let config = (self.settings.config)();
            let now = SystemTime::now();
            let (policies, mut objects) = caches.snapshot();
            clock.observe(&mut objects, now);
            acted.retain(|uid, rv| {
                policies
                    .iter()
                    .any(|p| &p.uid == uid && &p.resource_version == rv)
            });
            let policies: Vec<ManagedPolicy> = policies
                .into_iter()
                .filter(|p| !acted.contains_key(&p.uid))
                .collect();
            let actions = plan_lifecycle(
                &LifecycleInput {
                    policies: &policies,
                    objects: &objects,
                    end_grace: config.end_grace,
                    orphan_grace: config.orphan_grace,
                },
                now,
            );
            for action in actions {
                let started = Instant::now();
                let outcome = tokio::select! {
                    biased;
                    _ = term.cancelled() => return,
                    r = tokio::time::timeout(self.settings.action_timeout, self.apply(&action)) => {
                        r.unwrap_or_else(|_| Outcome::Failure(format!(
                            "the API did not answer within {:?}", self.settings.action_timeout
                        )))
                    }
                };
                if !matches!(outcome, Outcome::Failure(_)) {
                    let p = action.policy();
                    acted.insert(p.uid.clone(), p.resource_version.clone());
                }
                self.record(&action, &outcome, started.elapsed());
            }
        }
    }

    fn policies_api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &policy::api_resource())
    }

    /// A job's RPC Secret follows its policy: adopted by the same owner, deleted with it. It is
    /// acted on first, so a failure leaves the policy's action to be planned (and the Secret's
    /// retried) on the next tick. sparkward never reads Secrets (no get or list): a job without
    /// a Secret answers 404, which is done.
    async fn apply_to_secret(&self, action: &Action) -> Result<(), String> {
        let p = action.policy();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &p.namespace);
        let name = labels::rpc_secret_name(&p.job_id);
        let result = match action {
            Action::Adopt { owner, .. } => {
                let patch = json!({"metadata": {"ownerReferences": [{
                    "apiVersion": owner.api_version, "kind": owner.kind,
                    "name": owner.name, "uid": owner.uid,
                    "controller": false, "blockOwnerDeletion": false,
                }]}});
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PatchParams::default()
                };
                api.patch(&name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            Action::Delete { .. } => api
                .delete(&name, &DeleteParams::default())
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(format!("the job's RPC Secret {name}: {}", describe(&e))),
        }
    }

    async fn apply(&self, action: &Action) -> Outcome {
        if let Err(e) = self.apply_to_secret(action).await {
            return Outcome::Failure(e);
        }
        let p = action.policy();
        let api = self.policies_api(&p.namespace);
        match action {
            Action::Adopt { owner, .. } => {
                let patch = adoption_patch(&p.uid, &p.resource_version, owner);
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..PatchParams::default()
                };
                match api.patch(&p.name, &params, &Patch::Merge(&patch)).await {
                    Ok(_) => Outcome::Success,
                    Err(kube::Error::Api(s)) if s.code == 404 => Outcome::Gone,
                    Err(e) => Outcome::Failure(describe(&e)),
                }
            }
            Action::Delete { .. } => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(p.uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&p.name, &params).await {
                    Ok(_) => Outcome::Success,
                    Err(kube::Error::Api(s)) if s.code == 404 => Outcome::Gone,
                    // The uid precondition failed: the policy we meant is gone; another object
                    // of the same name is not ours to delete on this plan.
                    Err(kube::Error::Api(s)) if s.code == 409 => Outcome::Gone,
                    Err(e) => Outcome::Failure(describe(&e)),
                }
            }
        }
    }

    fn record(&self, action: &Action, outcome: &Outcome, elapsed: Duration) {
        let p = action.policy();
        let (owner, reason) = match action {
            Action::Adopt { owner, .. } => (
                Some(AuditOwner {
                    api_version: &owner.api_version,
                    kind: &owner.kind,
                    name: &owner.name,
                    uid: &owner.uid,
                }),
                None,
            ),
            Action::Delete { reason, .. } => (None, Some(reason.code())),
        };
        let error = match outcome {
            Outcome::Failure(e) => Some(e.as_str()),
            _ => None,
        };
        match outcome {
            Outcome::Failure(e) => tracing::warn!(action = action.name(), namespace = %p.namespace,
                policy = %p.name, error = %e, "lifecycle action failed; retrying on a later tick"),
            _ => tracing::info!(action = action.name(), namespace = %p.namespace, policy = %p.name,
                outcome = outcome.label(), "lifecycle action"),
        }
        (self.audit)().write(&AuditRecord {
            time: now_rfc3339(),
            component: "lifecycle",
            action: action.name(),
            namespace: &p.namespace,
            policy: &p.name,
            policy_uid: &p.uid,
            job_id: &p.job_id,
            owner,
            reason,
            outcome: outcome.label(),
            error,
            holder: &self.identity,
            latency_ms: elapsed.as_secs_f64() * 1000.0,
        });
        // Counted after the audit line is written, so a count always has its line.
        self.metrics
            .lifecycle_actions
            .get_or_create(&LifecycleLabels {
                action: action.name(),
                outcome: outcome.label(),
            })
            .inc();
    }
}

/// The merge patch that adopts a policy: the owner reference, with the policy's uid and
/// resourceVersion as preconditions (the API answers 409 when either changed). The planner only
/// adopts policies without owner references, so replacing the list loses nothing.
///
/// `blockOwnerDeletion: false`: `true` would make sparkward need `update` on the owners'
/// `finalizers` subresource and only matters to foreground deletion of the job, which has no
/// reason to wait for its policy.
pub fn adoption_patch(uid: &str, resource_version: &str, owner: &Owner) -> Value {
    json!({
        "metadata": {
            "uid": uid,
            "resourceVersion": resource_version,
            "ownerReferences": [{
                "apiVersion": owner.api_version,
                "kind": owner.kind,
                "name": owner.name,
                "uid": owner.uid,
                "controller": false,
                "blockOwnerDeletion": false,
            }],
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Caches
// ---------------------------------------------------------------------------------------------

/// Deserialises `T`, or its default when the value has an unexpected shape: one odd object must
/// not fail a whole list (and so stall the cache).
fn lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let value = Value::deserialize(d)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AppStateView {
    #[serde(deserialize_with = "lenient")]
    state: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AppStatusView {
    #[serde(deserialize_with = "lenient")]
    application_state: Option<AppStateView>,
    #[serde(deserialize_with = "lenient")]
    termination_time: Option<String>,
}

/// A SparkApplication as the controller keeps it: metadata and the two status fields it reads.
#[derive(Clone, Debug, Deserialize)]
struct SparkAppView {
    metadata: ObjectMeta,
    #[serde(default, deserialize_with = "lenient")]
    status: Option<AppStatusView>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PodStatusView {
    #[serde(deserialize_with = "lenient")]
    phase: Option<String>,
}

/// A pod as the controller keeps it: metadata and `status.phase`.
#[derive(Clone, Debug, Deserialize)]
struct PodView {
    metadata: ObjectMeta,
    #[serde(default, deserialize_with = "lenient")]
    status: Option<PodStatusView>,
}

macro_rules! view_resource {
    ($view:ty, $group:literal, $version:literal, $kind:literal, $plural:literal) => {
        impl Resource for $view {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($group)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($version)
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

view_resource!(
    SparkAppView,
    "sparkoperator.k8s.io",
    "v1beta2",
    "SparkApplication",
    "sparkapplications"
);
view_resource!(PodView, "", "v1", "Pod", "pods");

type PolicyMeta = PartialObjectMeta<DynamicObject>;

/// The leader's three caches; their watches stop with the term.
struct Caches {
    policies: Store<PolicyMeta>,
    apps: Store<SparkAppView>,
    pods: Store<PodView>,
}

impl Caches {
    fn start(client: &Client, term: &CancellationToken) -> Self {
        let managed = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
        let cnp: ApiResource = policy::api_resource();
        Self {
            policies: reflect(
                Api::all_with(client.clone(), &cnp),
                cnp,
                watcher::Config::default().labels(&managed),
                term,
                "CiliumNetworkPolicy",
            ),
            apps: reflect(
                Api::all(client.clone()),
                (),
                watcher::Config::default().labels(JOB_ID_LABEL),
                term,
                "SparkApplication",
            ),
            pods: reflect(
                Api::all(client.clone()),
                (),
                watcher::Config::default().labels(JOB_ID_LABEL),
                term,
                "Pod",
            ),
        }
    }

    /// Completes once every cache finished its first list.
    async fn synced(&self) {
        let _ = tokio::join!(
            self.policies.wait_until_ready(),
            self.apps.wait_until_ready(),
            self.pods.wait_until_ready(),
        );
    }

    /// The caches as plain data for the planner. Policies already being deleted are left out.
    fn snapshot(&self) -> (Vec<ManagedPolicy>, Vec<JobObject>) {
        let policies = self
            .policies
            .state()
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| managed_policy(&p.metadata))
            .collect();
        let apps = self.apps.state().into_iter().filter_map(|a| {
            let status = a.status.clone().unwrap_or_default();
            let state = status.application_state.and_then(|s| s.state);
            let ended = status
                .termination_time
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map(end_of_second);
            JobObject::spark_application(&meta_from(&a.metadata), state, ended)
        });
        let pods = self.pods.state().into_iter().filter_map(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.clone());
            JobObject::pod(&meta_from(&p.metadata), phase)
        });
        (policies, apps.chain(pods).collect())
    }
}

fn managed_policy(m: &ObjectMeta) -> Option<ManagedPolicy> {
    let meta = meta_from(m);
    Some(ManagedPolicy {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        resource_version: m.resource_version.clone().unwrap_or_default(),
        job_id: meta.label(JOB_ID_LABEL).map(str::to_string),
        owner_references: meta.owner_references,
        created: m.creation_timestamp.as_ref().map(|t| end_of_second(t.0)),
    })
}

/// API timestamps (`creationTimestamp`, `terminationTime`) have whole seconds: the moment they
/// stand for may be up to a second later. Counting graces from the end of that second means a
/// grace is never cut short.
fn end_of_second(t: Timestamp) -> SystemTime {
    let at = SystemTime::from(t);
    if t.subsec_nanosecond() == 0 {
        at + Duration::from_secs(1)
    } else {
        at
    }
}

/// A short, single-line description of an API error for logs and audit lines.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

/// Starts a reflector that runs until `term` is cancelled; watch errors are logged and retried
/// with kube's default backoff (relisting when the API says the resourceVersion is gone).
fn reflect<K>(
    api: Api<K>,
    dyntype: K::DynamicType,
    config: watcher::Config,
    term: &CancellationToken,
    what: &'static str,
) -> Store<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync + Unpin,
{
    let writer = reflector::store::Writer::<K>::new(dyntype);
    let store = writer.as_reader();
    let stream = reflector::reflector(
        writer,
        watcher(api, config)
            .default_backoff()
            .modify(|o| o.meta_mut().managed_fields = None),
    );
    let term = term.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                biased;
                _ = term.cancelled() => return,
                item = stream.next() => match item {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::warn!(error = %e, cache = what, "lifecycle cache watch failed; retrying"),
                    None => return,
                },
            }
        }
    });
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adoption_patch_adds_a_non_blocking_non_controller_owner_under_preconditions() {
        let owner = Owner {
            api_version: "sparkoperator.k8s.io/v1beta2".into(),
            kind: "SparkApplication".into(),
            name: "pi".into(),
            uid: "app-uid".into(),
        };
        assert_eq!(
            adoption_patch("cnp-uid", "42", &owner),
            json!({"metadata": {
                "uid": "cnp-uid", "resourceVersion": "42",
                "ownerReferences": [{
                    "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
                    "name": "pi", "uid": "app-uid", "controller": false, "blockOwnerDeletion": false,
                }],
            }})
        );
    }

    #[test]
    fn odd_status_shapes_do_not_fail_the_cache() {
        let app: SparkAppView = serde_json::from_value(json!({
            "metadata": {"name": "a"},
            "status": {"applicationState": "weird", "terminationTime": 5}
        }))
        .unwrap();
        let status = app.status.unwrap();
        assert!(status.application_state.is_none());
        assert!(status.termination_time.is_none());
        let pod: PodView = serde_json::from_value(json!({
            "metadata": {"name": "p"}, "status": "nonsense"
        }))
        .unwrap();
        assert!(pod.status.is_none());
        let pod: PodView = serde_json::from_value(json!({
            "metadata": {"name": "p"}, "status": {"phase": "Succeeded", "containerStatuses": []}
        }))
        .unwrap();
        assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Succeeded"));
    }
}
