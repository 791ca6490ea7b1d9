//! The submitter's token through the real webhook: verified against a real HTTPS JWKS endpoint,
//! bound to the requester, turned into labels and annotations, removed from the object, and
//! never written anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sparkward::core::labels::user_label;
use support::idp::keys::{self, TestKey, jwks};
use support::idp::server::Mode;
use support::reviews::{Review, patched};
use support::scenario::{Idp, mk_spark_app};
use support::webhook::{HttpVersion, Options, Sparkward};

async fn start(idp: &Idp) -> Sparkward {
    Sparkward::start(Options {
        config: Some(idp.config("")),
        ..Options::default()
    })
    .await
}

fn denial(answer: &Value) -> String {
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    answer["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn admits_a_spark_application_with_a_valid_token_of_each_algorithm() {
    let idp = Idp::start().await;
    let s = start(&idp).await;
    let client = s.client(HttpVersion::Http1);
    for key in &idp.keys {
        let token = key.token(&Idp::claims("alice@example.com", "data:read:postgres-main"));
        let review = Review::spark_app(mk_spark_app("pi", "spark-jobs", &token))
            .user("oidc:alice@example.com");
        let request = review.build();
        let (status, answer) = client.review("/mutate", &request).await;
        assert_eq!(status, 200);
        assert_eq!(
            answer["response"]["allowed"],
            true,
            "{} {answer}",
            key.alg()
        );
        let app = patched(&request, &answer);
        let job = support::reviews::job_of(&app);
        // The validating webhook (its own uid, as the API server sends it) accepts the result.
        let (_, validated) = client
            .review("/validate", &review.next_call(app.clone(), true).build())
            .await;
        assert_eq!(validated["response"]["allowed"], true, "{validated}");
        let meta = &app["metadata"];
        assert_eq!(meta["labels"]["sparkward.io/job-id"], job);
        assert_eq!(
            meta["labels"]["sparkward.io/user"],
            user_label("alice@example.com")
        );
        assert_eq!(
            meta["annotations"]["sparkward.io/submitter"],
            "alice@example.com"
        );
        assert_eq!(
            meta["annotations"]["sparkward.io/issuer"],
            support::scenario::ISSUER
        );
        assert_eq!(
            meta["annotations"]["sparkward.io/scopes"],
            "data:read:postgres-main"
        );
        assert_eq!(
            meta["annotations"]["sparkward.io/policy"],
            format!("sparkward-{job}")
        );
        assert!(
            meta["annotations"]["sparkward.io/token-id"]
                .as_str()
                .unwrap()
                .starts_with("jti-")
        );
        assert!(
            meta["annotations"]
                .get("sparkward.io/submitter-token")
                .is_none()
        );
        for role in ["driver", "executor"] {
            assert_eq!(app["spec"][role]["labels"]["sparkward.io/job-id"], job);
        }
        // Local mode writes the job's policy as a file before answering.
        let file = s
            .dir
            .path()
            .join(format!("policies/spark-jobs/sparkward-{job}.yaml"));
        assert!(file.exists(), "{} missing", file.display());
        // The API server's audit log gets the identity through auditAnnotations.
        assert_eq!(
            answer["response"]["auditAnnotations"]["subject"],
            "alice@example.com"
        );
        assert_eq!(answer["response"]["auditAnnotations"]["job-id"], job);
    }
}

#[tokio::test]
async fn admits_a_spark_submit_driver_pod_with_a_token_as_a_new_job() {
    let idp = Idp::start().await;
    let s = start(&idp).await;
    let token = idp.token("bob", "stream:kafka-events");
    let mut pod = support::reviews::mk_pod("pi-driver", "spark-jobs");
    pod["metadata"]["annotations"] = json!({"sparkward.io/submitter-token": token});
    let review = Review::pod(pod).user("oidc:bob");
    let request = review.build();
    let (_, answer) = s
        .client(HttpVersion::Http1)
        .review("/mutate", &request)
        .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let out = patched(&request, &answer);
    support::reviews::job_of(&out);
    assert_eq!(out["metadata"]["labels"]["sparkward.io/role"], "driver");
    assert_eq!(out["spec"]["securityContext"]["runAsUser"], 185);
}

/// Every way a token can be wrong, each denied with its cause and its fix.
#[tokio::test]
async fn denies_bad_tokens_with_the_cause_and_the_fix() {
    let idp = Idp::start().await;
    let s = start(&idp).await;
    let client = s.client(HttpVersion::Http1);
    let rsa = &idp.keys[0];
    let now = support::scenario::now();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut c = Idp::claims("alice", "data:read:postgres-main");
        f(&mut c);
        c
    };
    let rsa_pub = rsa.rsa_public_encodings().remove(1);
    let tampered = {
        let good = rsa.token(&Idp::claims("alice", "data:read:postgres-main"));
        let parts: Vec<&str> = good.split('.').collect();
        let evil = keys::b64u(
            edit(&|c| c["scope"] = json!("admin"))
                .to_string()
                .as_bytes(),
        );
        format!("{}.{evil}.{}", parts[0], parts[2])
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "expired",
            rsa.token(&edit(&|c| c["exp"] = json!(now - 300))),
            "oidc:alice",
            "expired 5m",
        ),
        (
            "not yet valid",
            rsa.token(&edit(&|c| c["nbf"] = json!(now + 600))),
            "oidc:alice",
            "not valid",
        ),
        (
            "wrong issuer",
            rsa.token(&edit(&|c| c["iss"] = json!("https://evil.example"))),
            "oidc:alice",
            "issuer",
        ),
        (
            "wrong audience",
            rsa.token(&edit(&|c| c["aud"] = json!("grafana"))),
            "oidc:alice",
            "'grafana'",
        ),
        (
            "missing subject",
            rsa.token(&edit(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            })),
            "oidc:alice",
            "sub",
        ),
        ("tampered", tampered, "oidc:alice", "signature"),
        (
            "impostor key",
            TestKey::rsa("rsa-1").token(&Idp::claims("alice", "x")),
            "oidc:alice",
            "signature",
        ),
        (
            "alg none",
            keys::unsigned(
                &json!({"alg": "none", "typ": "JWT"}),
                &Idp::claims("alice", "x"),
            ) + ".",
            "oidc:alice",
            "none",
        ),
        (
            "hs256 with the public key",
            keys::hs256(
                &rsa_pub,
                &json!({"alg": "HS256", "kid": "rsa-1"}),
                &Idp::claims("alice", "x"),
            ),
            "oidc:alice",
            "HS256",
        ),
        ("garbage", "not-a-jwt".to_string(), "oidc:alice", "token"),
        (
            "someone else's token",
            idp.token("alice", "x"),
            "oidc:bob",
            "token belongs to oidc:alice, request made by oidc:bob",
        ),
        ("one mebibyte", "a".repeat(1 << 20), "oidc:alice", "limit"),
    ];
    for (what, token, requester, expect) in cases {
        let review = Review::spark_app(mk_spark_app("pi", "spark-jobs", &token)).user(requester);
        let (status, answer) = client.review("/mutate", &review.build()).await;
        assert_eq!(status, 200, "{what}");
        let message = denial(&answer);
        assert!(message.contains(expect), "{what}: {message}");
        assert!(
            !message.contains(&token[..token.len().min(40)]) || token.len() < 20,
            "{what} leaks the token: {message}"
        );
    }
    // A missing token says how to add it.
    let mut app = mk_spark_app("pi", "spark-jobs", "x");
    app["metadata"]["annotations"] = json!({});
    let (_, answer) = client
        .review("/mutate", &Review::spark_app(app).build())
        .await;
    let message = denial(&answer);
    assert!(
        message.contains("sparkward.io/submitter-token"),
        "{message}"
    );
    assert!(
        message.contains("spark.kubernetes.driver.annotation"),
        "{message}"
    );
}

#[tokio::test]
async fn admits_a_token_signed_by_a_rotated_key_once_the_jwks_serves_it() {
    let idp = Idp::start().await;
    let s = start(&idp).await;
    let client = s.client(HttpVersion::Http1);
    let submit = |token: String| {
        let client = client.clone();
        async move {
            let review =
                Review::spark_app(mk_spark_app("pi", "spark-jobs", &token)).user("oidc:alice");
            client.review("/mutate", &review.build()).await.1
        }
    };
    // sparkward loaded the key set at start. The identity provider then rotates: it publishes a
    // new key and starts signing with it. The first token naming the unknown kid makes the
    // cache re-fetch the JWKS once, and the token is admitted.
    let rotated = TestKey::ec("ec-2");
    let mut published: Vec<&TestKey> = idp.keys.iter().collect();
    published.push(&rotated);
    idp.server.serve(jwks(&published));
    let before = idp.server.requests();
    let answer = submit(rotated.token(&Idp::claims("alice", "x"))).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(idp.server.requests(), before + 1);
    // A kid the provider never published is denied, naming the kid; the re-fetch it would
    // trigger is rate-limited to one per refresh interval, so the endpoint is not hammered.
    let answer = submit(TestKey::ec("ec-9").token(&Idp::claims("alice", "x"))).await;
    assert!(denial(&answer).contains("ec-9"), "{answer}");
    assert_eq!(idp.server.requests(), before + 1);
}

#[tokio::test]
async fn fails_closed_when_the_identity_provider_was_never_reachable() {
    let idp = Idp::start().await;
    idp.server.set_mode(Mode::Down);
    let s = Sparkward::start(Options {
        config: Some(idp.config("")),
        no_wait_ready: true,
        ..Options::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, body) = s.probe("/readyz").await.unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("jwks"), "{body}");
    let token = idp.token("alice", "x");
    let (status, answer) = s
        .client(HttpVersion::Http1)
        .review(
            "/mutate",
            &Review::spark_app(mk_spark_app("pi", "spark-jobs", &token))
                .user("oidc:alice")
                .build(),
        )
        .await;
    assert_eq!(status, 200);
    assert!(denial(&answer).contains("keys"), "{answer}");
    // Once the IdP is back, the server becomes ready and admits.
    idp.server.set_mode(Mode::Up);
    s.wait_ready(Duration::from_secs(15)).await;
    let (_, answer) = s
        .client(HttpVersion::Http1)
        .review(
            "/mutate",
            &Review::spark_app(mk_spark_app("pi", "spark-jobs", &token))
                .user("oidc:alice")
                .build(),
        )
        .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

#[tokio::test]
async fn keeps_admitting_with_cached_keys_while_the_identity_provider_is_down() {
    let idp = Idp::start().await;
    let s = start(&idp).await;
    idp.server.set_mode(Mode::Down);
    let token = idp.token("alice", "x");
    let (_, answer) = s
        .client(HttpVersion::Http1)
        .review(
            "/mutate",
            &Review::spark_app(mk_spark_app("pi", "spark-jobs", &token))
                .user("oidc:alice")
                .build(),
        )
        .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}

#[tokio::test]
async fn the_token_never_appears_in_the_object_the_logs_or_the_audit_stream() {
    let idp = Idp::start().await;
    let s = start(&idp).await;
    let client = s.client(HttpVersion::Http1);
    let good = idp.token("alice", "data:read:postgres-main");
    let expired = {
        let mut c = Idp::claims("alice", "x");
        c["exp"] = json!(support::scenario::now() - 3600);
        idp.keys[1].token(&c)
    };
    let mut answers = Vec::new();
    for (token, user) in [
        (&good, "oidc:alice"),
        (&expired, "oidc:alice"),
        (&good, "oidc:mallory"),
    ] {
        let request = Review::spark_app(mk_spark_app("pi", "spark-jobs", token))
            .user(user)
            .build();
        let (_, answer) = client.review("/mutate", &request).await;
        if answer["response"]["allowed"] == true {
            answers.push(patched(&request, &answer).to_string());
        }
        answers.push(answer.to_string());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let audit = s.stdout.lock().unwrap().join("\n");
    let logs = s.stderr_text();
    assert_eq!(s.audit_lines().len(), 3, "{audit}");
    let policies = std::fs::read_dir(s.dir.path().join("policies/spark-jobs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    for token in [&good, &expired] {
        // The signature part alone identifies the token.
        let signature = token.rsplit('.').next().unwrap();
        for (what, text) in [("audit", &audit), ("logs", &logs), ("policies", &policies)] {
            assert!(!text.contains(signature), "token in {what}");
        }
        for a in &answers {
            assert!(
                !a.contains(signature),
                "token in an answer or patched object"
            );
        }
    }
}

#[tokio::test]
async fn kubectl_apply_does_not_smuggle_the_token_into_etcd() {
    let idp = Idp::start().await;
    let s = start(&idp).await;
    let token = idp.token("alice", "data:read:postgres-main");
    // Client-side `kubectl apply` keeps the whole manifest, token included, in an annotation.
    let mut app = mk_spark_app("pi", "spark-jobs", &token);
    let manifest = app.clone();
    app["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!(manifest.to_string());
    let review = Review::spark_app(app).user("oidc:alice");
    let request = review.build();
    let (_, answer) = s
        .client(HttpVersion::Http1)
        .review("/mutate", &request)
        .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let stored = patched(&request, &answer);
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !stored.to_string().contains(signature),
        "token stored: {stored}"
    );
    let last =
        stored["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap();
    assert!(
        last.contains("\"name\":\"pi\""),
        "the rest of the manifest is kept: {last}"
    );
    // A token copied into the driver's pod annotations would be stored too: denied.
    let mut app = mk_spark_app("pi", "spark-jobs", &token);
    app["spec"]["driver"]["annotations"] = json!({"sparkward.io/submitter-token": token});
    let (_, answer) = s
        .client(HttpVersion::Http1)
        .review(
            "/mutate",
            &Review::spark_app(app).user("oidc:alice").build(),
        )
        .await;
    assert!(
        denial(&answer).contains("spec.driver.annotations"),
        "{answer}"
    );
}

#[tokio::test]
async fn spark_submits_config_map_loses_the_token_line() {
    let idp = Idp::start().await;
    let s = start(&idp).await;
    let client = s.client(HttpVersion::Http1);
    let token = idp.token("alice", "x");
    let properties = format!(
        "spark.app.name=wordcount\nspark.kubernetes.driver.annotation.sparkward.io/submitter-token={token}\nspark.master=k8s://https://kubernetes.default.svc\n"
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "spark-drv-1a2b-conf-map", "namespace": "spark-jobs"},
        "data": {"spark.properties": properties, "log4j2.properties": "rootLogger.level=info\n"}});
    let review = Review::new_kind("", "v1", "ConfigMap", "configmaps", cm.clone());
    let request = review.build();
    let (_, answer) = client.review("/mutate", &request).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let stored = patched(&request, &answer);
    let props = stored["data"]["spark.properties"].as_str().unwrap();
    assert!(
        !props.contains(token.rsplit('.').next().unwrap()),
        "{props}"
    );
    assert!(
        props.contains("spark.app.name=wordcount") && props.contains("spark.master="),
        "{props}"
    );
    assert_eq!(
        stored["data"]["log4j2.properties"],
        cm["data"]["log4j2.properties"]
    );
    // The validating webhook refuses a ConfigMap that still holds the token...
    let (_, answer) = client.review("/validate", &request).await;
    assert!(
        denial(&answer).contains("data[\"spark.properties\"]"),
        "{answer}"
    );
    // ...and accepts the scrubbed one.
    let clean = review.next_call(stored, true);
    let (_, answer) = client.review("/validate", &clean.build()).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
}
