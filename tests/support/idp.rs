//! A test identity provider: signing keys generated in the test (RS256, ES256, EdDSA; no key
//! material is committed), tokens signed by hand so headers can be anything, and a real HTTPS
//! JWKS endpoint on 127.0.0.1 whose keys and availability a test can change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Test keys: generated with aws-lc-rs, signed by hand so headers can be anything.
pub mod keys {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
        RsaKeyPair,
    };
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use serde_json::{Value, json};

    pub fn b64u(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    enum Pair {
        Rsa(RsaKeyPair),
        Ec(EcdsaKeyPair),
        Ed(Ed25519KeyPair),
    }

    pub struct TestKey {
        pub kid: String,
        pair: Pair,
    }

    impl TestKey {
        pub fn rsa(kid: &str) -> Self {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
            Self {
                kid: kid.into(),
                pair: Pair::Rsa(pair),
            }
        }

        pub fn ec(kid: &str) -> Self {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
            Self {
                kid: kid.into(),
                pair: Pair::Ec(pair),
            }
        }

        pub fn ed(kid: &str) -> Self {
            Self {
                kid: kid.into(),
                pair: Pair::Ed(Ed25519KeyPair::generate().unwrap()),
            }
        }

        /// The same kind of key under another kid.
        pub fn sibling(&self, kid: &str) -> Self {
            match self.pair {
                Pair::Rsa(_) => Self::rsa(kid),
                Pair::Ec(_) => Self::ec(kid),
                Pair::Ed(_) => Self::ed(kid),
            }
        }

        pub fn alg(&self) -> &'static str {
            match self.pair {
                Pair::Rsa(_) => "RS256",
                Pair::Ec(_) => "ES256",
                Pair::Ed(_) => "EdDSA",
            }
        }

        pub fn jwk(&self) -> Value {
            match &self.pair {
                Pair::Rsa(pair) => {
                    let c = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                    json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                           "n": b64u(&c.n), "e": b64u(&c.e)})
                }
                Pair::Ec(pair) => {
                    let point = pair.public_key().as_ref();
                    json!({"kty": "EC", "kid": self.kid, "use": "sig", "crv": "P-256",
                           "x": b64u(&point[1..33]), "y": b64u(&point[33..])})
                }
                Pair::Ed(pair) => {
                    json!({"kty": "OKP", "kid": self.kid, "crv": "Ed25519",
                           "x": b64u(pair.public_key().as_ref())})
                }
            }
        }

        /// PKCS#1 DER, SPKI DER and SPKI PEM of an RSA public key: what an attacker would try
        /// as an HMAC secret.
        pub fn rsa_public_encodings(&self) -> Vec<Vec<u8>> {
            let Pair::Rsa(pair) = &self.pair else {
                panic!("not an RSA key")
            };
            let pkcs1 = pair.public_key().as_ref().to_vec();
            let spki = pair.public_key().as_der().unwrap().as_ref().to_vec();
            let body = STANDARD.encode(&spki);
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            let pem = format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                lines.join("\n")
            );
            vec![pkcs1, spki, pem.into_bytes()]
        }

        pub fn sign(&self, input: &[u8]) -> Vec<u8> {
            let rng = SystemRandom::new();
            match &self.pair {
                Pair::Rsa(pair) => {
                    let mut sig = vec![0; pair.public_modulus_len()];
                    pair.sign(&RSA_PKCS1_SHA256, &rng, input, &mut sig).unwrap();
                    sig
                }
                Pair::Ec(pair) => pair.sign(&rng, input).unwrap().as_ref().to_vec(),
                Pair::Ed(pair) => pair.sign(input).as_ref().to_vec(),
            }
        }

        pub fn header(&self) -> Value {
            json!({"alg": self.alg(), "kid": self.kid, "typ": "at+jwt"})
        }

        pub fn token(&self, claims: &Value) -> String {
            self.token_with_header(&self.header(), claims)
        }

        pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
            let input = unsigned(header, claims);
            format!("{input}.{}", b64u(&self.sign(input.as_bytes())))
        }
    }

    pub fn unsigned(header: &Value, claims: &Value) -> String {
        format!(
            "{}.{}",
            b64u(header.to_string().as_bytes()),
            b64u(claims.to_string().as_bytes())
        )
    }

    pub fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
        let input = unsigned(header, claims);
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", b64u(tag.as_ref()))
    }

    pub fn jwks(keys: &[&TestKey]) -> Vec<u8> {
        json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
            .to_string()
            .into_bytes()
    }
}

/// A real HTTPS JWKS endpoint on 127.0.0.1 (hyper + tokio-rustls, rcgen certificate signed by a
/// test CA that the cache trusts through `caFile`).
pub mod server {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper::{Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use sparkward::config::JwksSource;
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;
    use tokio_util::sync::CancellationToken;

    #[derive(Clone, Copy, Debug)]
    pub enum Mode {
        /// 200 with the current JWKS.
        Up,
        /// This status, no body.
        Status(u16),
        /// Connections are closed without an answer.
        Down,
        /// 200 with the current JWKS, after this long.
        Slow(Duration),
    }

    struct State {
        body: Mutex<Vec<u8>>,
        mode: Mutex<Mode>,
        requests: AtomicUsize,
    }

    pub struct JwksServer {
        pub url: String,
        ca_file: tempfile::NamedTempFile,
        state: Arc<State>,
        stop: CancellationToken,
    }

    impl Drop for JwksServer {
        fn drop(&mut self) {
            self.stop.cancel();
        }
    }

    impl JwksServer {
        pub async fn start(body: Vec<u8>) -> Self {
            super::super::webhook::install_crypto();
            let ca_key = KeyPair::generate().unwrap();
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
            let leaf_key = KeyPair::generate().unwrap();
            let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
                .unwrap()
                .signed_by(&leaf_key, &ca)
                .unwrap();

            let mut ca_file = tempfile::NamedTempFile::new().unwrap();
            ca_file.write_all(ca.pem().as_bytes()).unwrap();

            let tls = rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(
                    vec![leaf.der().clone(), ca.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
                )
                .unwrap();
            let acceptor = TlsAcceptor::from(Arc::new(tls));
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!(
                "https://{}/realms/data/certs",
                listener.local_addr().unwrap()
            );
            let state = Arc::new(State {
                body: Mutex::new(body),
                mode: Mutex::new(Mode::Up),
                requests: AtomicUsize::new(0),
            });
            let stop = CancellationToken::new();
            tokio::spawn(accept_loop(
                listener,
                acceptor,
                Arc::clone(&state),
                stop.clone(),
            ));
            Self {
                url,
                ca_file,
                state,
                stop,
            }
        }

        /// Serve this JWKS from now on.
        pub fn serve(&self, body: Vec<u8>) {
            *self.state.body.lock().unwrap() = body;
        }

        pub fn set_mode(&self, mode: Mode) {
            *self.state.mode.lock().unwrap() = mode;
        }

        /// HTTP requests that reached the endpoint.
        pub fn requests(&self) -> usize {
            self.state.requests.load(Ordering::SeqCst)
        }

        /// The CA file that makes the endpoint's certificate trusted.
        pub fn ca_path(&self) -> &std::path::Path {
            self.ca_file.path()
        }

        pub fn source(&self, refresh: Duration) -> JwksSource {
            JwksSource::Url {
                url: self.url.clone(),
                refresh,
                ca_file: Some(self.ca_file.path().to_path_buf()),
            }
        }
    }

    async fn accept_loop(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        state: Arc<State>,
        stop: CancellationToken,
    ) {
        loop {
            let (tcp, _) = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(_) => continue,
                },
            };
            if matches!(*state.mode.lock().unwrap(), Mode::Down) {
                drop(tcp);
                continue;
            }
            let acceptor = acceptor.clone();
            let state = Arc::clone(&state);
            let stop = stop.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |_request| {
                    let state = Arc::clone(&state);
                    async move {
                        state.requests.fetch_add(1, Ordering::SeqCst);
                        let mut mode = *state.mode.lock().unwrap();
                        if let Mode::Slow(delay) = mode {
                            tokio::time::sleep(delay).await;
                            mode = Mode::Up;
                        }
                        match mode {
                            Mode::Up => {
                                let body = state.body.lock().unwrap().clone();
                                Ok(Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap())
                            }
                            Mode::Status(code) => Ok(Response::builder()
                                .status(StatusCode::from_u16(code).unwrap())
                                .body(Full::new(Bytes::new()))
                                .unwrap()),
                            // Erroring the service makes hyper drop the (kept-alive) connection.
                            Mode::Down | Mode::Slow(_) => Err(std::io::Error::other("down")),
                        }
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service);
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = conn => {}
                }
            });
        }
    }
}
