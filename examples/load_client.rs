//! A small closed-loop load generator for `scripts/reliability-load`: `-c` workers sharing one
//! HTTP/1.1 keep-alive connection pool (the shape of `oha -c`, and of kube-apiserver's webhook
//! client), POSTing one body for `-z` seconds. Unlike oha it re-reads nothing and trusts a CA
//! *bundle* (several CAs in one PEM file), which a certificate rotation across CAs needs.
//! Prints one JSON object: requests, ok, failed, the first errors, req/s and latency
//! percentiles in milliseconds.
//!
//! `load_client --url https://127.0.0.1:18443/mutate --body review.json --cacert bundle.pem
//!  -c 16 -z 60`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

struct Args {
    url: String,
    body: Vec<u8>,
    ca: String,
    concurrency: usize,
    seconds: u64,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let (mut url, mut body, mut ca, mut concurrency, mut seconds) = (None, None, None, 16, 10);
    while let Some(flag) = it.next() {
        let value = it.next().expect("every flag takes a value");
        match flag.as_str() {
            "--url" => url = Some(value),
            "--body" => body = Some(std::fs::read(&value).expect("read --body")),
            "--cacert" => ca = Some(std::fs::read_to_string(&value).expect("read --cacert")),
            "-c" => concurrency = value.parse().expect("-c N"),
            "-z" => seconds = value.parse().expect("-z SECONDS"),
            other => panic!("unknown flag {other}"),
        }
    }
    Args {
        url: url.expect("--url"),
        body: body.expect("--body"),
        ca: ca.expect("--cacert"),
        concurrency,
        seconds,
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let a = args();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(a.ca.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector);
    let body = Bytes::from(a.body);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let workers: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let (client, body, url, stop, errors) = (
                client.clone(),
                body.clone(),
                a.url.clone(),
                stop.clone(),
                errors.clone(),
            );
            tokio::spawn(async move {
                let (mut ok, mut failed, mut latencies) = (0u64, 0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let request = http::Request::post(&url)
                        .header("content-type", "application/json")
                        .body(Full::new(body.clone()))
                        .expect("request");
                    let sent = Instant::now();
                    let outcome = match client.request(request).await {
                        Ok(resp) if resp.status() == 200 => resp
                            .into_body()
                            .collect()
                            .await
                            .map(|_| ())
                            .map_err(|e| format!("body: {e}")),
                        Ok(resp) => Err(format!("HTTP {}", resp.status())),
                        Err(e) => Err(format!("{e:?}")),
                    };
                    match outcome {
                        Ok(()) => {
                            ok += 1;
                            latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                        }
                        Err(e) => {
                            failed += 1;
                            let mut errors = errors.lock().expect("lock");
                            if errors.len() < 10 {
                                errors.push(e);
                            }
                        }
                    }
                }
                (ok, failed, latencies)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
    for w in workers {
        let (o, f, l) = w.await.expect("worker");
        ok += o;
        failed += f;
        latencies.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let report = serde_json::json!({
        "requests": ok + failed, "ok": ok, "failed": failed,
        "errors": *errors.lock().expect("lock"),
        "seconds": elapsed, "rps": ok as f64 / elapsed,
        "p50_ms": pct(0.5), "p99_ms": pct(0.99), "p999_ms": pct(0.999), "max_ms": pct(1.0),
    });
    println!("{report}");
}
