//! The webhook server over real TLS, driven the way kube-apiserver drives it: HTTP/1.1 keep-alive
//! on many connections (and HTTP/2), AdmissionReview bodies, and the failure modes around them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::reviews::Review;
use support::webhook::{HttpVersion, Options, Sparkward, WebhookClient, client_tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A review the pipeline decides without any identity provider and allows: a
/// CiliumNetworkPolicy not managed by sparkward, written by one of the default
/// `policy.managers` (the namespace controller), at the validating webhook.
fn unmanaged_cnp_review() -> Review {
    Review::cnp(json!({
        "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "team-policy", "namespace": "spark-jobs"},
        "specs": [{"endpointSelector": {}}]
    }))
    .user("system:serviceaccount:kube-system:namespace-controller")
}

async fn raw_tls(s: &Sparkward) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut cfg = client_tls(&s.certs.ca_pem, None);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(s.webhook).await.unwrap();
    connector
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

async fn read_response(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    if len.is_some_and(|n| body.len() >= n) {
                        break;
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn valid_review_gets_an_answer_with_the_same_uid() {
    let s = Sparkward::start(Options::default()).await;
    let client = s.client(HttpVersion::Http1);
    let review = unmanaged_cnp_review().uid("4b3f6c2e-0000-4000-8000-000000000001");
    let (status, answer) = client.review("/validate", &review.build()).await;
    assert_eq!(status, 200);
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["uid"],
        "4b3f6c2e-0000-4000-8000-000000000001"
    );
    assert_eq!(answer["response"]["allowed"], true);
}

#[tokio::test]
async fn bad_bodies_get_clear_client_errors() {
    let s = Sparkward::start(Options::default()).await;
    let client = s.client(HttpVersion::Http1);
    let post = |body: &'static [u8]| {
        let client = client.clone();
        async move {
            client
                .send(
                    http::Method::POST,
                    "/mutate",
                    Some("application/json"),
                    body.to_vec(),
                )
                .await
                .unwrap()
        }
    };
    // Malformed JSON, a JSON document that is not a review, an empty body: no uid, 400.
    for body in [
        &b"{\"apiVersion\": "[..],
        b"{\"hello\": \"world\"}",
        b"",
        b"[1,2,3]",
    ] {
        let (status, _, text) = post(body).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
        let v: Value = serde_json::from_slice(&text).unwrap();
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    // A review whose request can be identified but not decoded: a denial for that uid.
    let (status, _, text) = post(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-7","operation":"FLY"}}"#,
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(v["response"]["uid"], "u-7");
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(v["response"]["status"]["code"], 400);
}

#[tokio::test]
async fn oversized_body_is_rejected_with_413() {
    let s = Sparkward::start(Options {
        config: Some("server:\n  maxBodyBytes: 65536\n".into()),
        ..Options::default()
    })
    .await;
    // kube-apiserver always sends Content-Length: an oversized one is refused before the body
    // is read (the client learns it without uploading megabytes).
    let mut conn = raw_tls(&s).await;
    conn.write_all(
        b"POST /validate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 70000\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = read_response(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("65536"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    // A body just under the limit is read and decided.
    let client = s.client(HttpVersion::Http1);
    let mut review = unmanaged_cnp_review().build();
    review["request"]["object"]["metadata"]["annotations"] = json!({"big": "x".repeat(60_000)});
    let (status, _) = client.review("/validate", &review).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn wrong_path_method_and_content_type_get_the_right_4xx() {
    let s = Sparkward::start(Options::default()).await;
    let client = s.client(HttpVersion::Http1);
    let body = serde_json::to_vec(&unmanaged_cnp_review().build()).unwrap();
    let (status, _, _) = client
        .send(
            http::Method::POST,
            "/nope",
            Some("application/json"),
            body.clone(),
        )
        .await
        .unwrap();
    assert_eq!(status, 404);
    let (status, headers, _) = client
        .send(http::Method::GET, "/mutate", None, Vec::new())
        .await
        .unwrap();
    assert_eq!(status, 405);
    assert_eq!(headers.get("allow").unwrap(), "POST");
    let (status, _, _) = client
        .send(
            http::Method::POST,
            "/validate",
            Some("text/plain"),
            body.clone(),
        )
        .await
        .unwrap();
    assert_eq!(status, 415);
    let (status, _, _) = client
        .send(
            http::Method::POST,
            "/validate",
            Some("application/json; charset=utf-8"),
            body,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn slow_client_is_cut_off_while_others_are_served() {
    let s = Sparkward::start(Options {
        config: Some("server:\n  readTimeout: 1s\n".into()),
        ..Options::default()
    })
    .await;
    // Headers promise a body that never comes.
    let mut slow = raw_tls(&s).await;
    slow.write_all(
        b"POST /validate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"apiVersion\"",
    )
    .await
    .unwrap();
    // Meanwhile a normal client is served promptly.
    let client = s.client(HttpVersion::Http1);
    let started = std::time::Instant::now();
    let (status, _) = client
        .review("/validate", &unmanaged_cnp_review().build())
        .await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_millis(900));
    let answer = read_response(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A client that never finishes its headers loses the connection.
    let mut stalled = raw_tls(&s).await;
    stalled
        .write_all(b"POST /validate HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf)).await;
    match read {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(_) => panic!("stalled connection was not closed"),
    }
}

#[tokio::test]
async fn many_keep_alive_connections_and_http2_are_served() {
    let s = Sparkward::start(Options::default()).await;
    let mut tasks = Vec::new();
    for c in 0..16 {
        let client = WebhookClient::new(
            &s.certs.ca_pem,
            None,
            if c % 4 == 0 {
                HttpVersion::Http2
            } else {
                HttpVersion::Http1
            },
            s.base_url(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let review = unmanaged_cnp_review().uid(&format!("uid-{c}-{i}"));
                let (status, answer) = client.review("/validate", &review.build()).await;
                assert_eq!(status, 200);
                assert_eq!(answer["response"]["uid"], format!("uid-{c}-{i}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Keep-alive: 16 clients, 400 requests, a handful of connections.
    let (_, metrics) = s.probe("/metrics").await.unwrap();
    assert!(metrics.contains("sparkward_reviews_total{"), "{metrics}");
}

fn served_cert_der(conn: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    conn.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn pem_der(path: &std::path::Path) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn certificate_rotation_while_requests_flow_fails_no_request() {
    let s = Sparkward::start(Options::default()).await;
    let old_der = pem_der(&s.certs.cert);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    // Trust both the old CA and any new one written later: collect CAs in a shared list.
    let cas = Arc::new(std::sync::Mutex::new(vec![s.certs.ca_pem.clone()]));
    let base = s.base_url();
    let mut flows = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, cas, base) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            cas.clone(),
            base.clone(),
        );
        flows.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // A new client each time forces a new handshake.
                let ca = cas.lock().unwrap().join("");
                let client = WebhookClient::new(&ca, None, HttpVersion::Http1, base.clone());
                let (status, _) = client
                    .review("/validate", &unmanaged_cnp_review().build())
                    .await;
                if status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The clients learn the new CA before the server can serve the new certificate, as with
    // a CA bundle that cert-manager updates ahead of the leaf.
    let certs = sparkward::certs::generate(&["127.0.0.1".into(), "localhost".into()], 2).unwrap();
    cas.lock().unwrap().push(certs.ca_pem.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(&s.certs.key, &certs.key_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&s.certs.cert, &certs.cert_pem).unwrap();
    // New handshakes get the new certificate once the pair is complete.
    let new_der = pem_der(&s.certs.cert);
    assert_ne!(old_der, new_der);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut cfg = client_tls(&cas.lock().unwrap().join(""), None);
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(s.webhook).await.unwrap();
        let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect("127.0.0.1".try_into().unwrap(), tcp)
            .await
            .unwrap();
        if served_cert_der(&conn) == new_der {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for f in flows {
        f.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(
        ok.load(Ordering::Relaxed) > 10,
        "only {} requests",
        ok.load(Ordering::Relaxed)
    );
    let (_, metrics) = s.probe("/metrics").await.unwrap();
    assert!(
        !metrics.contains("sparkward_tls_reloads_total{outcome=\"success\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn broken_rotated_certificate_is_rejected_and_the_old_one_kept() {
    let s = Sparkward::start(Options::default()).await;
    let old_der = pem_der(&s.certs.cert);
    std::fs::write(
        &s.certs.cert,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = s.probe("/metrics").await.unwrap();
        if metrics.contains("sparkward_tls_reloads_total{outcome=\"failure\"} 1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "broken certificate not noticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let conn = raw_tls(&s).await;
    assert_eq!(served_cert_der(&conn), old_der);
    let (status, _) = s
        .client(HttpVersion::Http1)
        .review("/validate", &unmanaged_cnp_review().build())
        .await;
    assert_eq!(status, 200);
    assert!(s.stderr_text().contains("keeping the previous one"));
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let client_pki = support::webhook::TestCerts::generate(dir.path());
    let s = Sparkward::start(Options {
        args: vec!["--client-ca".into(), client_pki.ca.display().to_string()],
        ..Options::default()
    })
    .await;
    let anonymous = s.client(HttpVersion::Http1);
    let err = anonymous
        .send(
            http::Method::POST,
            "/validate",
            Some("application/json"),
            b"{}".to_vec(),
        )
        .await;
    assert!(
        err.is_err(),
        "a client without a certificate was served: {err:?}"
    );

    let cert = std::fs::read_to_string(&client_pki.cert).unwrap();
    let key = std::fs::read_to_string(&client_pki.key).unwrap();
    let authenticated = WebhookClient::new(
        &s.certs.ca_pem,
        Some((&cert, &key)),
        HttpVersion::Http1,
        s.base_url(),
    );
    let (status, _) = authenticated
        .review("/validate", &unmanaged_cnp_review().build())
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_reviews_then_exits() {
    let mut s = Sparkward::start(Options::default()).await;
    let review = serde_json::to_vec(&unmanaged_cnp_review().uid("in-flight-1").build()).unwrap();
    let (head, tail) = review.split_at(review.len() / 2);
    let mut conn = raw_tls(&s).await;
    conn.write_all(
        format!(
            "POST /validate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            review.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    conn.write_all(head).await.unwrap();
    conn.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    s.sigterm();
    // Readiness turns false while the drain runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok((503, body)) = s.probe("/readyz").await {
            assert!(body.contains("shutting down"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readiness never turned false"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // New connections are refused once the listener is closed.
    assert!(tokio::net::TcpStream::connect(s.webhook).await.is_err());

    conn.write_all(tail).await.unwrap();
    let answer = read_response(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"uid\":\"in-flight-1\""), "{answer}");
    assert_eq!(s.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test]
async fn without_any_kubernetes_configuration_it_starts_in_local_mode_with_dev_certificates() {
    // No --local, no kubeconfig, not in a pod: local mode is chosen, certificates generated.
    let s = Sparkward::start(Options {
        dev_certs: true,
        ..Options::default()
    })
    .await;
    assert!(
        s.stderr_text().contains("local mode"),
        "{}",
        s.stderr_text()
    );
    let (_, ready) = s.probe("/readyz").await.unwrap();
    assert!(ready.contains("mode: local"), "{ready}");
    // The generated CA verifies the server, over HTTP/2 as in the README's curl example.
    let client = s.client(HttpVersion::Http2);
    let (status, answer) = client
        .review("/validate", &unmanaged_cnp_review().build())
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true);
}

#[tokio::test]
async fn a_review_that_outlives_the_deadline_is_denied_with_its_uid() {
    use support::apiserver::{FakeApiServer, Fault};
    // Cluster mode: a driver pod names a SparkApplication the caches do not hold, so sparkward
    // reads it from the API server, which is slower than the review deadline.
    let api = FakeApiServer::start().await;
    api.ensure_namespace("spark-jobs", json!({}));
    let dir = tempfile::tempdir().unwrap();
    let s = Sparkward::start(Options {
        config: Some(format!(
            "{}server:\n  reviewDeadline: 1s\npolicy:\n  applyTimeout: 500ms\n",
            "identity:\n  issuer: https://idp\n  audiences: [a]\n  jwks: { file: /nonexistent }\n  trustedCreators:\n    sparkOperator: [op]\n"
        )),
        kubeconfig: Some(api.write_kubeconfig(dir.path())),
        no_wait_ready: true,
        ..Options::default()
    })
    .await;
    // Readiness waits for the JWKS (a file that does not exist); the caches are what matter.
    tokio::time::sleep(Duration::from_millis(800)).await;
    api.inject(
        Fault::delay(Duration::from_secs(5))
            .method(http::Method::GET)
            .path("sparkapplications/pi")
            .times(5),
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pi-driver", "namespace": "spark-jobs",
            "labels": {"spark-role": "driver", "sparkoperator.k8s.io/app-name": "pi"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}});
    let review = Review::pod(pod).user("op").uid("deadline-1");
    let started = std::time::Instant::now();
    let (status, answer) = s
        .client(HttpVersion::Http1)
        .review("/mutate", &review.build())
        .await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["uid"], "deadline-1");
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("within 1s") || message.contains("timed out"),
        "{message}"
    );
    assert!(took < Duration::from_millis(3500), "{took:?}");
}
