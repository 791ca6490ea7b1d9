//! The fault matrix (RELIABILITY.md): the real binary in cluster mode behind its own webhook
//! configurations, SparkApplications created through the stand-in API server's admission chain
//! while the stand-in or the JWKS endpoint misbehaves. Each row checks the decision (allowed with
//! a policy, or denied with a message that says what failed) and then, after the reap grace,
//! that nothing is left half-made: no policy or RPC Secret without an admitted job, and no
//! admitted job without its policy and Secret. The lifecycle controller runs in the binary with
//! short graces (`lifecycle.orphanGrace`) and a fast tick (`--lifecycle-tick`).
//!
//! Rows already covered elsewhere (not repeated here): persistent 500 and one 503 on the policy
//! apply, and a slow apply beyond `policy.applyTimeout` (tests/policy_e2e.rs); lifecycle calls
//! failing, watch restarts and compaction under the lifecycle controller (tests/lifecycle.rs);
//! the key cache against JWKS failures (tests/identity.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use support::apiserver::{CNP, FakeApiServer, Fault, NAMESPACE, SECRET, SPARK_APP, User};
use support::idp::keys::{TestKey, jwks};
use support::idp::server::Mode;
use support::scenario::{Idp, mk_spark_app, now};
use support::webhook::{Options, Sparkward};

const NS: &str = "spark-jobs";
/// Short graces so a row's clean-up is seen within seconds; the orphan grace outlasts a whole
/// review (reviewDeadline) so an admitted job's policy is never mistaken for an orphan.
const LIFECYCLE_YAML: &str = "lifecycle:\n  endGrace: 1s\n  orphanGrace: 5s\n  lease: { name: sparkward-lifecycle, namespace: sparkward-system, duration: 2s }\nserver:\n  reviewDeadline: 4s\n";
/// How long a row may take to converge; generous, the machine is shared.
const PATIENCE: Duration = Duration::from_secs(40);

struct Env {
    api: FakeApiServer,
    idp: Idp,
    s: Sparkward,
    _dir: tempfile::TempDir,
}

/// The stand-in with `NS` enforced, sparkward behind its webhook configurations; `policy` is
/// appended to the config's `policy:` section, `jwks_refresh` replaces the JWKS refresh.
async fn env_with(idp: Idp, policy: &str, jwks_refresh: &str, wait_ready: bool) -> Env {
    let api = FakeApiServer::start().await;
    api.ensure_namespace(NS, json!({"sparkward.io/enforce": "true"}));
    api.ensure_namespace("sparkward-system", json!({}));
    let dir = tempfile::tempdir().unwrap();
    // The apply timeout must stay below the review deadline (4 s here).
    let policy = if policy.contains("applyTimeout") {
        policy.to_string()
    } else {
        format!("  applyTimeout: 3s\n{policy}")
    };
    let config = idp
        .config(&policy)
        .replace("refresh: 1h", &format!("refresh: {jwks_refresh}"))
        + LIFECYCLE_YAML;
    let s = Sparkward::start(Options {
        config: Some(config),
        kubeconfig: Some(api.write_kubeconfig(dir.path())),
        args: vec!["--lifecycle-tick".into(), "200ms".into()],
        no_wait_ready: !wait_ready,
        ..Options::default()
    })
    .await;
    api.install_sparkward_webhooks(&s.base_url(), &s.certs.ca_pem);
    Env {
        api,
        idp,
        s,
        _dir: dir,
    }
}

async fn env(policy: &str) -> Env {
    env_with(Idp::start().await, policy, "1h", true).await
}

fn alice() -> User {
    User::new("oidc:alice")
}

/// What a submission came to: the stored application, or the API server's error message.
type Decision = Result<Value, String>;

/// The jobs a list of objects belongs to, from `sparkward-<job>[-rpc]` names.
fn jobs_of(objects: &[Value], suffix: &str) -> BTreeSet<String> {
    objects
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str())
        .filter_map(|n| n.strip_prefix("sparkward-")?.strip_suffix(suffix))
        .map(str::to_string)
        .collect()
}

#[derive(Debug)]
struct Census {
    policies: BTreeSet<String>,
    secrets: BTreeSet<String>,
    admitted: BTreeSet<String>,
}

impl Census {
    fn orphans(&self) -> usize {
        self.policies.difference(&self.admitted).count()
            + self.secrets.difference(&self.admitted).count()
    }

    /// Admitted jobs that lack their policy or their RPC Secret.
    fn half_made(&self) -> usize {
        self.admitted
            .iter()
            .filter(|j| !self.policies.contains(*j) || !self.secrets.contains(*j))
            .count()
    }
}

impl Env {
    fn app(&self, name: &str, token: &str) -> Value {
        mk_spark_app(name, NS, token)
    }

    /// Creates the application as alice through the admission chain.
    async fn submit_token(&self, name: &str, token: &str) -> Decision {
        self.api
            .create_as(&alice(), self.app(name, token))
            .await
            .map_err(|status| status["message"].as_str().unwrap_or_default().to_string())
    }

    async fn submit(&self, name: &str) -> Decision {
        let token = self.idp.token("alice", "data:read:postgres-main");
        self.submit_token(name, &token).await
    }

    fn census(&self) -> Census {
        let admitted = self
            .api
            .list(SPARK_APP, Some(NS))
            .iter()
            .filter_map(|a| a["metadata"]["labels"]["sparkward.io/job-id"].as_str())
            .map(str::to_string)
            .collect();
        Census {
            policies: jobs_of(&self.api.list(CNP, Some(NS)), ""),
            secrets: jobs_of(&self.api.list(SECRET, Some(NS)), "-rpc"),
            admitted,
        }
    }

    /// The row's clean-up: no admitted job is ever without its policy and Secret, and after the
    /// orphan grace no policy or Secret is left without an admitted job.
    async fn assert_clean_after_grace(&self) {
        self.api.clear_faults();
        let census = self.census();
        assert_eq!(census.half_made(), 0, "admitted without policy: {census:?}");
        let started = Instant::now();
        loop {
            let census = self.census();
            assert_eq!(census.half_made(), 0, "admitted without policy: {census:?}");
            if census.orphans() == 0 {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "orphans left after the grace: {census:?}\n{}",
                self.s.stderr_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The requests sparkward made to `path_part` with `method`.
    fn calls(&self, method: Method, path_part: &str) -> Vec<support::apiserver::RecordedRequest> {
        self.api
            .requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.contains(path_part) && !r.is_watch())
            .collect()
    }
}

fn allowed(decision: &Decision) -> &Value {
    match decision {
        Ok(app) => app,
        Err(message) => panic!("expected the job to be admitted, got: {message}"),
    }
}

/// The denial message, which must say what failed and that nothing was admitted.
fn denied(decision: Decision) -> String {
    match decision {
        Ok(app) => panic!("expected a denial, the job was admitted: {app}"),
        Err(message) => {
            assert!(
                message.contains("denied the request"),
                "not a webhook denial: {message}"
            );
            message
        }
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{message}\n  lacks: {part}");
    }
}

// ---------------------------------------------------------------------------------------------
// The Kubernetes API
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_throttled_policy_apply_waits_the_retry_after_and_is_admitted() {
    let e = env("").await;
    e.api.inject(
        Fault::throttled(1)
            .method(Method::PATCH)
            .path("ciliumnetworkpolicies")
            .times(1),
    );
    let decision = e.submit("throttled").await;
    allowed(&decision);
    let patches = e.calls(Method::PATCH, "ciliumnetworkpolicies/sparkward-");
    assert_eq!(patches.len(), 2, "one throttled, one stored");
    assert_eq!(patches[0].status, Some(429));
    assert!(
        matches!(patches[1].status, Some(200 | 201)),
        "{:?}",
        patches[1].status
    );
    // The server asked for one second (kube-client's retry honours Retry-After; sparkward's own
    // backoff would have come back after 100 ms).
    let waited = patches[1].received.duration_since(patches[0].answered);
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
    e.assert_clean_after_grace().await;
}

#[tokio::test]
async fn a_policy_apply_throttled_past_the_apply_timeout_is_denied_and_nothing_stays() {
    let e = env("  applyTimeout: 2s\n").await;
    e.api.inject(
        Fault::throttled(1)
            .method(Method::PATCH)
            .path("ciliumnetworkpolicies")
            .times(100),
    );
    let message = denied(e.submit("throttled").await);
    assert_mentions(
        &message,
        &[
            "CiliumNetworkPolicy",
            "did not confirm it within 2s",
            "nothing was admitted",
        ],
    );
    // kube-client retries 429 itself, waiting what Retry-After asks, so the 429s do not reach
    // sparkward's message; the apply timeout bounds the whole exchange. At most one attempt per
    // Retry-After second within the 2 s.
    let patches = e.calls(Method::PATCH, "ciliumnetworkpolicies/sparkward-");
    assert!(
        (1..=3).contains(&patches.len()),
        "{} attempts",
        patches.len()
    );
    e.assert_clean_after_grace().await;
    assert!(e.api.list(CNP, Some(NS)).is_empty());
}

#[tokio::test]
async fn a_conflict_on_the_policy_apply_is_retried_and_the_job_admitted() {
    let e = env("").await;
    e.api.inject(
        Fault::status(409)
            .method(Method::PATCH)
            .path("ciliumnetworkpolicies")
            .times(2),
    );
    let app = e.submit("conflict").await;
    let app = allowed(&app);
    let job = app["metadata"]["labels"]["sparkward.io/job-id"]
        .as_str()
        .unwrap();
    assert!(e.api.get(CNP, NS, &format!("sparkward-{job}")).is_some());
    e.assert_clean_after_grace().await;
}

#[tokio::test]
async fn an_invalid_policy_answer_is_denied_at_once_and_nothing_stays() {
    let e = env("").await;
    e.api.inject(
        Fault::status(422)
            .message("CiliumNetworkPolicy.cilium.io \"x\" is invalid: specs[0]: Invalid value")
            .method(Method::PATCH)
            .path("ciliumnetworkpolicies")
            .times(100),
    );
    let message = denied(e.submit("invalid").await);
    assert_mentions(
        &message,
        &[
            "CiliumNetworkPolicy",
            "rejected it (422 Invalid",
            "specs[0]",
            "nothing was admitted",
        ],
    );
    // A refusal is not retried.
    assert_eq!(
        e.calls(Method::PATCH, "ciliumnetworkpolicies/sparkward-")
            .len(),
        1
    );
    e.assert_clean_after_grace().await;
}

#[tokio::test]
async fn a_policy_stored_but_its_answer_lost_is_applied_again_and_kept_once() {
    let e = env("").await;
    e.api.inject(
        Fault::drop_answer()
            .method(Method::PATCH)
            .path("ciliumnetworkpolicies")
            .times(1),
    );
    let app = e.submit("lost-answer").await;
    allowed(&app);
    let patches = e.calls(Method::PATCH, "ciliumnetworkpolicies/sparkward-");
    assert_eq!(patches.len(), 2);
    assert_eq!(patches[0].status, None, "the first answer was dropped");
    assert_eq!(e.api.list(CNP, Some(NS)).len(), 1);
    e.assert_clean_after_grace().await;
}

#[tokio::test]
async fn a_connection_reset_before_the_policy_is_stored_is_retried_and_the_job_admitted() {
    let e = env("").await;
    e.api.inject(
        Fault::drop_connection()
            .method(Method::PATCH)
            .path("ciliumnetworkpolicies")
            .times(2),
    );
    allowed(&e.submit("reset").await);
    assert_eq!(e.api.list(CNP, Some(NS)).len(), 1);
    e.assert_clean_after_grace().await;
}

#[tokio::test]
async fn every_policy_answer_lost_denies_the_job_and_the_stored_policy_is_reaped() {
    let e = env("").await;
    e.api.inject(
        Fault::drop_answer()
            .method(Method::PATCH)
            .path("ciliumnetworkpolicies")
            .times(100),
    );
    let message = denied(e.submit("all-lost").await);
    assert_mentions(
        &message,
        &[
            "CiliumNetworkPolicy",
            "connection to the Kubernetes API failed",
            "nothing was admitted",
        ],
    );
    // The policy was stored although sparkward never heard so: an orphan until the grace ends.
    let census = e.census();
    assert_eq!(census.policies.len(), 1, "{census:?}");
    assert!(census.secrets.is_empty(), "no Secret after a failed policy");
    e.assert_clean_after_grace().await;
}

#[tokio::test]
async fn a_failing_secret_create_denies_the_job_and_its_policy_is_reaped() {
    let e = env("  applyTimeout: 2s\n").await;
    e.api.inject(
        Fault::status(500)
            .method(Method::POST)
            .path("/secrets")
            .times(100),
    );
    let message = denied(e.submit("no-secret").await);
    assert_mentions(
        &message,
        &["RPC Secret", "-rpc", "500", "nothing was admitted"],
    );
    let census = e.census();
    assert_eq!(
        census.policies.len(),
        1,
        "the policy came first: {census:?}"
    );
    e.assert_clean_after_grace().await;
}

#[tokio::test]
async fn a_secret_stored_but_its_answer_lost_counts_as_created() {
    let e = env("").await;
    e.api.inject(
        Fault::drop_answer()
            .method(Method::POST)
            .path("/secrets")
            .times(1),
    );
    allowed(&e.submit("secret-lost").await);
    let posts = e.calls(Method::POST, "/secrets");
    assert_eq!(posts.len(), 2);
    assert_eq!(
        posts[1].status,
        Some(409),
        "the retry finds it: AlreadyExists"
    );
    assert_eq!(e.api.list(SECRET, Some(NS)).len(), 1);
    e.assert_clean_after_grace().await;
}

#[tokio::test]
async fn every_secret_answer_lost_denies_the_job_and_policy_and_secret_are_reaped() {
    let e = env("  applyTimeout: 2s\n").await;
    e.api.inject(
        Fault::drop_answer()
            .method(Method::POST)
            .path("/secrets")
            .times(100),
    );
    let message = denied(e.submit("secret-all-lost").await);
    assert_mentions(&message, &["RPC Secret", "nothing was admitted"]);
    let census = e.census();
    assert_eq!(census.policies.len(), 1, "{census:?}");
    assert_eq!(census.secrets.len(), 1, "{census:?}");
    e.assert_clean_after_grace().await;
}

#[tokio::test]
async fn a_secret_create_slower_than_the_apply_timeout_denies_the_job_and_nothing_stays() {
    let e = env("  applyTimeout: 1s\n").await;
    e.api.inject(
        Fault::delay(Duration::from_secs(3))
            .method(Method::POST)
            .path("/secrets")
            .times(100),
    );
    let message = denied(e.submit("slow-secret").await);
    assert_mentions(
        &message,
        &["RPC Secret", "within 1s", "nothing was admitted"],
    );
    // Let a write that was still being handled land, then the grace and the reaper.
    tokio::time::sleep(Duration::from_secs(3)).await;
    e.assert_clean_after_grace().await;
}

#[tokio::test]
async fn a_namespace_watch_cut_and_compacted_relists_and_sees_the_change_made_meanwhile() {
    let e = env("").await;
    allowed(&e.submit("before").await);
    // The namespace watch ends and cannot come back for a while (list and watch fail); the
    // event log is compacted, so resuming from the old resourceVersion is 410 Gone.
    e.api.inject(
        Fault::status(500)
            .method(Method::GET)
            .path("/api/v1/namespaces?")
            .times(3),
    );
    let cut = e.api.requests().len();
    e.api.compact();
    e.api.drop_watches();
    let mut ns = e.api.get(NAMESPACE, "", NS).unwrap();
    ns["metadata"]["labels"]["sparkward.io/spark-profile"] = json!("does-not-exist");
    ns["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    e.api
        .request_as(
            &User::new("admin"),
            Method::PUT,
            &format!("/api/v1/namespaces/{NS}"),
            None,
            Some(&ns),
        )
        .await;
    // After the relist the new label decides: the profile it names does not exist.
    let started = Instant::now();
    let message = loop {
        match e
            .submit(&format!("after-{}", started.elapsed().as_millis()))
            .await
        {
            Err(m) => break m,
            Ok(_) => assert!(
                started.elapsed() < PATIENCE,
                "the namespace change was never seen"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_mentions(&message, &["'does-not-exist'", "does not define"]);
    // The watch could not resume from its compacted resourceVersion: the namespaces were
    // listed again (a GET that is not a watch, answered 200, after the cut).
    let relists = e.api.requests()[cut..]
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/namespaces?") && !r.is_watch())
        .filter(|r| r.status == Some(200))
        .count();
    assert!(relists >= 1, "the namespaces were never listed again");
    e.assert_clean_after_grace().await;
}

// ---------------------------------------------------------------------------------------------
// The identity provider's JWKS endpoint
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_jwks_endpoint_down_from_the_start_denies_every_token_and_readiness_stays_off() {
    let idp = Idp::start().await;
    idp.server.set_mode(Mode::Status(500));
    let e = env_with(idp, "", "1h", false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, body) = e.s.probe("/readyz").await.unwrap();
    assert_eq!(code, 503, "{body}");
    let message = denied(e.submit("no-keys").await);
    assert_mentions(
        &message,
        &["identity provider's keys could not be loaded", "retry"],
    );
    e.assert_clean_after_grace().await;
    assert!(e.api.list(CNP, Some(NS)).is_empty());
}

/// The provider rotates to `new` while its endpoint misbehaves (`mode`): the old key keeps
/// working from the cache, the new one is denied with `expect` in the message.
async fn rotation_during(mode: Mode, expect: &[&str]) {
    let idp = Idp::start().await;
    let e = env_with(idp, "", "1s", true).await;
    allowed(&e.submit("old-key").await);
    let new = TestKey::rsa("rsa-2");
    let mut published: Vec<&TestKey> = e.idp.keys.iter().collect();
    published.push(&new);
    e.idp.server.serve(jwks(&published));
    e.idp.server.set_mode(mode);
    if matches!(mode, Mode::Up) {
        e.idp
            .server
            .serve(b"{\"keys\": [ this is not json".to_vec());
    }
    let token = new.token(&Idp::claims("alice", "data:read:postgres-main"));
    let message = denied(e.submit_token("new-key", &token).await);
    assert_mentions(&message, expect);
    allowed(&e.submit("old-key-again").await);
    e.assert_clean_after_grace().await;
}

#[tokio::test]
async fn a_rotation_while_the_jwks_endpoint_answers_500_denies_only_the_new_key() {
    rotation_during(
        Mode::Status(500),
        &[
            "'rsa-2'",
            "could not be re-fetched",
            "HTTP 500",
            "retry shortly",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_rotation_while_the_jwks_endpoint_answers_garbage_denies_only_the_new_key() {
    rotation_during(
        Mode::Up,
        &["'rsa-2'", "could not be re-fetched", "retry shortly"],
    )
    .await;
}

#[tokio::test]
async fn a_rotation_while_the_jwks_endpoint_is_slower_than_the_deadline_is_denied_in_time() {
    rotation_during(
        Mode::Slow(Duration::from_secs(20)),
        &["could not decide within 4s", "nothing was admitted"],
    )
    .await;
}

#[tokio::test]
async fn a_rotation_to_a_new_kid_is_accepted_after_a_refetch() {
    let e = env("").await;
    let new = TestKey::ec("ec-2");
    let mut published: Vec<&TestKey> = e.idp.keys.iter().collect();
    published.push(&new);
    e.idp.server.serve(jwks(&published));
    let before = e.idp.server.requests();
    let token = new.token(&Idp::claims("alice", "data:read:postgres-main"));
    allowed(&e.submit_token("rotated", &token).await);
    assert_eq!(e.idp.server.requests(), before + 1, "one refetch");
    e.assert_clean_after_grace().await;
}

#[tokio::test]
async fn clock_skew_within_the_leeway_is_accepted_and_beyond_it_denied() {
    let e = env("").await;
    let key = &e.idp.keys[0];
    let skewed = |edit: &dyn Fn(&mut Value, u64)| {
        let mut claims = Idp::claims("alice", "data:read:postgres-main");
        edit(&mut claims, now());
        key.token(&claims)
    };
    // The config's leeway is 30 s.
    let expired_20s = skewed(&|c, t| c["exp"] = json!(t - 20));
    let ahead_20s = skewed(&|c, t| {
        c["iat"] = json!(t + 20);
        c["nbf"] = json!(t + 20);
    });
    let expired_90s = skewed(&|c, t| c["exp"] = json!(t - 90));
    let not_before_90s = skewed(&|c, t| c["nbf"] = json!(t + 90));
    let issued_ahead_90s = skewed(&|c, t| c["iat"] = json!(t + 90));
    allowed(&e.submit_token("expired-20s", &expired_20s).await);
    allowed(&e.submit_token("ahead-20s", &ahead_20s).await);
    let m = denied(e.submit_token("expired-90s", &expired_90s).await);
    assert_mentions(&m, &["token expired", "get a fresh token"]);
    let m = denied(e.submit_token("nbf-90s", &not_before_90s).await);
    assert_mentions(&m, &["not valid for another", "'nbf'"]);
    let m = denied(e.submit_token("iat-90s", &issued_ahead_90s).await);
    assert_mentions(&m, &["in the future", "'iat'", "a clock is wrong"]);
    e.assert_clean_after_grace().await;
    assert_eq!(e.census().admitted.len(), 2);
}
