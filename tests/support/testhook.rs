//! A tiny admission webhook for tests of the stand-in's admission chain: HTTPS on 127.0.0.1
//! (its own CA), records every AdmissionReview it receives, and answers what the test scripted
//! for the path (allow by default; patches, denials, warnings, a wrong uid, an HTTP error, or
//! no answer at all).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::apiserver::WebhookTarget;

/// One review the webhook received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The path, e.g. `/m1`.
    pub path: String,
    /// The query the API server added, e.g. `timeout=10s`.
    pub query: String,
    /// The AdmissionReview's `request`.
    pub request: Value,
}

impl Received {
    pub fn uid(&self) -> &str {
        self.request["uid"].as_str().unwrap_or("")
    }
}

/// What the webhook answers to one review.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    deny: Option<Value>,
    patch: Option<Value>,
    warnings: Vec<String>,
    wrong_uid: bool,
    http_status: Option<u16>,
    hang: bool,
}

impl Answer {
    pub fn allow() -> Self {
        Self::default()
    }

    /// `allowed: false` with `status: {code: 403, reason: Forbidden, message}`.
    pub fn deny(message: &str) -> Self {
        Self::deny_with(json!({ "code": 403, "reason": "Forbidden", "message": message }))
    }

    /// `allowed: false` with this `status`.
    pub fn deny_with(status: Value) -> Self {
        Self {
            deny: Some(status),
            ..Self::default()
        }
    }

    /// Allowed, with these JSON Patch operations (base64, `patchType: JSONPatch`).
    pub fn patch(ops: Value) -> Self {
        Self {
            patch: Some(ops),
            ..Self::default()
        }
    }

    pub fn warn(mut self, text: &str) -> Self {
        self.warnings.push(text.to_string());
        self
    }

    /// Answers with a `response.uid` that is not the request's.
    pub fn wrong_uid() -> Self {
        Self {
            wrong_uid: true,
            ..Self::default()
        }
    }

    /// Answers this HTTP status with no review.
    pub fn http_status(code: u16) -> Self {
        Self {
            http_status: Some(code),
            ..Self::default()
        }
    }

    /// Never answers (the API server's `timeoutSeconds` ends the call).
    pub fn hang() -> Self {
        Self {
            hang: true,
            ..Self::default()
        }
    }
}

type Script = Arc<dyn Fn(&Value) -> Answer + Send + Sync>;

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    scripts: Mutex<HashMap<String, Script>>,
}

/// The running webhook; stops when dropped.
pub struct TestHook {
    /// `https://127.0.0.1:PORT`.
    pub base_url: String,
    pub ca_pem: String,
    state: Arc<State>,
    stop: CancellationToken,
}

impl Drop for TestHook {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn review(request: &Value, answer: &Answer) -> Value {
    let uid = if answer.wrong_uid {
        json!("not-the-request-uid")
    } else {
        request["uid"].clone()
    };
    let mut response = json!({ "uid": uid, "allowed": answer.deny.is_none() });
    if let Some(status) = &answer.deny {
        response["status"] = status.clone();
    }
    if let Some(ops) = &answer.patch {
        let bytes = serde_json::to_vec(ops).unwrap();
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    if !answer.warnings.is_empty() {
        response["warnings"] = json!(answer.warnings);
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response })
}

impl TestHook {
    pub async fn start() -> Self {
        super::webhook::install_crypto();
        let names = ["127.0.0.1".to_string(), "localhost".to_string()];
        let certs = sparkward::certs::generate(&names, 2).unwrap();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(certs.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(certs.key_pem.as_bytes()).unwrap();
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("https://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, acceptor, state.clone(), stop.clone()));
        Self {
            base_url,
            ca_pem: certs.ca_pem,
            state,
            stop,
        }
    }

    /// Answers reviews POSTed to `path` with `script(request)`.
    pub fn on(&self, path: &str, script: impl Fn(&Value) -> Answer + Send + Sync + 'static) {
        self.state
            .scripts
            .lock()
            .unwrap()
            .insert(path.to_string(), Arc::new(script));
    }

    /// Every review received so far, in order of arrival.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// What the stand-in needs to call this webhook.
    pub fn target(&self) -> WebhookTarget {
        WebhookTarget {
            base_url: self.base_url.clone(),
            ca_pem: self.ca_pem.clone(),
        }
    }
}

async fn handle(state: Arc<State>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let review_in: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let request = review_in["request"].clone();
    state.received.lock().unwrap().push(Received {
        path: path.clone(),
        query,
        request: request.clone(),
    });
    let script = state.scripts.lock().unwrap().get(&path).cloned();
    let answer = script.map_or_else(Answer::allow, |s| s(&request));
    if answer.hang {
        std::future::pending::<()>().await;
    }
    if let Some(code) = answer.http_status {
        return Response::builder()
            .status(code)
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&review(&request, &answer)).unwrap(),
        )))
        .unwrap()
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    stop: CancellationToken,
) {
    loop {
        let tcp = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        let acceptor = acceptor.clone();
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}
