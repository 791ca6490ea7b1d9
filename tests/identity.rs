//! Token verification end to end: keys generated here for RS256, ES256 and EdDSA (no key
//! material is committed), a real HTTPS JWKS endpoint on 127.0.0.1 whose keys and availability
//! the tests change, and the key cache in front of it.
//!
//! Every denial goes through `denied`, which also checks that the message never quotes the token.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sparkward::config::{Algorithm, IdentityConfig, JwksSource, RequesterBinding};
use sparkward::core::identity::{IdentityError, VerifiedIdentity, check_requester, verify_token};
use sparkward::core::keys::KeySet;
use sparkward::k8s::jwks::{JwksCache, JwksError};
use tokio_util::sync::CancellationToken;

mod support;

use support::idp::keys::{self, TestKey, jwks};
use support::idp::server::{JwksServer, Mode};

/// A fixed clock: every token below is judged at this instant.
const NOW: u64 = 1_750_000_000;
const ISS: &str = "https://idp.example.com/realms/data";
/// Long enough that only on-demand re-fetches happen during a test.
const HOUR: Duration = Duration::from_secs(3600);

/// One key per algorithm, published, plus an impostor of each (same kid, other key material).
struct Fixture {
    keys: Vec<TestKey>,
    impostors: Vec<TestKey>,
    set: KeySet,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = vec![
            TestKey::rsa("rsa-1"),
            TestKey::ec("ec-1"),
            TestKey::ed("ed-1"),
        ];
        let impostors = keys.iter().map(|k| k.sibling(&k.kid)).collect();
        let set = KeySet::from_jwks_json(&jwks(&keys.iter().collect::<Vec<_>>())).unwrap();
        Fixture {
            keys,
            impostors,
            set,
        }
    })
}

fn mk_config(jwks: JwksSource) -> IdentityConfig {
    IdentityConfig {
        annotation: "sparkward.io/submitter-token".into(),
        issuer: ISS.into(),
        audiences: vec!["sparkward".into()],
        jwks,
        algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
        leeway: Duration::from_secs(30),
        subject_claim: "sub".into(),
        scope_claim: "scope".into(),
        requester_binding: Some(RequesterBinding {
            username_prefix: "oidc:".into(),
        }),
        spark_operator: vec!["system:serviceaccount:spark-operator:spark-operator-spark".into()],
        job_admins: Default::default(),
        kubernetes_controllers: vec![],
        evictors: Default::default(),
        requester_identity: None,
    }
}

fn cfg() -> IdentityConfig {
    mk_config(JwksSource::File {
        path: "/not/read/by/pure/tests.json".into(),
        refresh: HOUR,
    })
}

fn mk_claims() -> Value {
    json!({
        "iss": ISS, "aud": "sparkward", "sub": "alice", "exp": NOW + 900, "iat": NOW - 60,
        "nbf": NOW - 60, "jti": "0b7a", "scope": "openid data:read:postgres-main",
    })
}

fn claims_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut claims = mk_claims();
    edit(&mut claims);
    claims
}

fn verify(token: &str) -> Result<VerifiedIdentity, IdentityError> {
    verify_token(token, &fixture().set, &cfg(), NOW)
}

/// Unwraps a denial and checks its message never quotes the token or any of its parts.
#[track_caller]
fn denied(token: &str, result: Result<VerifiedIdentity, IdentityError>) -> IdentityError {
    let err = match result {
        Ok(id) => panic!("token was accepted: {id:?}"),
        Err(err) => err,
    };
    let message = err.to_string();
    let trimmed = token.trim();
    assert!(
        trimmed.is_empty() || !message.contains(trimmed),
        "message quotes the token: {message}"
    );
    for part in trimmed.split('.').filter(|p| p.len() >= 8) {
        assert!(
            !message.contains(part),
            "message quotes a token part: {message}"
        );
    }
    err
}

// ---------------------------------------------------------------------------------------------
// Pure verification, for each algorithm.
// ---------------------------------------------------------------------------------------------

#[test]
fn accepts_valid_tokens_signed_with_rs256_es256_and_eddsa() {
    for key in &fixture().keys {
        let id = verify(&key.token(&mk_claims())).unwrap_or_else(|e| panic!("{}: {e}", key.alg()));
        assert_eq!(
            id,
            VerifiedIdentity {
                subject: "alice".into(),
                issuer: ISS.into(),
                token_id: Some("0b7a".into()),
                scopes: vec!["openid".into(), "data:read:postgres-main".into()],
                audience: "sparkward".into(),
                expires_at: NOW + 900,
            },
            "{}",
            key.alg()
        );
    }
}

#[test]
fn denies_expired_tokens_and_says_how_long_ago() {
    for key in &fixture().keys {
        let token = key.token(&claims_with(|c| c["exp"] = json!(NOW - 240)));
        let err = denied(&token, verify(&token));
        assert_eq!(
            err,
            IdentityError::Expired { ago_secs: 240 },
            "{}",
            key.alg()
        );
        assert_eq!(err.code(), "expired");
        assert_eq!(
            err.to_string(),
            "token expired 4m ago: get a fresh token and resubmit"
        );
    }
}

#[test]
fn accepts_a_token_that_expired_within_the_leeway() {
    for key in &fixture().keys {
        let token = key.token(&claims_with(|c| c["exp"] = json!(NOW - 10)));
        assert!(verify(&token).is_ok(), "{}", key.alg());
    }
}

#[test]
fn denies_tokens_that_are_not_yet_valid() {
    for key in &fixture().keys {
        let token = key.token(&claims_with(|c| c["nbf"] = json!(NOW + 600)));
        let err = denied(&token, verify(&token));
        assert_eq!(
            err,
            IdentityError::NotYetValid { in_secs: 600 },
            "{}",
            key.alg()
        );
        assert_eq!(err.code(), "not_yet_valid");
    }
}

#[test]
fn denies_tokens_issued_in_the_future() {
    for key in &fixture().keys {
        let token = key.token(&claims_with(|c| c["iat"] = json!(NOW + 300)));
        let err = denied(&token, verify(&token));
        assert_eq!(
            err,
            IdentityError::IssuedInFuture { in_secs: 300 },
            "{}",
            key.alg()
        );
    }
}

#[test]
fn denies_tokens_from_another_issuer() {
    for key in &fixture().keys {
        let token = key.token(&claims_with(|c| {
            c["iss"] = json!("https://other.example.com")
        }));
        let err = denied(&token, verify(&token));
        assert_eq!(err.code(), "wrong_issuer", "{}", key.alg());
        assert_eq!(
            err.to_string(),
            format!(
                "token issuer is 'https://other.example.com', this cluster trusts '{ISS}': get a \
                 token from that identity provider"
            )
        );
    }
}

#[test]
fn denies_tokens_for_another_audience() {
    for key in &fixture().keys {
        let token = key.token(&claims_with(|c| c["aud"] = json!("x")));
        let err = denied(&token, verify(&token));
        assert_eq!(err.code(), "wrong_audience", "{}", key.alg());
        assert_eq!(
            err.to_string(),
            "token audience is 'x', this cluster accepts 'sparkward': request a token for that \
             audience"
        );
    }
}

#[test]
fn accepts_an_audience_list_that_contains_this_cluster() {
    for key in &fixture().keys {
        let token = key.token(&claims_with(|c| c["aud"] = json!(["account", "sparkward"])));
        assert_eq!(
            verify(&token).unwrap().audience,
            "sparkward",
            "{}",
            key.alg()
        );
    }
}

#[test]
fn denies_tokens_without_a_subject() {
    for key in &fixture().keys {
        let token = key.token(&claims_with(|c| {
            c.as_object_mut().unwrap().remove("sub");
        }));
        let err = denied(&token, verify(&token));
        assert_eq!(
            err,
            IdentityError::MissingSubject {
                claim: "sub".into()
            },
            "{}",
            key.alg()
        );
    }
}

#[test]
fn denies_a_tampered_payload_carrying_the_old_signature() {
    for key in &fixture().keys {
        let original = key.token(&mk_claims());
        let signature = original.rsplit('.').next().unwrap();
        let forged_claims = claims_with(|c| {
            c["sub"] = json!("admin");
            c["scope"] = json!("data:write:everything");
        });
        let forged = format!(
            "{}.{signature}",
            keys::unsigned(&key.header(), &forged_claims)
        );
        let err = denied(&forged, verify(&forged));
        assert_eq!(err.code(), "bad_signature", "{}", key.alg());
    }
}

#[test]
fn denies_a_token_signed_by_another_key_with_the_same_kid() {
    for impostor in &fixture().impostors {
        let token = impostor.token(&mk_claims());
        let err = denied(&token, verify(&token));
        assert_eq!(err.code(), "bad_signature", "{}", impostor.alg());
        assert!(
            err.to_string()
                .contains(&format!("key '{}' ({})", impostor.kid, impostor.alg())),
            "{err}"
        );
    }
}

#[test]
fn denies_an_unsigned_alg_none_token() {
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "kid": "rsa-1", "typ": "JWT"});
        let token = format!("{}.", keys::unsigned(&header, &mk_claims()));
        let err = denied(&token, verify(&token));
        assert_eq!(err, IdentityError::AlgNone);
        assert_eq!(err.code(), "alg_not_allowed");
        assert!(err.to_string().contains("'alg: none' attack"), "{err}");
    }
}

#[test]
fn denies_hs256_tokens_that_use_the_rsa_public_key_as_the_hmac_secret() {
    let rsa = &fixture().keys[0];
    for secret in rsa.rsa_public_encodings() {
        for kid in [Some("rsa-1"), None] {
            let header = match kid {
                Some(kid) => json!({"alg": "HS256", "kid": kid}),
                None => json!({"alg": "HS256"}),
            };
            let token = keys::hs256(&secret, &header, &mk_claims());
            let err = denied(&token, verify(&token));
            assert_eq!(
                err,
                IdentityError::AlgHmac {
                    alg: "HS256".into()
                }
            );
            assert!(
                err.to_string().contains("algorithm confusion attack"),
                "{err}"
            );
        }
    }
}

#[test]
fn denies_a_token_whose_alg_does_not_fit_the_key() {
    // An EdDSA header pointing at the RSA key: the key decides, not the header.
    let ed = &fixture().keys[2];
    let token = ed.token_with_header(&json!({"alg": "EdDSA", "kid": "rsa-1"}), &mk_claims());
    let err = denied(&token, verify(&token));
    assert_eq!(err.code(), "alg_key_mismatch");
}

#[test]
fn denies_a_token_of_user_a_in_a_request_made_by_user_b() {
    let token = fixture().keys[0].token(&mk_claims());
    let id = verify(&token).unwrap();
    assert_eq!(check_requester(&id, "oidc:alice", &cfg()), Ok(()));
    let err = check_requester(&id, "oidc:bob", &cfg()).unwrap_err();
    assert_eq!(err.code(), "requester_mismatch");
    assert_eq!(
        err.to_string(),
        "token belongs to oidc:alice, request made by oidc:bob: submit with your own token"
    );
}

#[test]
fn denies_garbage_in_the_annotation() {
    let cases = [
        ("hello", "malformed"),
        ("eyJhbGciOiJSUzI1NiJ9", "malformed"),
        ("a.b.c", "malformed"),
        ("!!!.###.$$$", "malformed"),
        ("{\"alg\":\"RS256\"}", "malformed"),
        ("   ", "missing_token"),
        ("\u{0}\u{1}.\u{2}.\u{3}", "malformed"),
    ];
    for (garbage, code) in cases {
        let err = denied(garbage, verify(garbage));
        assert_eq!(err.code(), code, "{garbage:?}: {err}");
    }
    let err = verify("   ").unwrap_err();
    assert!(
        err.to_string()
            .contains("metadata.annotations[\"sparkward.io/submitter-token\"]"),
        "{err}"
    );
    assert!(
        err.to_string().contains(
            "--conf spark.kubernetes.driver.annotation.sparkward.io/submitter-token=$TOKEN"
        ),
        "{err}"
    );
}

#[test]
fn denies_a_one_mebibyte_token_quickly() {
    let key = &fixture().keys[0];
    let padding = "x".repeat(1024 * 1024);
    let token = key.token(&claims_with(|c| c["padding"] = json!(padding)));
    assert!(token.len() > 1024 * 1024);
    let started = Instant::now();
    let err = denied(&token, verify(&token));
    let took = started.elapsed();
    assert_eq!(err.code(), "too_large");
    assert!(err.to_string().contains("16384-byte limit"), "{err}");
    assert!(took < Duration::from_millis(20), "took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// The key cache against a real HTTPS JWKS endpoint.
// ---------------------------------------------------------------------------------------------

async fn mk_cache(server: &JwksServer, refresh: Duration) -> (JwksCache, IdentityConfig) {
    let source = server.source(refresh);
    let cache = JwksCache::new(source.clone()).unwrap();
    (cache, mk_config(source))
}

#[tokio::test]
async fn loads_keys_over_https_and_verifies_tokens_of_each_algorithm() {
    let f = fixture();
    let server = JwksServer::start(jwks(&f.keys.iter().collect::<Vec<_>>())).await;
    let (cache, cfg) = mk_cache(&server, HOUR).await;
    assert!(!cache.ready());
    assert_eq!(cache.age(), None);

    let loaded = cache.refresh().await.unwrap();
    assert_eq!(loaded.keys.len(), 3);
    assert!(cache.ready());
    assert!(cache.age().unwrap() < Duration::from_secs(5));
    for key in &f.keys {
        let id = cache.verify(&key.token(&mk_claims()), &cfg, NOW).await;
        assert_eq!(id.unwrap().subject, "alice", "{}", key.alg());
    }
    assert_eq!(server.requests(), 1);
    assert_eq!(cache.stats().fetch_successes(), 1);
    assert_eq!(cache.stats().fetch_failures(), 0);
}

#[tokio::test]
async fn accepts_a_rotated_key_after_one_refetch_of_the_jwks() {
    let old = TestKey::rsa("2024-old");
    let new = TestKey::rsa("2025-new");
    let server = JwksServer::start(jwks(&[&old])).await;
    let (cache, cfg) = mk_cache(&server, HOUR).await;
    cache.refresh().await.unwrap();
    assert_eq!(server.requests(), 1);

    // The provider rotates: it publishes the new key and signs with it.
    server.serve(jwks(&[&old, &new]));
    let id = cache.verify(&new.token(&mk_claims()), &cfg, NOW).await;
    assert_eq!(id.unwrap().subject, "alice");
    assert_eq!(server.requests(), 2);
    assert_eq!(cache.stats().kid_refetches(), 1);

    // Tokens with a kid nobody publishes do not make the cache hammer the provider.
    let stranger = TestKey::ed("never-published");
    let stranger_token = stranger.token(&mk_claims());
    for _ in 0..5 {
        let result = cache.verify(&stranger_token, &cfg, NOW).await;
        let err = denied(&stranger_token, result);
        assert_eq!(
            err,
            IdentityError::UnknownKid {
                kid: "never-published".into()
            }
        );
    }
    assert_eq!(
        server.requests(),
        2,
        "re-fetches are limited to one per refresh interval"
    );
}

#[tokio::test]
async fn concurrent_tokens_with_an_unknown_kid_share_one_refetch() {
    let old = TestKey::ec("ec-old");
    let new = TestKey::ec("ec-new");
    let server = JwksServer::start(jwks(&[&old])).await;
    let (cache, cfg) = mk_cache(&server, HOUR).await;
    cache.refresh().await.unwrap();
    server.serve(jwks(&[&old, &new]));

    let token = new.token(&mk_claims());
    let verifications = (0..16).map(|_| cache.verify(&token, &cfg, NOW));
    let results = futures::future::join_all(verifications).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        server.requests(),
        2,
        "one initial fetch and one shared re-fetch"
    );

    let stranger = TestKey::ec("ec-stranger").token(&mk_claims());
    let verifications = (0..16).map(|_| cache.verify(&stranger, &cfg, NOW));
    let results = futures::future::join_all(verifications).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(IdentityError::UnknownKid { .. }))),
        "{results:?}"
    );
    assert_eq!(
        server.requests(),
        2,
        "the re-fetch budget for this interval is spent"
    );
}

#[tokio::test]
async fn keeps_accepting_tokens_with_cached_keys_while_the_jwks_endpoint_is_down() {
    let key = TestKey::ed("ed-cached");
    let server = JwksServer::start(jwks(&[&key])).await;
    let (cache, cfg) = mk_cache(&server, HOUR).await;
    cache.refresh().await.unwrap();

    server.set_mode(Mode::Down);
    assert!(cache.refresh().await.is_err());
    assert_eq!(cache.stats().fetch_failures(), 1);
    assert!(cache.last_error().is_some());
    assert!(cache.ready());
    let id = cache.verify(&key.token(&mk_claims()), &cfg, NOW).await;
    assert_eq!(id.unwrap().subject, "alice");

    // An unknown kid still tries one re-fetch, which fails: the answer is about the kid, and
    // says the keys could not be re-fetched (a fresh token would not help).
    let other = TestKey::ed("ed-other").token(&mk_claims());
    let result = cache.verify(&other, &cfg, NOW).await;
    let err = denied(&other, result);
    assert_eq!(err.code(), "keys_stale");
    let text = err.to_string();
    assert!(
        text.contains("'ed-other'") && text.contains("could not be re-fetched"),
        "{text}"
    );
}

#[tokio::test]
async fn denies_every_token_when_no_keys_were_ever_fetched() {
    let key = TestKey::rsa("rsa-never");
    let server = JwksServer::start(jwks(&[&key])).await;
    server.set_mode(Mode::Down);
    let (cache, cfg) = mk_cache(&server, HOUR).await;

    let token = key.token(&mk_claims());
    let result = cache.verify(&token, &cfg, NOW).await;
    let err = denied(&token, result);
    assert_eq!(err, IdentityError::KeysUnavailable);
    assert_eq!(err.code(), "keys_unavailable");
    assert_eq!(
        err.to_string(),
        "the identity provider's keys could not be loaded, so no token can be verified: retry \
         shortly, and tell the platform team if it persists"
    );
    assert!(!cache.ready());
    assert!(cache.stats().fetch_failures() >= 1);
}

#[tokio::test]
async fn treats_error_statuses_bad_json_and_unusable_sets_as_failed_fetches() {
    let key = TestKey::ec("ec-good");
    let server = JwksServer::start(jwks(&[&key])).await;
    let (cache, cfg) = mk_cache(&server, HOUR).await;
    let first = cache.refresh().await.unwrap();

    server.set_mode(Mode::Status(503));
    assert!(matches!(
        cache.refresh().await,
        Err(JwksError::Status { status: 503, .. })
    ));
    server.set_mode(Mode::Status(302));
    assert!(matches!(
        cache.refresh().await,
        Err(JwksError::Status { status: 302, .. })
    ));
    server.set_mode(Mode::Up);
    server.serve(b"<html>maintenance</html>".to_vec());
    assert!(matches!(cache.refresh().await, Err(JwksError::Keys { .. })));
    server.serve(br#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#.to_vec());
    let err = cache.refresh().await.unwrap_err();
    assert!(err.to_string().contains("symmetric"), "{err}");
    server.serve(vec![b' '; 2 * 1024 * 1024]);
    assert!(matches!(
        cache.refresh().await,
        Err(JwksError::TooLarge { .. })
    ));

    // The first good set is still the one in use.
    assert!(std::sync::Arc::ptr_eq(&first, &cache.current().unwrap()));
    assert_eq!(cache.stats().fetch_failures(), 5);
    assert!(
        cache
            .verify(&key.token(&mk_claims()), &cfg, NOW)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn refuses_a_jwks_server_whose_certificate_is_not_trusted() {
    let key = TestKey::ed("ed-tls");
    let server = JwksServer::start(jwks(&[&key])).await;
    let cache = JwksCache::new(JwksSource::Url {
        url: server.url.clone(),
        refresh: HOUR,
        ca_file: None,
    })
    .unwrap();
    let err = cache.refresh().await.unwrap_err();
    assert!(matches!(err, JwksError::Http { .. }), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn the_refresh_task_retries_until_the_endpoint_is_up_and_stops_on_cancel() {
    let key = TestKey::ed("ed-run");
    let server = JwksServer::start(jwks(&[&key])).await;
    server.set_mode(Mode::Status(500));
    let (cache, _) = mk_cache(&server, HOUR).await;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(cache.clone().run(cancel.clone()));

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!cache.ready());
    server.set_mode(Mode::Up);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cache.ready() {
        assert!(Instant::now() < deadline, "keys never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cache.stats().fetch_failures() >= 1);
    assert_eq!(cache.stats().fetch_successes(), 1);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("run() stops when cancelled")
        .unwrap();
}

#[tokio::test]
async fn a_file_source_is_reread_on_every_refresh_interval() {
    let first = TestKey::ed("file-1");
    let second = TestKey::ed("file-2");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[&first])).unwrap();
    let source = JwksSource::File {
        path: path.clone(),
        refresh: Duration::from_millis(100),
    };
    let cache = JwksCache::new(source.clone()).unwrap();
    let cfg = mk_config(source);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(cache.clone().run(cancel.clone()));

    let deadline = Instant::now() + Duration::from_secs(5);
    while !cache.ready() {
        assert!(Instant::now() < deadline, "keys never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        cache
            .verify(&first.token(&mk_claims()), &cfg, NOW)
            .await
            .is_ok()
    );

    // Write the rotated set atomically, as a ConfigMap/Secret update does.
    let staged = dir.path().join("jwks.json.new");
    std::fs::write(&staged, jwks(&[&second])).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cache.current().unwrap().keys.contains_kid("file-2") {
        assert!(Instant::now() < deadline, "the file was never re-read");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        cache
            .verify(&second.token(&mk_claims()), &cfg, NOW)
            .await
            .is_ok()
    );
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn alg_none_and_hmac_tokens_never_cause_a_jwks_fetch() {
    let rsa = TestKey::rsa("rsa-quiet");
    let server = JwksServer::start(jwks(&[&rsa])).await;
    let (cache, cfg) = mk_cache(&server, HOUR).await;
    cache.refresh().await.unwrap();
    let none = format!(
        "{}.",
        keys::unsigned(&json!({"alg": "none", "kid": "zzz"}), &mk_claims())
    );
    let hmac = keys::hs256(
        &rsa.rsa_public_encodings()[2],
        &json!({"alg": "HS256", "kid": "zzz"}),
        &mk_claims(),
    );
    for token in [none, hmac, "garbage".to_string()] {
        let result = cache.verify(&token, &cfg, NOW).await;
        denied(&token, result);
    }
    assert_eq!(server.requests(), 1);
}
