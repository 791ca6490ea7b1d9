//! Resilience of the real binary (RELIABILITY.md): two replicas when the lifecycle leader is
//! killed, the serving certificate rotated under the benchmark's concurrency, and the resources
//! a process holds returning to their baseline after a burst of load. No assertion is on speed:
//! the figures of the long runs (`scripts/reliability-load`) go into RELIABILITY.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use support::apiserver::{CNP, FakeApiServer, LEASE, SECRET};
use support::reviews::{Review, answered_job, patched};
use support::scenario::{Idp, mk_spark_app};
use support::webhook::{HttpVersion, Options, Sparkward, WebhookClient, client_tls};

const NS: &str = "spark-jobs";
const LEASE_NS: &str = "sparkward-system";
const LEASE_NAME: &str = "sparkward-lifecycle";
/// The benchmark's concurrency (BENCHMARKS.md: oha, HTTP/1.1 keep-alive, c=16).
const CONCURRENCY: usize = 16;
/// Generous: the machine is shared with other builds.
const PATIENCE: Duration = Duration::from_secs(60);

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Two replicas
// ---------------------------------------------------------------------------------------------

const LEASE_SECS: u64 = 3;

fn lease(api: &FakeApiServer) -> Value {
    api.get(LEASE, LEASE_NS, LEASE_NAME)
        .map(|l| l["spec"].clone())
        .unwrap_or(Value::Null)
}

fn holder(api: &FakeApiServer) -> String {
    lease(api)["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn micro_time(v: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        v.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

async fn replica(idp: &Idp, api: &FakeApiServer, dir: &std::path::Path, name: &str) -> Sparkward {
    let config = idp.config("")
        + &format!(
            "lifecycle:\n  endGrace: 1s\n  orphanGrace: 1m\n  lease: {{ name: {LEASE_NAME}, namespace: {LEASE_NS}, duration: {LEASE_SECS}s }}\n"
        );
    Sparkward::start(Options {
        config: Some(config),
        kubeconfig: Some(api.write_kubeconfig(dir)),
        args: vec!["--lifecycle-tick".into(), "200ms".into()],
        env: vec![("POD_NAME".into(), name.into())],
        ..Options::default()
    })
    .await
}

/// Admits a SparkApplication through `via` and stores it (as the API server would) with
/// `state`; returns its job id.
async fn admit(api: &FakeApiServer, idp: &Idp, via: &WebhookClient, name: &str) -> String {
    let token = idp.token("alice", "data:read:postgres-main");
    let review = Review::spark_app(mk_spark_app(name, NS, &token))
        .user("oidc:alice")
        .build();
    let (status, answer) = via.review("/mutate", &review).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let job = answered_job(&answer);
    let mut app = patched(&review, &answer);
    app["status"] = json!({"applicationState": {"state": "RUNNING"}, "driverInfo": {}});
    api.insert(app);
    job
}

fn complete(api: &FakeApiServer, name: &str) {
    api.update_status(
        support::apiserver::SPARK_APP,
        NS,
        name,
        json!({"applicationState": {"state": "COMPLETED"}, "driverInfo": {}}),
    )
    .unwrap();
}

/// The DELETE requests per object path (policy or Secret of a job), with their answers.
fn deletes(api: &FakeApiServer) -> BTreeMap<String, Vec<Option<u16>>> {
    let mut out: BTreeMap<String, Vec<Option<u16>>> = BTreeMap::new();
    for r in api.requests() {
        if r.method == Method::DELETE {
            let path = r.path.split('?').next().unwrap_or_default().to_string();
            out.entry(path).or_default().push(r.status);
        }
    }
    out
}

/// Reviews sent in a loop to one replica: (answered, failed).
struct Flow {
    answered: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

fn review_flow(client: WebhookClient, idp_token: String, stop: Arc<AtomicBool>) -> Flow {
    let answered = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (a, f) = (answered.clone(), failed.clone());
    let task = tokio::spawn(async move {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            // A dry run: the whole pipeline, no side effects.
            let review = Review::spark_app(mk_spark_app(&format!("probe-{n}"), NS, &idp_token))
                .user("oidc:alice")
                .dry_run()
                .build();
            let body = serde_json::to_vec(&review).unwrap();
            match client
                .send(Method::POST, "/mutate", Some("application/json"), body)
                .await
            {
                Ok((200, _, body)) => {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(v["response"]["allowed"], true, "{v}");
                    a.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    f.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    Flow {
        answered,
        failed,
        task,
    }
}

#[tokio::test]
async fn killing_the_lifecycle_leader_hands_over_the_lease_and_every_job_is_cleaned_once() {
    let api = FakeApiServer::start().await;
    api.ensure_namespace(NS, json!({"sparkward.io/enforce": "true"}));
    api.ensure_namespace(LEASE_NS, json!({}));
    let idp = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = replica(&idp, &api, dir.path(), "replica-a").await;
    eventually("replica-a holds the lease", || {
        holder(&api).starts_with("replica-a")
    })
    .await;
    let b = replica(&idp, &api, dir.path(), "replica-b").await;
    let (ca, cb) = (a.client(HttpVersion::Http1), b.client(HttpVersion::Http1));

    // Reviews flow to both replicas throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let token = idp.token("alice", "data:read:postgres-main");
    let flow_a = review_flow(ca.clone(), token.clone(), stop.clone());
    let flow_b = review_flow(cb.clone(), token.clone(), stop.clone());

    // Eight jobs, admitted half by each replica; the first four end and are cleaned by A.
    let mut jobs = Vec::new();
    for i in 0..8 {
        let via = if i % 2 == 0 { &ca } else { &cb };
        jobs.push(admit(&api, &idp, via, &format!("job-{i}")).await);
    }
    for i in 0..4 {
        complete(&api, &format!("job-{i}"));
    }
    let gone = |api: &FakeApiServer, job: &str| {
        api.get(CNP, NS, &format!("sparkward-{job}")).is_none()
            && api
                .get(SECRET, NS, &format!("sparkward-{job}-rpc"))
                .is_none()
    };
    eventually("replica-a cleaned the first four jobs", || {
        jobs[..4].iter().all(|j| gone(&api, j))
    })
    .await;
    // The other four end; kill the leader as soon as it has started on them.
    for i in 4..8 {
        complete(&api, &format!("job-{i}"));
    }
    eventually("replica-a starts on the last four", || {
        jobs[4..].iter().any(|j| {
            api.get(SECRET, NS, &format!("sparkward-{j}-rpc")).is_none()
                || api.get(CNP, NS, &format!("sparkward-{j}")).is_none()
        })
    })
    .await;
    let before = lease(&api);
    let a_identity = before["holderIdentity"].as_str().unwrap().to_string();
    assert!(a_identity.starts_with("replica-a"), "{before}");
    a.child.kill().unwrap();
    let _ = a.child.wait();
    let killed_at = Instant::now();
    let a_answered_before_kill = flow_a.answered.load(Ordering::Relaxed);
    // A renewal already on its way may still land; read the record A left once it is dead.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last_by_a = lease(&api);
    assert!(
        last_by_a["holderIdentity"]
            .as_str()
            .unwrap()
            .starts_with("replica-a"),
        "nobody may take a lease before it expires: {last_by_a}"
    );

    eventually("replica-b takes the lease", || {
        holder(&api).starts_with("replica-b")
    })
    .await;
    let took = killed_at.elapsed();
    let after = lease(&api);
    eventually("every job is cleaned", || {
        jobs.iter().all(|j| gone(&api, j))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    flow_a.task.await.unwrap();
    flow_b.task.await.unwrap();

    // The Lease's own record: one transition, acquired no earlier than a whole lease duration
    // after A's last renewal (A cannot still be acting), and within the duration plus two of
    // B's polls (it must see the record unchanged for a duration, polling every D/5) and slack
    // for a loaded machine.
    assert_eq!(
        after["leaseTransitions"].as_i64().unwrap(),
        last_by_a["leaseTransitions"].as_i64().unwrap() + 1,
        "{last_by_a} -> {after}"
    );
    let gap = micro_time(&after["acquireTime"]) - micro_time(&last_by_a["renewTime"]);
    let duration = time::Duration::seconds(LEASE_SECS as i64);
    assert!(gap >= duration, "taken {gap} after the last renewal");
    let poll = duration / 5;
    assert!(
        gap <= duration + poll * 2 + time::Duration::seconds(2),
        "taken {gap} after the last renewal"
    );
    eprintln!("lease handed over {gap} after A's last renewal ({took:?} after the kill)");

    // Every policy and Secret was deleted once. A Secret is deleted before its policy; if A
    // died between the two, B deletes the Secret again and gets 404, which it counts as done
    // (sparkward never reads Secrets, and the name is unique to the job).
    let log = deletes(&api);
    let mut second_deletes = 0;
    for job in &jobs {
        let policy =
            format!("/apis/cilium.io/v2/namespaces/{NS}/ciliumnetworkpolicies/sparkward-{job}");
        let secret = format!("/api/v1/namespaces/{NS}/secrets/sparkward-{job}-rpc");
        assert_eq!(
            log.get(&policy),
            Some(&vec![Some(200)]),
            "{policy}: {log:#?}"
        );
        match log.get(&secret).map(Vec::as_slice) {
            Some([Some(200)]) => {}
            Some([Some(200), Some(404)]) => second_deletes += 1,
            other => panic!("{secret}: {other:?}"),
        }
    }
    assert!(
        second_deletes <= 1,
        "only the job A was working on: {log:#?}"
    );
    eprintln!("secret deletes answered 404 after the hand-over: {second_deletes}");

    // Both answered before the kill; B answered every review sent to it.
    assert!(a_answered_before_kill > 0);
    assert!(flow_b.answered.load(Ordering::Relaxed) > 0);
    assert_eq!(flow_b.failed.load(Ordering::Relaxed), 0, "B missed reviews");
    let (status, answer) = cb
        .review(
            "/mutate",
            &Review::spark_app(mk_spark_app("last", NS, &token))
                .user("oidc:alice")
                .dry_run()
                .build(),
        )
        .await;
    assert_eq!(
        (status, &answer["response"]["allowed"]),
        (200, &json!(true))
    );
    drop(b);
}

// ---------------------------------------------------------------------------------------------
// Certificate rotation under load
// ---------------------------------------------------------------------------------------------

/// A review every replica allows without an identity provider (see tests/server.rs).
fn cheap_review() -> Vec<u8> {
    serde_json::to_vec(
        &Review::cnp(json!({
            "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": "team-policy", "namespace": NS},
            "specs": [{"endpointSelector": {}}]
        }))
        .user("system:serviceaccount:kube-system:namespace-controller")
        .build(),
    )
    .unwrap()
}

/// `CONCURRENCY` workers on one keep-alive pool, as oha -c 16 does: (ok, failed).
fn load(
    client: WebhookClient,
    stop: Arc<AtomicBool>,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let body = cheap_review();
    let tasks = (0..CONCURRENCY)
        .map(|_| {
            let (client, stop, ok, failed, body) = (
                client.clone(),
                stop.clone(),
                ok.clone(),
                failed.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client
                        .send(
                            Method::POST,
                            "/validate",
                            Some("application/json"),
                            body.clone(),
                        )
                        .await
                    {
                        Ok((200, _, _)) => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("failed request: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    (ok, failed, tasks)
}

/// The certificate a fresh handshake is served (DER).
async fn served(s: &Sparkward, ca_bundle: &str) -> Vec<u8> {
    let mut cfg = client_tls(ca_bundle, None);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(s.webhook).await.unwrap();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    conn.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

fn reloads(metrics: &str, outcome: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "sparkward_tls_reloads_total{{outcome=\"{outcome}\"}} "
            ))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes a file the way a Secret volume update does not: in place, so a reader may see it
/// half-written; the reload must cope with either.
fn write(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Builds the (certificate, key) texts of a broken pair for rotation `i`.
type MakePair<'a> = Box<dyn Fn(usize) -> (String, String) + 'a>;

#[tokio::test]
async fn the_certificate_rotated_under_load_fails_no_request_and_a_broken_pair_is_refused() {
    let s = Sparkward::start(Options::default()).await;
    // Three new pairs, each from its own CA; clients trust all of them from the start (a CA
    // bundle is updated before the leaf, as cert-manager's CA injection does).
    let names = ["127.0.0.1".to_string(), "localhost".to_string()];
    let pairs: Vec<_> = (0..3)
        .map(|_| sparkward::certs::generate(&names, 2).unwrap())
        .collect();
    let bundle: String = std::iter::once(s.certs.ca_pem.clone())
        .chain(pairs.iter().map(|p| p.ca_pem.clone()))
        .collect();
    let client = WebhookClient::new(&bundle, None, HttpVersion::Http1, s.base_url());
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, tasks) = load(client, stop.clone());

    let mut good = der_of(&std::fs::read_to_string(&s.certs.cert).unwrap());
    assert_eq!(served(&s, &bundle).await, good);
    let metrics = || async { s.probe("/metrics").await.unwrap().1 };
    let broken: [(&str, MakePair<'_>); 3] = [
        (
            "a key that does not fit the certificate",
            Box::new(|i: usize| {
                (
                    pairs[i].cert_pem.clone(),
                    pairs[(i + 1) % 3].key_pem.clone(),
                )
            }),
        ),
        (
            "garbage",
            Box::new(|_| {
                (
                    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
                        .into(),
                    "garbage".into(),
                )
            }),
        ),
        (
            "a half-written certificate",
            Box::new(|i: usize| {
                let c = &pairs[i].cert_pem;
                (c[..c.len() / 2].to_string(), pairs[i].key_pem.clone())
            }),
        ),
    ];
    for (i, pair) in pairs.iter().enumerate() {
        // A broken pair first: refused, and the last good one keeps being served.
        let (what, make) = &broken[i];
        let failures = reloads(&metrics().await, "failure");
        let (cert, key) = make(i);
        write(&s.certs.key, &key);
        write(&s.certs.cert, &cert);
        let started = Instant::now();
        while reloads(&metrics().await, "failure") == failures {
            assert!(started.elapsed() < PATIENCE, "{what} was never looked at");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(served(&s, &bundle).await, good, "{what} must not be served");
        // Then the good pair: new handshakes get it.
        write(&s.certs.key, &pair.key_pem);
        write(&s.certs.cert, &pair.cert_pem);
        good = der_of(&pair.cert_pem);
        let started = Instant::now();
        while served(&s, &bundle).await != good {
            assert!(started.elapsed() < PATIENCE, "rotation {i} never served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 0);
    assert!(s.stderr_text().contains("keeping the previous one"));
    eprintln!(
        "{} requests at c={CONCURRENCY} across 3 rotations and 3 refused pairs, 0 failed",
        ok.load(Ordering::Relaxed)
    );
}

// ---------------------------------------------------------------------------------------------
// Resources return to their baseline
// ---------------------------------------------------------------------------------------------

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn gauge(metrics: &str, name: &str) -> i64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

#[tokio::test]
async fn after_a_burst_of_load_connections_fds_and_tasks_return_to_their_baseline() {
    let s = Sparkward::start(Options::default()).await;
    let pid = s.child.id();
    // The idle baseline, as the highest of a few samples: the file-reload loops (certificate,
    // config, stamp keys) read their files through short-lived blocking tasks, which the task
    // gauge counts while they run. A leak grows with the 48 connections below, not by one.
    let (mut conns0, mut tasks0, mut fds0) = (0, 0, 0);
    for _ in 0..10 {
        let metrics = s.probe("/metrics").await.unwrap().1;
        conns0 = conns0.max(gauge(&metrics, "sparkward_connections_open"));
        tasks0 = tasks0.max(gauge(&metrics, "sparkward_runtime_tasks"));
        fds0 = fds0.max(open_fds(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(conns0, 0);
    assert!(tasks0 > 0);

    // Several rounds, each on a fresh keep-alive pool, so connections come and go.
    let mut total = 0;
    for _ in 0..3 {
        let client = WebhookClient::new(&s.certs.ca_pem, None, HttpVersion::Http1, s.base_url());
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed, tasks) = load(client, stop.clone());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let during = s.probe("/metrics").await.unwrap().1;
        assert!(gauge(&during, "sparkward_connections_open") > 0, "{during}");
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(failed.load(Ordering::Relaxed), 0);
        total += ok.load(Ordering::Relaxed);
    }
    // The pools are dropped: the server must see every connection close and free it.
    let started = Instant::now();
    loop {
        let metrics = s.probe("/metrics").await.unwrap().1;
        let (conns, tasks, fds) = (
            gauge(&metrics, "sparkward_connections_open"),
            gauge(&metrics, "sparkward_runtime_tasks"),
            open_fds(pid),
        );
        if conns == 0 && tasks <= tasks0 && fds <= fds0 {
            eprintln!("{total} requests; back to {conns} connections, {tasks} tasks, {fds} fds");
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "not back to the baseline: connections {conns} (was {conns0}), tasks {tasks} \
             (was {tasks0}), fds {fds} (was {fds0})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
