//! Network policies in enforced namespaces, end to end: sparkward running as a process behind
//! the project's own webhook configurations in the stand-in API server's admission chain, and
//! every write made through the API as the user it stands for.
//!
//! Tenants write no CiliumNetworkPolicy and no NetworkPolicy (either would add allowed traffic
//! past their job's policy); job administrators may, except sparkward's own job policies;
//! sparkward's policy apply and the garbage collector are unaffected; and a job's DNS rule
//! lists the names it may resolve instead of `*`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::Method;
use serde_json::{Value, json};
use sparkward::core::policy::cluster_dns_selectors;
use support::apiserver::{CNP, FakeApiServer, NETWORK_POLICY, User};
use support::scenario::{Idp, SCOPES_YAML, mk_spark_app};
use support::webhook::{Options, Sparkward};

const NS: &str = "spark-jobs";
const CNP_WEBHOOK: &str = "ciliumnetworkpolicies.validate.sparkward.io";
const NP_WEBHOOK: &str = "networkpolicies.validate.sparkward.io";
const CNPS: &str = "/apis/cilium.io/v2/namespaces/spark-jobs/ciliumnetworkpolicies";
const NPS: &str = "/apis/networking.k8s.io/v1/namespaces/spark-jobs/networkpolicies";
const GARBAGE_COLLECTOR: (&str, &str) = ("kube-system", "generic-garbage-collector");
/// A job id of someone else's job (bob's), as its pods are labelled.
const BOBS_JOB: &str = "sj-bbbbbbbbbbbbbbbbbbbb";

/// sparkward with the scenario identity provider, two job administrators (a user and a group)
/// and one extra DNS name, behind the stand-in's admission chain.
struct World {
    api: FakeApiServer,
    idp: Idp,
    _server: Sparkward,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let api = FakeApiServer::start().await;
    api.ensure_namespace(NS, json!({ "sparkward.io/enforce": "true" }));
    let idp = Idp::start().await;
    let config = format!(
        "{}  jobAdmins:\n    users: [\"oidc:ops-bob\"]\n    groups: [\"oidc:spark-admins\"]\n\
         policy:\n  unknownScopes: ignore\n  dnsAllow:\n    - matchName: repo.maven.apache.org\n\
         {SCOPES_YAML}",
        idp.identity_yaml()
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Sparkward::start(Options {
        config: Some(config),
        kubeconfig: Some(api.write_kubeconfig(dir.path())),
        ..Options::default()
    })
    .await;
    api.install_sparkward_webhooks(&server.base_url(), &server.certs.ca_pem);
    World {
        api,
        idp,
        _server: server,
        _dir: dir,
    }
}

fn alice() -> User {
    User::new("oidc:alice")
}

/// A job admin by user name.
fn ops_bob() -> User {
    User::new("oidc:ops-bob")
}

/// A job admin through her group.
fn carol() -> User {
    User::new("oidc:carol").group("oidc:spark-admins")
}

fn garbage_collector() -> User {
    User::service_account(GARBAGE_COLLECTOR.0, GARBAGE_COLLECTOR.1)
}

/// A CiliumNetworkPolicy that lets every pod of the namespace reach the internet on 443.
fn world_egress_cnp(name: &str) -> Value {
    json!({
        "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
        "metadata": { "name": name, "namespace": NS },
        "specs": [{
            "endpointSelector": {},
            "egress": [{ "toEntities": ["world"], "toPorts": [{ "ports": [{ "port": "443", "protocol": "TCP" }] }] }],
        }],
    })
}

/// A NetworkPolicy that opens ingress into bob's job from every pod of the namespace.
fn ingress_into_bobs_job(name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": { "name": name, "namespace": NS },
        "spec": {
            "podSelector": { "matchLabels": { "sparkward.io/job-id": BOBS_JOB } },
            "policyTypes": ["Ingress"],
            "ingress": [{ "from": [{ "podSelector": {} }] }],
        },
    })
}

/// The message of a denial by the sparkward webhook `webhook`, asserting it is one.
fn denied_by(result: Result<Value, Value>, webhook: &str) -> String {
    let status = result.expect_err("the write was admitted");
    let message = status["message"].as_str().unwrap_or_default().to_string();
    assert_eq!(status["code"], 403, "{status}");
    assert!(
        message.contains(&format!(
            "admission webhook \"{webhook}\" denied the request"
        )),
        "expected a denial by {webhook}: {status}"
    );
    message
}

/// A `Status`-or-object result from a raw request.
async fn send(
    api: &FakeApiServer,
    user: &User,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, Value> {
    let content_type = (method == Method::PATCH).then_some("application/merge-patch+json");
    let reply = api.request_as(user, method, path, content_type, body).await;
    if (200..300).contains(&reply.status) {
        Ok(reply.body)
    } else {
        Err(reply.body)
    }
}

#[tokio::test]
async fn a_tenant_cannot_open_world_egress_with_her_own_cilium_policy() {
    let w = world().await;
    let message = denied_by(
        w.api
            .create_as(&alice(), world_egress_cnp("alice-egress"))
            .await,
        CNP_WEBHOOK,
    );
    // Who, what, and where to go instead: a scope from the security team.
    for part in [
        "oidc:alice may not create CiliumNetworkPolicy alice-egress",
        "ask the security team for a scope",
        "policy.scopes",
        "token",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    assert!(w.api.get(CNP, NS, "alice-egress").is_none());
}

#[tokio::test]
async fn a_tenant_cannot_open_ingress_into_another_job_with_a_network_policy() {
    let w = world().await;
    let message = denied_by(
        w.api
            .create_as(&alice(), ingress_into_bobs_job("into-bob"))
            .await,
        NP_WEBHOOK,
    );
    assert!(
        message.contains("oidc:alice may not create NetworkPolicy into-bob"),
        "{message}"
    );
    assert!(message.contains("scope"), "{message}");
    assert!(w.api.get(NETWORK_POLICY, NS, "into-bob").is_none());
    // A dry run is refused the same way (and stores nothing either).
    let dry = w
        .api
        .request_as(
            &alice(),
            Method::POST,
            &format!("{NPS}?dryRun=All"),
            None,
            Some(&ingress_into_bobs_job("into-bob")),
        )
        .await;
    assert_eq!(dry.status, 403, "{}", dry.body);
}

#[tokio::test]
async fn tenants_cannot_change_or_delete_policies_written_by_others() {
    let w = world().await;
    // Written by a job admin, through admission.
    w.api
        .create_as(&ops_bob(), world_egress_cnp("ops-egress"))
        .await
        .expect("a job admin writes a CiliumNetworkPolicy");
    w.api
        .create_as(&ops_bob(), ingress_into_bobs_job("ops-ingress"))
        .await
        .expect("a job admin writes a NetworkPolicy");

    let widen = json!({ "metadata": { "labels": { "owner": "alice" } } });
    for (path, webhook) in [
        (format!("{CNPS}/ops-egress"), CNP_WEBHOOK),
        (format!("{NPS}/ops-ingress"), NP_WEBHOOK),
    ] {
        let edit = send(&w.api, &alice(), Method::PATCH, &path, Some(&widen)).await;
        let message = denied_by(edit, webhook);
        assert!(message.contains("oidc:alice may not change"), "{message}");
        let delete = send(&w.api, &alice(), Method::DELETE, &path, None).await;
        let message = denied_by(delete, webhook);
        assert!(message.contains("oidc:alice may not delete"), "{message}");
    }
    let cnp = w.api.get(CNP, NS, "ops-egress").expect("still there");
    assert!(cnp["metadata"]["labels"]["owner"].is_null(), "{cnp}");
    assert!(w.api.get(NETWORK_POLICY, NS, "ops-ingress").is_some());
}

#[tokio::test]
async fn job_admins_by_name_or_group_write_network_policies_but_not_job_policies() {
    let w = world().await;
    // By user name, and through a group (the group alone decides: carol's name is not listed).
    let stored = w
        .api
        .create_as(&ops_bob(), world_egress_cnp("ops-egress"))
        .await
        .expect("oidc:ops-bob is a job admin");
    assert_eq!(stored["metadata"]["name"], "ops-egress");
    w.api
        .create_as(&carol(), ingress_into_bobs_job("carol-ingress"))
        .await
        .expect("a member of oidc:spark-admins is a job admin");
    let path = format!("{NPS}/carol-ingress");
    let relabel = json!({ "metadata": { "labels": { "reviewed": "yes" } } });
    send(&w.api, &carol(), Method::PATCH, &path, Some(&relabel))
        .await
        .expect("and may change it");
    send(&w.api, &ops_bob(), Method::DELETE, &path, None)
        .await
        .expect("or delete it");
    assert!(w.api.get(NETWORK_POLICY, NS, "carol-ingress").is_none());
    // The same group name given as a user name is not a job admin.
    denied_by(
        w.api
            .create_as(&User::new("oidc:spark-admins"), world_egress_cnp("x"))
            .await,
        CNP_WEBHOOK,
    );

    // A job policy (sparkward's own) stays sparkward's: job admins neither forge, change nor
    // delete one.
    let token = w.idp.token("alice", "data:read:postgres-main");
    let app = w
        .api
        .create_as(&alice(), mk_spark_app("etl", NS, &token))
        .await
        .expect("alice's job is admitted");
    let job = app["metadata"]["labels"]["sparkward.io/job-id"]
        .as_str()
        .unwrap();
    let policy = format!("sparkward-{job}");
    let path = format!("{CNPS}/{policy}");
    for admin in [ops_bob(), carol()] {
        let message = denied_by(
            send(&w.api, &admin, Method::DELETE, &path, None).await,
            CNP_WEBHOOK,
        );
        assert!(message.contains("is managed by sparkward"), "{message}");
        denied_by(
            send(&w.api, &admin, Method::PATCH, &path, Some(&relabel)).await,
            CNP_WEBHOOK,
        );
    }
    let mut forged = world_egress_cnp("sparkward-sj-cccccccccccccccccccc");
    forged["metadata"]["labels"] = json!({ "app.kubernetes.io/managed-by": "sparkward" });
    denied_by(w.api.create_as(&ops_bob(), forged).await, CNP_WEBHOOK);
    assert!(w.api.get(CNP, NS, &policy).is_some());
}

#[tokio::test]
async fn a_jobs_policy_is_still_applied_resolves_only_its_names_and_the_garbage_collector_may_delete_it()
 {
    let w = world().await;
    let token = w
        .idp
        .token("alice", "data:read:postgres-main storage:s3-lake");
    let app = w
        .api
        .create_as(&alice(), mk_spark_app("etl", NS, &token))
        .await
        .expect("alice's job is admitted");
    let job = app["metadata"]["labels"]["sparkward.io/job-id"]
        .as_str()
        .unwrap();
    let name = format!("sparkward-{job}");
    // sparkward's own server-side apply went through (its account skips the policy webhook).
    let policy = w.api.get(CNP, NS, &name).expect("the job's policy");
    assert!(
        w.api
            .admission_calls()
            .iter()
            .all(|c| c.resource != "ciliumnetworkpolicies"),
        "sparkward's apply is not reviewed by itself"
    );

    // DNS: the cluster's names, policy.dnsAllow, then the storage scope's toFQDNs pattern;
    // the Postgres scope has no names; nothing matches every name.
    let egress = &policy["specs"][0]["egress"];
    let dns = egress[1]["toPorts"][0]["rules"]["dns"].clone();
    let mut want = serde_json::to_value(cluster_dns_selectors("cluster.local")).unwrap();
    let want_list = want.as_array_mut().unwrap();
    want_list.push(json!({ "matchName": "repo.maven.apache.org" }));
    want_list.push(json!({ "matchPattern": "*.s3.eu-west-1.amazonaws.com" }));
    assert_eq!(dns, want, "{egress}");
    assert!(
        !policy.to_string().contains(r#""matchPattern":"*""#),
        "{policy}"
    );
    assert!(
        egress
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["toFQDNs"] == json!([{ "matchPattern": "*.s3.eu-west-1.amazonaws.com" }])),
        "{egress}"
    );

    // The garbage collector (one of policy.managers) deletes it through sparkward's webhook.
    let path = format!("{CNPS}/{name}");
    send(&w.api, &garbage_collector(), Method::DELETE, &path, None)
        .await
        .expect("the garbage collector may delete a job policy");
    assert!(w.api.get(CNP, NS, &name).is_none());
    let reviewed = w
        .api
        .admission_calls()
        .into_iter()
        .find(|c| c.resource == "ciliumnetworkpolicies")
        .expect("the delete was reviewed");
    assert_eq!(reviewed.webhook, CNP_WEBHOOK);
    assert!(reviewed.allowed);
}
