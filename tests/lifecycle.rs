//! The lifecycle controller against the stand-in API server: adoption, the end of a job after the
//! grace, orphan reaping, running jobs left alone, one leader at a time through the Lease, and
//! convergence through API errors and watch restarts. Objects are seeded the way sparkward
//! admits them (identity stamp, rendered policy) and validated against the real CRD schemas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use sparkward::config::{Config, LifecycleConfig};
use sparkward::core::decision::{JobIdentity, Submitter};
use sparkward::core::labels::{job_id_for_test, policy_name};
use sparkward::core::policy::{PolicyInput, render_policy};
use sparkward::k8s::lifecycle::{Lifecycle, LifecycleSettings};
use sparkward::telemetry::{AuditSink, LifecycleLabels, Metrics};
use support::apiserver::{CNP, FakeApiServer, Fault, LEASE, POD, SPARK_APP};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const NS: &str = "spark-jobs";
const LEASE_NS: &str = "sparkward-system";
const LEASE_NAME: &str = "sparkward-lifecycle";
const TICK: Duration = Duration::from_millis(100);
const PATIENCE: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

fn mk_config(end_grace: Duration, orphan_grace: Duration) -> LifecycleConfig {
    LifecycleConfig {
        end_grace,
        orphan_grace,
        lease_name: LEASE_NAME.into(),
        lease_namespace: LEASE_NS.into(),
        lease_duration: Duration::from_secs(2),
    }
}

fn mk_job(request_uid: &str) -> JobIdentity {
    JobIdentity {
        job_id: job_id_for_test(request_uid),
        submitter: Submitter {
            subject: "alice@example.com".into(),
            issuer: "https://idp.example.com/realms/data".into(),
            token_id: Some(format!("jti-{request_uid}")),
            scopes: vec!["data:read:postgres-main".into()],
        },
        security: None,
    }
}

/// Labels and annotations exactly as the admission writes them.
fn stamp(job: &JobIdentity, role: Option<&str>) -> (Value, Value) {
    let s = job.stamp(role);
    let mut labels = json!(s.labels);
    if let Some(role) = role {
        labels["spark-role"] = json!(role);
    }
    (labels, json!(s.annotations))
}

fn mk_app(name: &str, job: &JobIdentity) -> Value {
    let (labels, annotations) = stamp(job, None);
    let pod_labels = json!(job.pod_labels());
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": name, "namespace": NS, "labels": labels, "annotations": annotations},
        "spec": {
            "type": "Scala", "mode": "cluster", "image": "docker.io/apache/spark:4.0.4",
            "mainClass": "org.apache.spark.examples.SparkPi",
            "mainApplicationFile": "local:///opt/spark/examples/jars/spark-examples.jar",
            "sparkVersion": "4.0.4",
            "driver": {"cores": 1, "memory": "512m", "serviceAccount": "spark", "labels": pod_labels},
            "executor": {"instances": 2, "cores": 1, "memory": "512m", "labels": pod_labels},
        },
        "status": {"applicationState": {"state": "RUNNING"}, "driverInfo": {}},
    })
}

/// A job pod; `owner` is `(kind, apiVersion, name, uid)` of its owner.
fn mk_pod(name: &str, job: &JobIdentity, role: &str, owner: Option<&Value>) -> Value {
    let (labels, annotations) = stamp(job, Some(role));
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels, "annotations": annotations},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "spark-kubernetes-driver", "image": "docker.io/apache/spark:4.0.4"}],
        },
    });
    if let Some(owner) = owner {
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": true,
        }]);
    }
    pod
}

/// The job's policy as the admission renders it.
fn mk_policy(job: &JobIdentity) -> Value {
    let rendered = render_policy(
        &PolicyInput {
            job_id: &job.job_id,
            namespace: NS,
            user_label: &job.user_label(),
            scopes: &job.submitter.scopes,
        },
        &Config::default().policy,
    )
    .unwrap();
    serde_json::to_value(&rendered.policy).unwrap()
}

fn owner_ref_of(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": false, "blockOwnerDeletion": false,
    })
}

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

async fn mk_api() -> FakeApiServer {
    let api = FakeApiServer::start().await;
    api.ensure_namespace(NS, json!({"sparkward.io/enforce": "true"}));
    api.ensure_namespace(LEASE_NS, json!({}));
    api
}

/// One running controller replica, with its own metrics and audit file.
struct Replica {
    identity: String,
    task: JoinHandle<()>,
    shutdown: CancellationToken,
    leading: watch::Receiver<bool>,
    metrics: Metrics,
    audit: PathBuf,
    _dir: tempfile::TempDir,
}

impl Replica {
    fn start(api: &FakeApiServer, identity: &str, config: LifecycleConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit.jsonl");
        let sink = Arc::new(AuditSink::file(&audit).unwrap());
        let metrics = Metrics::register(&mut Registry::default());
        let controller = Lifecycle::new(
            api.client(),
            LifecycleSettings::fixed(config)
                .with_tick(TICK)
                .with_action_timeout(Duration::from_secs(2)),
            metrics.clone(),
            move || sink.clone(),
            identity.to_string(),
        );
        let leading = controller.leading();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(controller.run(shutdown.clone()));
        Self {
            identity: identity.to_string(),
            task,
            shutdown,
            leading,
            metrics,
            audit,
            _dir: dir,
        }
    }

    fn is_leading(&self) -> bool {
        // A replica whose task is gone (aborted) no longer leads, whatever it last said.
        !self.task.is_finished() && *self.leading.borrow()
    }

    fn count(&self, action: &'static str, outcome: &'static str) -> u64 {
        self.metrics
            .lifecycle_actions
            .get_or_create(&LifecycleLabels { action, outcome })
            .get()
    }

    /// Waits until the counter reaches `n` (an action is counted after its answer arrives,
    /// which is a moment after the stand-in shows its effect).
    async fn wait_for_count(&self, action: &'static str, outcome: &'static str, n: u64) {
        eventually(
            &format!("{} counts {n} {action} {outcome}", self.identity),
            || self.count(action, outcome) == n,
        )
        .await;
    }

    fn audit_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Graceful stop: the replica releases the Lease.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the controller stops promptly")
            .unwrap();
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn cnp(api: &FakeApiServer, job: &JobIdentity) -> Option<Value> {
    api.get(CNP, NS, &policy_name(&job.job_id))
}

fn lease_holder(api: &FakeApiServer) -> Option<String> {
    api.get(LEASE, LEASE_NS, LEASE_NAME)
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

fn policy_writes(api: &FakeApiServer) -> Vec<(Method, String)> {
    api.requests()
        .into_iter()
        .filter(|r| {
            r.path.contains("ciliumnetworkpolicies") && r.method != Method::GET && !r.is_watch()
        })
        .map(|r| (r.method, r.path))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Adoption
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn adoption_points_the_policy_at_its_spark_application() {
    let api = mk_api().await;
    let job = mk_job("app-review-1");
    let policy = api.insert(mk_policy(&job));
    let app = api.insert(mk_app("pi", &job));
    let replica = Replica::start(
        &api,
        "replica-a",
        mk_config(Duration::from_secs(60), Duration::from_secs(300)),
    );

    eventually("the policy has an owner", || {
        cnp(&api, &job).is_some_and(|c| !c["metadata"]["ownerReferences"].is_null())
    })
    .await;
    let adopted = cnp(&api, &job).unwrap();
    assert_eq!(
        adopted["metadata"]["ownerReferences"],
        json!([owner_ref_of(&app)])
    );
    assert_eq!(adopted["metadata"]["uid"], policy["metadata"]["uid"]);
    assert_eq!(adopted["specs"], policy["specs"], "the rules are untouched");

    // One merge patch by the lifecycle field manager, nothing else written.
    let writes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("ciliumnetworkpolicies") && r.method == Method::PATCH)
        .collect();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(
        writes[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        writes[0].query("fieldManager").as_deref(),
        Some("sparkward-lifecycle")
    );

    eventually("the adoption is counted", || {
        replica.count("adopt", "success") == 1
    })
    .await;
    let lines = replica.audit_lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert_eq!(line["action"], "adopt");
    assert_eq!(line["outcome"], "success");
    assert_eq!(line["namespace"], NS);
    assert_eq!(line["policy"], policy_name(&job.job_id));
    assert_eq!(line["jobId"], job.job_id);
    assert_eq!(line["owner"]["kind"], "SparkApplication");
    assert_eq!(line["owner"]["name"], "pi");
    assert_eq!(line["owner"]["uid"], app["metadata"]["uid"]);
    assert_eq!(line["holder"], "replica-a");
    assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");

    // Kubernetes garbage collection now removes the policy with its application.
    api.remove(SPARK_APP, NS, "pi");
    eventually("the policy goes with its application", || {
        cnp(&api, &job).is_none()
    })
    .await;
    replica.stop().await;
}

#[tokio::test]
async fn adoption_points_a_spark_submit_policy_at_its_driver_pod() {
    let api = mk_api().await;
    let job = mk_job("submit-review-1");
    api.insert(mk_policy(&job));
    let driver = api.insert(mk_pod("wordcount-driver", &job, "driver", None));
    api.insert(mk_pod("wordcount-exec-1", &job, "executor", Some(&driver)));
    api.insert(mk_pod("wordcount-exec-2", &job, "executor", Some(&driver)));
    api.update_status(POD, NS, "wordcount-driver", json!({"phase": "Running"}))
        .unwrap();
    let replica = Replica::start(
        &api,
        "replica-a",
        mk_config(Duration::from_secs(60), Duration::from_secs(300)),
    );

    eventually("the policy has an owner", || {
        cnp(&api, &job).is_some_and(|c| !c["metadata"]["ownerReferences"].is_null())
    })
    .await;
    assert_eq!(
        cnp(&api, &job).unwrap()["metadata"]["ownerReferences"],
        json!([owner_ref_of(&driver)])
    );
    replica.wait_for_count("adopt", "success", 1).await;
    let lines = replica.audit_lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["owner"]["kind"], "Pod");
    assert_eq!(lines[0]["owner"]["name"], "wordcount-driver");
    replica.stop().await;
}

// ---------------------------------------------------------------------------------------------
// End of a job
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn completed_and_failed_applications_lose_their_policy_after_the_grace_and_not_before() {
    let api = mk_api().await;
    let grace = Duration::from_secs(2);
    let done = mk_job("done");
    let failed = mk_job("failed");
    let failing = mk_job("failing");
    for (name, job) in [("done", &done), ("failed", &failed), ("failing", &failing)] {
        api.insert(mk_policy(job));
        api.insert(mk_app(name, job));
    }
    let replica = Replica::start(
        &api,
        "replica-a",
        mk_config(grace, Duration::from_secs(300)),
    );
    eventually("all three are adopted", || {
        replica.count("adopt", "success") == 3
    })
    .await;

    let ended_at = Instant::now();
    for (name, state) in [
        ("done", "COMPLETED"),
        ("failed", "FAILED"),
        ("failing", "FAILING"),
    ] {
        api.update_status(
            SPARK_APP,
            NS,
            name,
            json!({"applicationState": {"state": state}, "driverInfo": {}}),
        )
        .unwrap();
    }
    tokio::time::sleep(grace / 2).await;
    assert!(cnp(&api, &done).is_some(), "deleted within the grace");
    assert!(cnp(&api, &failed).is_some(), "deleted within the grace");

    eventually("both ended policies are gone", || {
        cnp(&api, &done).is_none() && cnp(&api, &failed).is_none()
    })
    .await;
    assert!(
        ended_at.elapsed() >= grace,
        "deleted after {:?}",
        ended_at.elapsed()
    );
    // FAILING may still lead to a rerun: that job keeps its policy.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cnp(&api, &failing).is_some());

    replica.wait_for_count("end", "success", 2).await;
    let ends: Vec<Value> = replica
        .audit_lines()
        .into_iter()
        .filter(|l| l["action"] == "end")
        .collect();
    assert_eq!(ends.len(), 2, "{ends:#?}");
    for line in &ends {
        assert_eq!(line["reason"], "ended");
        assert_eq!(line["outcome"], "success");
    }
    // Deletes carry the policy's uid as a precondition.
    let deletes: Vec<_> = policy_writes(&api)
        .into_iter()
        .filter(|(m, _)| *m == Method::DELETE)
        .collect();
    assert_eq!(deletes.len(), 2, "{deletes:#?}");
    replica.stop().await;
}

#[tokio::test]
async fn an_application_that_reports_an_old_end_loses_its_policy_without_a_new_grace() {
    // A new leader after a failover trusts status.terminationTime, so it does not restart the
    // end grace for jobs that ended long ago.
    let api = mk_api().await;
    let job = mk_job("ended-long-ago");
    api.insert(mk_policy(&job));
    let mut app = mk_app("old", &job);
    app["status"] = json!({
        "applicationState": {"state": "COMPLETED"}, "driverInfo": {},
        "terminationTime": "2020-01-01T00:00:00Z",
    });
    api.insert(app);
    let started = Instant::now();
    let replica = Replica::start(
        &api,
        "replica-a",
        mk_config(Duration::from_secs(30), Duration::from_secs(300)),
    );
    eventually("the policy is gone", || cnp(&api, &job).is_none()).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    replica.wait_for_count("end", "success", 1).await;
    replica.stop().await;
}

#[tokio::test]
async fn a_finished_spark_submit_driver_ends_its_policy_after_the_grace() {
    let api = mk_api().await;
    let grace = Duration::from_secs(1);
    let job = mk_job("submit-done");
    api.insert(mk_policy(&job));
    api.insert(mk_pod("etl-driver", &job, "driver", None));
    api.update_status(POD, NS, "etl-driver", json!({"phase": "Running"}))
        .unwrap();
    let replica = Replica::start(
        &api,
        "replica-a",
        mk_config(grace, Duration::from_secs(300)),
    );
    eventually("the policy is adopted", || {
        replica.count("adopt", "success") == 1
    })
    .await;

    let ended_at = Instant::now();
    api.update_status(POD, NS, "etl-driver", json!({"phase": "Succeeded"}))
        .unwrap();
    eventually("the policy is gone", || cnp(&api, &job).is_none()).await;
    assert!(
        ended_at.elapsed() >= grace,
        "deleted after {:?}",
        ended_at.elapsed()
    );
    assert!(
        api.get(POD, NS, "etl-driver").is_some(),
        "the pod itself stays"
    );
    replica.wait_for_count("end", "success", 1).await;
    replica.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Orphans
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_orphan_policy_is_reaped_after_the_orphan_grace_and_not_before() {
    let api = mk_api().await;
    let grace = Duration::from_secs(2);
    let orphan = mk_job("rejected-later");
    let created_at = Instant::now();
    api.insert(mk_policy(&orphan));
    // Policies sparkward did not make for a job are never reaped: an unmanaged one, and a
    // managed one that is not named after its job id.
    let mut unmanaged = mk_policy(&mk_job("unmanaged"));
    unmanaged["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("app.kubernetes.io/managed-by");
    api.insert(unmanaged.clone());
    let mut foreign = mk_policy(&mk_job("foreign"));
    foreign["metadata"]["name"] = json!("default-deny");
    api.insert(foreign);
    let replica = Replica::start(&api, "replica-a", mk_config(Duration::from_secs(60), grace));

    tokio::time::sleep(grace / 2).await;
    assert!(cnp(&api, &orphan).is_some(), "reaped within the grace");
    eventually("the orphan is reaped", || cnp(&api, &orphan).is_none()).await;
    assert!(created_at.elapsed() >= grace);

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        api.get(CNP, NS, unmanaged["metadata"]["name"].as_str().unwrap())
            .is_some()
    );
    assert!(api.get(CNP, NS, "default-deny").is_some());
    assert_eq!(replica.count("reap", "success"), 1);
    let lines = replica.audit_lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["action"], "reap");
    assert_eq!(lines[0]["reason"], "orphaned");
    assert_eq!(lines[0]["jobId"], orphan.job_id);
    replica.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Running jobs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_running_jobs_policy_is_never_touched() {
    let api = mk_api().await;
    // Owned policies of a running application and a running spark-submit driver, with graces
    // so short that anything the controller might do, it would do at once.
    let app_job = mk_job("running-app");
    let app = api.insert(mk_app("streaming", &app_job));
    let mut app_policy = mk_policy(&app_job);
    app_policy["metadata"]["ownerReferences"] = json!([owner_ref_of(&app)]);
    api.insert(app_policy);
    let pod_job = mk_job("running-submit");
    let driver = api.insert(mk_pod("submit-driver", &pod_job, "driver", None));
    api.update_status(POD, NS, "submit-driver", json!({"phase": "Running"}))
        .unwrap();
    let mut pod_policy = mk_policy(&pod_job);
    pod_policy["metadata"]["ownerReferences"] = json!([owner_ref_of(&driver)]);
    api.insert(pod_policy);
    let before: Vec<Value> = api.list(CNP, Some(NS));
    api.clear_requests();

    let replica = Replica::start(
        &api,
        "replica-a",
        mk_config(Duration::ZERO, Duration::from_millis(1)),
    );
    eventually("the replica leads", || replica.is_leading()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(policy_writes(&api), vec![]);
    assert_eq!(api.list(CNP, Some(NS)), before);
    assert!(replica.audit_lines().is_empty());
    replica.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Leadership
// ---------------------------------------------------------------------------------------------

/// The leadership flags of the replicas started so far.
type Flags = Arc<std::sync::Mutex<Vec<watch::Receiver<bool>>>>;

/// Sets the returned flag if two replicas ever lead at the same moment.
fn watch_for_two_leaders(replicas: Flags) -> Arc<AtomicBool> {
    let overlap = Arc::new(AtomicBool::new(false));
    let flag = overlap.clone();
    tokio::spawn(async move {
        loop {
            let leaders = replicas
                .lock()
                .unwrap()
                .iter()
                .filter(|rx| *rx.borrow() && rx.has_changed().is_ok())
                .count();
            if leaders > 1 {
                flag.store(true, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    overlap
}

#[tokio::test]
async fn two_replicas_never_both_act_and_the_survivor_takes_over() {
    let api = mk_api().await;
    let config = mk_config(Duration::from_secs(1), Duration::from_secs(1));
    let a = Replica::start(&api, "replica-a", config.clone());
    let b = Replica::start(&api, "replica-b", config.clone());
    let watched: Flags = Arc::new(std::sync::Mutex::new(vec![
        a.leading.clone(),
        b.leading.clone(),
    ]));
    let overlap = watch_for_two_leaders(watched.clone());

    eventually("one replica leads", || a.is_leading() || b.is_leading()).await;
    // Give the other one several chances to (wrongly) acquire too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(a.is_leading() != b.is_leading(), "exactly one leads");
    let (leader, follower) = if a.is_leading() { (a, b) } else { (b, a) };
    assert_eq!(
        lease_holder(&api).as_deref(),
        Some(leader.identity.as_str())
    );

    // Work appears: only the leader acts on it.
    let first = mk_job("first");
    api.insert(mk_policy(&first));
    let app = api.insert(mk_app("first", &first));
    eventually("the leader adopts", || {
        leader.count("adopt", "success") == 1
    })
    .await;
    assert_eq!(
        cnp(&api, &first).unwrap()["metadata"]["ownerReferences"],
        json!([owner_ref_of(&app)])
    );

    // The leader dies without releasing: the follower waits for the Lease to expire.
    let killed_at = Instant::now();
    leader.task.abort();
    eventually("the follower takes over", || follower.is_leading()).await;
    let took = killed_at.elapsed();
    // The Lease was last renewed at most D/3 before the kill, and is taken D after that.
    assert!(
        took >= Duration::from_millis(1300),
        "took over after {took:?}, before expiry"
    );
    assert_eq!(
        lease_holder(&api).as_deref(),
        Some(follower.identity.as_str())
    );

    // The new leader acts.
    let second = mk_job("second");
    api.insert(mk_policy(&second));
    eventually("the new leader reaps the orphan", || {
        cnp(&api, &second).is_none()
    })
    .await;
    follower.wait_for_count("reap", "success", 1).await;

    // A third replica joins; the leader stops gracefully and releases: the successor takes over
    // well before the Lease would have expired.
    let c = Replica::start(&api, "replica-c", config.clone());
    watched.lock().unwrap().push(c.leading.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!c.is_leading());
    let stopped_at = Instant::now();
    follower.stop().await;
    eventually("the third replica takes over", || c.is_leading()).await;
    assert!(
        stopped_at.elapsed() < Duration::from_secs(2),
        "took {:?}",
        stopped_at.elapsed()
    );
    let third = mk_job("third");
    api.insert(mk_policy(&third));
    eventually("the third leader reaps", || c.count("reap", "success") == 1).await;

    // Every action was taken exactly once, by whoever led at the time.
    assert_eq!(leader.count("adopt", "success"), 1);
    assert_eq!(leader.count("reap", "success"), 0);
    for r in [&leader, &c] {
        for action in ["adopt", "end", "reap"] {
            assert_eq!(r.count(action, "failure"), 0, "{} {action}", r.identity);
        }
    }
    assert_eq!(c.audit_lines().len(), 1);
    assert!(
        !overlap.load(Ordering::Relaxed),
        "two replicas led at the same time"
    );
    c.stop().await;
}

#[tokio::test]
async fn a_failed_renewal_steps_down_at_once_and_the_lease_is_taken_back() {
    let api = mk_api().await;
    let replica = Replica::start(
        &api,
        "replica-a",
        mk_config(Duration::from_secs(60), Duration::from_secs(300)),
    );
    eventually("the replica leads", || replica.is_leading()).await;
    let mut leading = replica.leading.clone();
    leading.borrow_and_update();
    api.inject(Fault::status(500).method(Method::PUT).path("leases"));
    // Steps down on the failed renewal ...
    tokio::time::timeout(Duration::from_secs(5), leading.wait_for(|l| !*l))
        .await
        .expect("steps down")
        .unwrap();
    // ... and, still the holder on record, takes the Lease back on its next try.
    tokio::time::timeout(Duration::from_secs(5), leading.wait_for(|l| *l))
        .await
        .expect("leads again")
        .unwrap();
    assert_eq!(lease_holder(&api).as_deref(), Some("replica-a"));
    replica.stop().await;
    // Released on shutdown.
    assert_eq!(lease_holder(&api), None);
}

// ---------------------------------------------------------------------------------------------
// Resilience
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_controller_survives_api_errors_and_watch_restarts_and_still_converges() {
    let api = mk_api().await;
    // The first lists of SparkApplications and pods fail, and so do the first policy deletes.
    api.inject(
        Fault::status(500)
            .method(Method::GET)
            .path("sparkapplications")
            .times(2),
    );
    api.inject(
        Fault::status(503)
            .method(Method::GET)
            .path("/pods")
            .times(2),
    );
    api.inject(
        Fault::status(500)
            .method(Method::DELETE)
            .path("ciliumnetworkpolicies")
            .times(3),
    );
    let orphan = mk_job("orphan");
    api.insert(mk_policy(&orphan));
    // The orphan grace must outlast a cache relist after a watch restart (the policy watch may
    // resume before the application watch has listed again): 3 s here, minutes in production.
    let replica = Replica::start(
        &api,
        "replica-a",
        mk_config(Duration::from_secs(1), Duration::from_secs(3)),
    );

    eventually("the orphan is reaped despite the failed deletes", || {
        cnp(&api, &orphan).is_none()
    })
    .await;
    replica.wait_for_count("reap", "failure", 3).await;
    replica.wait_for_count("reap", "success", 1).await;
    let outcomes: Vec<Value> = replica
        .audit_lines()
        .iter()
        .map(|l| l["outcome"].clone())
        .collect();
    assert_eq!(
        outcomes,
        vec![
            json!("failure"),
            json!("failure"),
            json!("failure"),
            json!("success")
        ]
    );

    // Watches end (and the event log is compacted, so resuming needs a fresh list): objects
    // created meanwhile are still seen.
    api.compact();
    api.drop_watches();
    let job = mk_job("after-restart");
    api.insert(mk_policy(&job));
    let app = api.insert(mk_app("after-restart", &job));
    eventually("the new policy is adopted", || {
        cnp(&api, &job)
            .is_some_and(|c| c["metadata"]["ownerReferences"] == json!([owner_ref_of(&app)]))
    })
    .await;

    // A failed adoption patch is retried too.
    api.drop_watches();
    api.inject(
        Fault::status(500)
            .method(Method::PATCH)
            .path("ciliumnetworkpolicies")
            .times(1),
    );
    let late = mk_job("late");
    api.insert(mk_policy(&late));
    api.insert(mk_app("late", &late));
    eventually("the late policy is adopted", || {
        cnp(&api, &late).is_some_and(|c| !c["metadata"]["ownerReferences"].is_null())
    })
    .await;
    replica.wait_for_count("adopt", "failure", 1).await;

    // And the end of a job is still noticed.
    api.update_status(
        SPARK_APP,
        NS,
        "after-restart",
        json!({"applicationState": {"state": "COMPLETED"}, "driverInfo": {}}),
    )
    .unwrap();
    eventually("the ended policy is gone", || cnp(&api, &job).is_none()).await;
    assert!(replica.is_leading());
    replica.stop().await;
}

#[tokio::test]
async fn a_policy_someone_else_deleted_first_counts_as_gone() {
    let api = mk_api().await;
    let job = mk_job("vanishing");
    api.insert(mk_policy(&job));
    // The API answers the delete with 404, as it does when another client (the garbage
    // collector, an administrator) deleted the policy between the plan and the call.
    api.inject(
        Fault::status(404)
            .method(Method::DELETE)
            .path("ciliumnetworkpolicies"),
    );
    let replica = Replica::start(
        &api,
        "replica-a",
        mk_config(Duration::from_secs(60), Duration::from_millis(200)),
    );
    eventually("the action is recorded", || {
        replica.count("reap", "gone") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(replica.count("reap", "failure"), 0);
    assert_eq!(replica.count("reap", "success"), 0);
    let lines = replica.audit_lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["outcome"], "gone");
    replica.stop().await;
}
