//! The identity provider's public signing keys, parsed from a JSON Web Key Set (RFC 7517).
//!
//! A [`KeySet`] is built once per fetch (pure: bytes in, keys out) and then only read, so token
//! verification does a hash lookup and never touches JSON again.
//!
//! Invariants of a `KeySet`:
//! - it holds at least one key (an empty usable set is an error, never a silent "deny all");
//! - every key is an asymmetric *signature verification* key: RSA (2048–8192 bits), EC P-256,
//!   EC P-384 or OKP Ed25519. Symmetric `oct` keys are never kept, so a public key set can
//!   never yield an HMAC secret; `use: enc` keys, keys whose `key_ops` exclude `verify`, keys
//!   that carry private material and keys of unknown types are skipped, each with its reason;
//! - at most one key per (`kid`, key type): a duplicate is skipped, so a lookup is unambiguous.
//!
//! Parsing is per key: one key the code does not understand (a new post-quantum type, say) is
//! skipped, it never makes the whole set unusable.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

use crate::config::Algorithm;

/// Why a JWKS could not be turned into a usable key set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeysError {
    #[error("the JWKS is not valid JSON: {0}")]
    NotJson(String),
    #[error("the JWKS has no \"keys\" array")]
    NoKeysArray,
    #[error("the JWKS has no usable signature verification key ({})", describe_skipped(.skipped))]
    NoUsableKeys { skipped: Vec<SkippedKey> },
}

fn describe_skipped(skipped: &[SkippedKey]) -> String {
    if skipped.is_empty() {
        return "it lists no keys".to_string();
    }
    skipped
        .iter()
        .map(SkippedKey::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A key of the JWKS that was not kept, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedKey {
    pub kid: Option<String>,
    pub reason: SkipReason,
}

impl fmt::Display for SkippedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "key '{kid}' skipped: {}", self.reason),
            None => write!(f, "key without kid skipped: {}", self.reason),
        }
    }
}

/// Why a JWK was skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    /// `use: enc`, or another `use` than `sig`.
    NotForSignatures(String),
    /// `key_ops` present without `verify`.
    NoVerifyOp,
    /// `kty: oct`: a shared secret has no place in a public key set.
    Symmetric,
    /// The JWK carries private key parameters (`d`, `p`, ...): the provider leaked its signing
    /// key, so tokens "signed" with it prove nothing.
    PrivateKeyMaterial,
    UnsupportedKeyType(String),
    UnsupportedCurve(String),
    /// The JWK's own `alg` is one sparkward never verifies with (HS*, none, RSA-OAEP, ...).
    UnsupportedAlgorithm(String),
    /// The JWK's own `alg` does not fit its key type (e.g. `ES256` on an RSA key).
    AlgorithmMismatch(String),
    /// RSA modulus outside 2048–8192 bits.
    RsaKeySize(u32),
    /// A parameter is missing or is not valid base64url of the right length.
    Invalid(&'static str),
    /// Another key with the same `kid` and key type came first.
    DuplicateKid,
    /// The entry is not a JSON object with a string `kty`.
    NotAJwk,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotForSignatures(u) => write!(f, "\"use\": \"{u}\" is not a signature key"),
            Self::NoVerifyOp => f.write_str("\"key_ops\" does not include \"verify\""),
            Self::Symmetric => {
                f.write_str("symmetric (oct) keys are never used: they would be HMAC secrets")
            }
            Self::PrivateKeyMaterial => {
                f.write_str("it contains private key material; publish public keys only")
            }
            Self::UnsupportedKeyType(k) => write!(f, "unsupported key type \"{k}\""),
            Self::UnsupportedCurve(c) => write!(f, "unsupported curve \"{c}\""),
            Self::UnsupportedAlgorithm(a) => write!(f, "unsupported algorithm \"{a}\""),
            Self::AlgorithmMismatch(a) => write!(f, "algorithm \"{a}\" does not fit its key type"),
            Self::RsaKeySize(bits) => {
                write!(f, "RSA modulus of {bits} bits (2048 to 8192 required)")
            }
            Self::Invalid(what) => write!(f, "invalid {what}"),
            Self::DuplicateKid => f.write_str("another key of the same type has this kid"),
            Self::NotAJwk => f.write_str("not a JSON Web Key object"),
        }
    }
}

/// The elliptic curves sparkward verifies ECDSA signatures on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    P256,
    P384,
}

/// What kind of public key a JWK holds; decides which algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Rsa { bits: u32 },
    Ec(Curve),
    Ed25519,
}

impl KeyKind {
    /// Whether a signature made with `alg` can come from a key of this kind.
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa { .. } => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::Ec(Curve::P256) => alg == ES256,
            KeyKind::Ec(Curve::P384) => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }

    /// Key type without size, for the duplicate check (two RSA keys with one kid clash).
    fn family(self) -> KeyKind {
        match self {
            KeyKind::Rsa { .. } => KeyKind::Rsa { bits: 0 },
            other => other,
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Rsa { bits } => write!(f, "an RSA-{bits} key"),
            KeyKind::Ec(Curve::P256) => f.write_str("an EC P-256 key (ES256 only)"),
            KeyKind::Ec(Curve::P384) => f.write_str("an EC P-384 key (ES384 only)"),
            KeyKind::Ed25519 => f.write_str("an Ed25519 key (EdDSA only)"),
        }
    }
}

/// One usable verification key.
#[derive(Clone)]
pub struct VerificationKey {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's own `alg`, when it pins one: then no other algorithm may use this key.
    pub alg: Option<Algorithm>,
    pub(crate) decoding: DecodingKey,
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// Whether this key may verify a signature made with `alg`: the key type fits and the
    /// JWK's own `alg`, if any, is exactly `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// Why no key could be chosen for a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// No key has this kid.
    UnknownKid,
    /// Keys with this kid exist, but none accepts the algorithm; carries what the first is.
    Mismatch {
        kind: KeyKind,
        alg: Option<Algorithm>,
    },
    /// The token names no kid, and not exactly one key accepts the algorithm.
    NoKid { candidates: usize },
}

/// The usable verification keys of one JWKS fetch.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
    by_kid: HashMap<String, Vec<usize>>,
    skipped: Vec<SkippedKey>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Option<Vec<serde_json::Value>>,
}

/// The JWK members sparkward reads; everything else is ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<serde_json::Value>,
    p: Option<serde_json::Value>,
}

impl KeySet {
    /// Parses a JWKS document and keeps the usable verification keys.
    pub fn from_jwks_json(bytes: &[u8]) -> Result<KeySet, KeysError> {
        let raw: RawSet =
            serde_json::from_slice(bytes).map_err(|e| KeysError::NotJson(e.to_string()))?;
        let entries = raw.keys.ok_or(KeysError::NoKeysArray)?;

        let mut set = KeySet {
            keys: Vec::with_capacity(entries.len()),
            by_kid: HashMap::with_capacity(entries.len()),
            skipped: Vec::new(),
        };
        for entry in entries {
            let kid_hint = entry.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let jwk: RawJwk = match serde_json::from_value(entry) {
                Ok(jwk) => jwk,
                Err(_) => {
                    set.skip(kid_hint, SkipReason::NotAJwk);
                    continue;
                }
            };
            match parse_jwk(&jwk) {
                Ok(key) => set.insert(key),
                Err(reason) => set.skip(jwk.kid, reason),
            }
        }
        if set.keys.is_empty() {
            return Err(KeysError::NoUsableKeys {
                skipped: set.skipped,
            });
        }
        Ok(set)
    }

    fn skip(&mut self, kid: Option<String>, reason: SkipReason) {
        self.skipped.push(SkippedKey { kid, reason });
    }

    fn insert(&mut self, key: VerificationKey) {
        if let Some(kid) = &key.kid {
            let family = key.kind.family();
            let clash = self
                .by_kid
                .get(kid)
                .is_some_and(|same| same.iter().any(|&i| self.keys[i].kind.family() == family));
            if clash {
                self.skip(key.kid, SkipReason::DuplicateKid);
                return;
            }
            self.by_kid
                .entry(kid.clone())
                .or_default()
                .push(self.keys.len());
        }
        self.keys.push(key);
    }

    /// Chooses the key for a token: by `kid` when the token names one, otherwise the single key
    /// that accepts `alg` (a kid-less token is only unambiguous when exactly one key fits).
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&VerificationKey, Selection> {
        match kid {
            Some(kid) => {
                let indexes = self.by_kid.get(kid).ok_or(Selection::UnknownKid)?;
                let mut same_kid = indexes.iter().map(|&i| &self.keys[i]);
                if let Some(key) = same_kid.clone().find(|k| k.accepts(alg)) {
                    return Ok(key);
                }
                match same_kid.next() {
                    Some(first) => Err(Selection::Mismatch {
                        kind: first.kind,
                        alg: first.alg,
                    }),
                    None => Err(Selection::UnknownKid),
                }
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.accepts(alg));
                match (fitting.next(), fitting.count()) {
                    (Some(only), 0) => Ok(only),
                    (None, _) => Err(Selection::NoKid { candidates: 0 }),
                    (Some(_), more) => Err(Selection::NoKid {
                        candidates: more + 1,
                    }),
                }
            }
        }
    }

    /// Number of usable keys (never zero).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: an empty set is refused at construction. Present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The usable keys, in JWKS order.
    pub fn keys(&self) -> &[VerificationKey] {
        &self.keys
    }

    /// Whether a key with this kid is present.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// Keys that were not kept, with the reason (for logs when a rotation goes wrong).
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }
}

fn b64(value: Option<&String>, what: &'static str) -> Result<Vec<u8>, SkipReason> {
    let text = value.ok_or(SkipReason::Invalid(what))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| SkipReason::Invalid(what))
}

fn parse_jwk(jwk: &RawJwk) -> Result<VerificationKey, SkipReason> {
    if jwk.kty == "oct" {
        return Err(SkipReason::Symmetric);
    }
    if let Some(use_) = &jwk.use_
        && use_ != "sig"
    {
        return Err(SkipReason::NotForSignatures(use_.clone()));
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|op| op == "verify")
    {
        return Err(SkipReason::NoVerifyOp);
    }
    if jwk.d.is_some() || jwk.p.is_some() {
        return Err(SkipReason::PrivateKeyMaterial);
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => Some(
            Algorithm::parse(name).map_err(|_| SkipReason::UnsupportedAlgorithm(name.into()))?,
        ),
    };

    let (kind, decoding) = match jwk.kty.as_str() {
        "RSA" => {
            let n = b64(jwk.n.as_ref(), "RSA modulus (n)")?;
            let e = b64(jwk.e.as_ref(), "RSA exponent (e)")?;
            let n = strip_leading_zeros(&n);
            let e = strip_leading_zeros(&e);
            if e.is_empty() || e.len() > 8 {
                return Err(SkipReason::Invalid("RSA exponent (e)"));
            }
            let bits = bit_length(n);
            if !(2048..=8192).contains(&bits) {
                return Err(SkipReason::RsaKeySize(bits));
            }
            (
                KeyKind::Rsa { bits },
                DecodingKey::from_rsa_raw_components(n, e),
            )
        }
        "EC" => {
            let crv = jwk
                .crv
                .as_deref()
                .ok_or(SkipReason::Invalid("curve (crv)"))?;
            let (curve, len) = match crv {
                "P-256" => (Curve::P256, 32),
                "P-384" => (Curve::P384, 48),
                other => return Err(SkipReason::UnsupportedCurve(other.into())),
            };
            let x = b64(jwk.x.as_ref(), "EC coordinate (x)")?;
            let y = b64(jwk.y.as_ref(), "EC coordinate (y)")?;
            if x.len() != len || y.len() != len {
                return Err(SkipReason::Invalid("EC coordinate length"));
            }
            // Uncompressed SEC1 point, the form aws-lc-rs verifies against.
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (KeyKind::Ec(curve), DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            let crv = jwk
                .crv
                .as_deref()
                .ok_or(SkipReason::Invalid("curve (crv)"))?;
            if crv != "Ed25519" {
                return Err(SkipReason::UnsupportedCurve(crv.into()));
            }
            let x = b64(jwk.x.as_ref(), "Ed25519 public key (x)")?;
            if x.len() != 32 {
                return Err(SkipReason::Invalid("Ed25519 public key length"));
            }
            (KeyKind::Ed25519, DecodingKey::from_ed_der(&x))
        }
        other => return Err(SkipReason::UnsupportedKeyType(other.into())),
    };
    if let Some(alg) = alg
        && !kind.fits(alg)
    {
        return Err(SkipReason::AlgorithmMismatch(alg.as_str().into()));
    }
    Ok(VerificationKey {
        kid: jwk.kid.clone(),
        kind,
        alg,
        decoding,
    })
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn bit_length(be: &[u8]) -> u32 {
    match be.first() {
        None => 0,
        Some(&top) => (be.len() as u32 - 1) * 8 + (8 - top.leading_zeros()),
    }
}

/// The jsonwebtoken algorithm for a configured one (the config enum cannot hold HMAC or none).
pub(crate) fn jwt_algorithm(alg: Algorithm) -> jsonwebtoken::Algorithm {
    use jsonwebtoken::Algorithm as J;
    match alg {
        Algorithm::RS256 => J::RS256,
        Algorithm::RS384 => J::RS384,
        Algorithm::RS512 => J::RS512,
        Algorithm::PS256 => J::PS256,
        Algorithm::PS384 => J::PS384,
        Algorithm::PS512 => J::PS512,
        Algorithm::ES256 => J::ES256,
        Algorithm::ES384 => J::ES384,
        Algorithm::EdDSA => J::EdDSA,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn b64u(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa_jwk(kid: &str, bits: usize) -> serde_json::Value {
        let mut n = vec![0xC5u8; bits / 8];
        n[0] = 0xC5;
        json!({"kty": "RSA", "kid": kid, "n": b64u(&n), "e": "AQAB"})
    }

    fn ec_jwk(kid: &str, crv: &str, len: usize) -> serde_json::Value {
        json!({"kty": "EC", "kid": kid, "crv": crv, "x": b64u(&vec![1; len]), "y": b64u(&vec![2; len])})
    }

    fn ed_jwk(kid: &str) -> serde_json::Value {
        json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64u(&[3; 32])})
    }

    fn set(keys: Vec<serde_json::Value>) -> Result<KeySet, KeysError> {
        KeySet::from_jwks_json(json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn keeps_rsa_ec_and_ed25519_keys_by_kid() {
        let s = set(vec![
            rsa_jwk("r", 2048),
            ec_jwk("e", "P-256", 32),
            ec_jwk("e3", "P-384", 48),
            ed_jwk("o"),
        ])
        .unwrap();
        assert_eq!(s.len(), 4);
        assert!(s.skipped().is_empty());
        assert_eq!(
            s.select(Some("r"), Algorithm::PS256).unwrap().kind,
            KeyKind::Rsa { bits: 2048 }
        );
        assert_eq!(
            s.select(Some("e3"), Algorithm::ES384).unwrap().kind,
            KeyKind::Ec(Curve::P384)
        );
        assert_eq!(
            s.select(Some("o"), Algorithm::EdDSA).unwrap().kind,
            KeyKind::Ed25519
        );
    }

    #[test]
    fn skips_unusable_keys_with_their_reason() {
        let cases: Vec<(serde_json::Value, SkipReason)> = vec![
            (
                json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"}),
                SkipReason::Symmetric,
            ),
            (
                {
                    let mut k = rsa_jwk("enc", 2048);
                    k["use"] = json!("enc");
                    k
                },
                SkipReason::NotForSignatures("enc".into()),
            ),
            (
                {
                    let mut k = rsa_jwk("ops", 2048);
                    k["key_ops"] = json!(["encrypt"]);
                    k
                },
                SkipReason::NoVerifyOp,
            ),
            (
                {
                    let mut k = ec_jwk("priv", "P-256", 32);
                    k["d"] = json!("AAAA");
                    k
                },
                SkipReason::PrivateKeyMaterial,
            ),
            (rsa_jwk("small", 1024), SkipReason::RsaKeySize(1024)),
            (
                ec_jwk("p521", "P-521", 66),
                SkipReason::UnsupportedCurve("P-521".into()),
            ),
            (
                ec_jwk("short", "P-256", 31),
                SkipReason::Invalid("EC coordinate length"),
            ),
            (
                json!({"kty": "OKP", "kid": "x448", "crv": "Ed448", "x": "AA"}),
                SkipReason::UnsupportedCurve("Ed448".into()),
            ),
            (
                json!({"kty": "AKP", "kid": "pq", "alg": "ML-DSA-44", "pub": "AA"}),
                SkipReason::UnsupportedAlgorithm("ML-DSA-44".into()),
            ),
            (
                json!({"kty": "AKP", "kid": "pq2", "pub": "AA"}),
                SkipReason::UnsupportedKeyType("AKP".into()),
            ),
            (
                {
                    let mut k = rsa_jwk("hs", 2048);
                    k["alg"] = json!("HS256");
                    k
                },
                SkipReason::UnsupportedAlgorithm("HS256".into()),
            ),
            (
                {
                    let mut k = rsa_jwk("mix", 2048);
                    k["alg"] = json!("ES256");
                    k
                },
                SkipReason::AlgorithmMismatch("ES256".into()),
            ),
            (json!({"kid": "nokty"}), SkipReason::NotAJwk),
            (
                json!({"kty": "RSA", "kid": "bad64", "n": "!!", "e": "AQAB"}),
                SkipReason::Invalid("RSA modulus (n)"),
            ),
        ];
        for (jwk, want) in cases {
            let kid = jwk["kid"].as_str().map(str::to_owned);
            let s = set(vec![jwk, ed_jwk("good")]).unwrap();
            assert_eq!(s.len(), 1, "{kid:?}");
            assert_eq!(s.skipped(), &[SkippedKey { kid, reason: want }]);
        }
    }

    #[test]
    fn refuses_a_set_without_usable_keys() {
        let err = set(vec![json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"})]).unwrap_err();
        assert!(matches!(err, KeysError::NoUsableKeys { .. }));
        assert!(
            err.to_string().contains("key 'h' skipped: symmetric"),
            "{err}"
        );
        assert_eq!(
            set(vec![]).unwrap_err().to_string(),
            "the JWKS has no usable signature verification key (it lists no keys)"
        );
        assert_eq!(
            KeySet::from_jwks_json(b"{}").unwrap_err(),
            KeysError::NoKeysArray
        );
        assert!(matches!(
            KeySet::from_jwks_json(b"<html>"),
            Err(KeysError::NotJson(_))
        ));
    }

    #[test]
    fn skips_a_duplicate_kid_of_the_same_type_but_keeps_other_types() {
        let s = set(vec![
            rsa_jwk("k", 2048),
            rsa_jwk("k", 3072),
            ec_jwk("k", "P-256", 32),
        ])
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.skipped()[0].reason, SkipReason::DuplicateKid);
        assert_eq!(
            s.select(Some("k"), Algorithm::RS256).unwrap().kind,
            KeyKind::Rsa { bits: 2048 }
        );
        assert_eq!(
            s.select(Some("k"), Algorithm::ES256).unwrap().kind,
            KeyKind::Ec(Curve::P256)
        );
    }

    #[test]
    fn selects_keys_by_kid_algorithm_and_pinned_alg() {
        let mut pinned = rsa_jwk("pinned", 2048);
        pinned["alg"] = json!("RS256");
        let s = set(vec![pinned, ec_jwk("ec", "P-256", 32), ed_jwk("ed")]).unwrap();
        type Case = (
            Option<&'static str>,
            Algorithm,
            Result<Option<&'static str>, Selection>,
        );
        let cases: Vec<Case> = vec![
            (Some("pinned"), Algorithm::RS256, Ok(Some("pinned"))),
            (
                Some("pinned"),
                Algorithm::PS256,
                Err(Selection::Mismatch {
                    kind: KeyKind::Rsa { bits: 2048 },
                    alg: Some(Algorithm::RS256),
                }),
            ),
            (
                Some("ec"),
                Algorithm::ES384,
                Err(Selection::Mismatch {
                    kind: KeyKind::Ec(Curve::P256),
                    alg: None,
                }),
            ),
            (Some("nope"), Algorithm::RS256, Err(Selection::UnknownKid)),
            // Without kid: exactly one key fits ES256 and one fits EdDSA, none fits ES384.
            (None, Algorithm::ES256, Ok(Some("ec"))),
            (None, Algorithm::EdDSA, Ok(Some("ed"))),
            (
                None,
                Algorithm::ES384,
                Err(Selection::NoKid { candidates: 0 }),
            ),
        ];
        for (kid, alg, want) in cases {
            let got = s.select(kid, alg).map(|k| k.kid.as_deref());
            assert_eq!(got, want, "{kid:?} {alg:?}");
        }
    }

    #[test]
    fn a_kidless_token_is_ambiguous_with_two_fitting_keys() {
        let s = set(vec![rsa_jwk("a", 2048), rsa_jwk("b", 2048)]).unwrap();
        assert_eq!(
            s.select(None, Algorithm::RS256).unwrap_err(),
            Selection::NoKid { candidates: 2 }
        );
    }

    #[test]
    fn a_key_without_kid_is_usable_only_by_kidless_tokens() {
        let s = set(vec![
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64u(&[3; 32])}),
        ])
        .unwrap();
        assert!(s.select(None, Algorithm::EdDSA).is_ok());
        assert_eq!(
            s.select(Some("x"), Algorithm::EdDSA).unwrap_err(),
            Selection::UnknownKid
        );
    }
}
