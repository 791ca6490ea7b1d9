//! The reference for `scripts/bench-load`: the smallest useful mutating webhook, built on the same
//! stack as sparkward so that "sparkward CPU per review / reference CPU per review" measures what
//! sparkward's pipeline costs on top of merely answering a review.
//!
//! Same stack and settings as `sparkward serve`: tokio multi-thread runtime, hyper 1 with
//! hyper-util's auto (HTTP/1.1 keep-alive + HTTP/2) builder and the same connection settings,
//! tokio-rustls on aws-lc-rs (TLS 1.3/1.2, ALPN h2 + http/1.1), TCP_NODELAY on every socket, the
//! same global allocator (mimalloc). The work is kube-rs's admission_controller example's: decode the
//! AdmissionReview with the whole object as a dynamic JSON tree, add one label with a JSON Patch,
//! answer with the patch as base64. No identity, no hardening, no audit line, no metrics.
//!
//! `cargo run --release --example reference_webhook -- --tls-cert C --tls-key K --listen ADDR`
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

// The same allocator as `sparkward` (src/main.rs): part of the stack being compared.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LABEL: &str = "reference.example.com/seen";
const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Deserialize)]
struct ReviewIn {
    request: RequestIn,
}

#[derive(Deserialize)]
struct RequestIn {
    uid: String,
    /// The whole object as a dynamic tree, as kube's `DynamicObject` holds it.
    #[serde(default)]
    object: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
}

fn answer(body: &[u8]) -> Result<Vec<u8>, String> {
    let review: ReviewIn = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let request = review.request;
    let labels = request.object.pointer("/metadata/labels");
    let op = if labels.is_some_and(Value::is_object) {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "labels", LABEL]),
            value: json!("true"),
        })
    } else {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "labels"]),
            value: json!({ LABEL: "true" }),
        })
    };
    let patch = serde_json::to_vec(&[op]).map_err(|e| e.to_string())?;
    let out = ReviewOut {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: ResponseOut {
            uid: request.uid,
            allowed: true,
            patch: Some(base64::engine::general_purpose::STANDARD.encode(patch)),
            patch_type: Some("JSONPatch"),
        },
    };
    serde_json::to_vec(&out).map_err(|e| e.to_string())
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != http::Method::POST {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, b"{}".to_vec()));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, b"{}".to_vec())),
    };
    Ok(match answer(&body) {
        Ok(json) => reply(StatusCode::OK, json),
        Err(e) => reply(
            StatusCode::BAD_REQUEST,
            json!({ "message": e }).to_string().into(),
        ),
    })
}

/// The same connection settings as `sparkward::server` (read timeout = server.readTimeout's
/// default).
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

fn tls_acceptor(cert: &str, key: &str) -> anyhow::Result<TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("failed to read {cert}"))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad certificate in {cert}"))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("bad key in {key}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

struct Args {
    cert: String,
    key: String,
    listen: SocketAddr,
}

fn args() -> anyhow::Result<Args> {
    let mut cert = None;
    let mut key = None;
    let mut listen: SocketAddr = "127.0.0.1:8444".parse()?;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--tls-cert" => cert = Some(value()?),
            "--tls-key" => key = Some(value()?),
            "--listen" => listen = value()?.parse()?,
            other => bail!("unknown argument {other} (use --tls-cert, --tls-key, --listen)"),
        }
    }
    Ok(Args {
        cert: cert.context("--tls-cert is required")?,
        key: key.context("--tls-key is required")?,
        listen,
    })
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let acceptor = tls_acceptor(&args.cert, &args.key)?;
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!("reference webhook serving on {}", listener.local_addr()?);
    let builder = Arc::new(http_builder());
    // SIGTERM or Ctrl-C ends `main` normally, so an instrumented build (scripts/build-pgo)
    // writes its profile at exit.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, builder) = (acceptor.clone(), builder.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return;
            };
            let _ = builder
                .serve_connection(TokioIo::new(tls), service_fn(handle))
                .await;
        });
    }
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = args()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}
