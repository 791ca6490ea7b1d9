//! Verifying the submitter's OAuth 2.0 access token (a JWT) and binding it to the Kubernetes
//! user who made the request. Pure: the key set and the clock (`now_unix`) are passed in.
//!
//! Order of checks, cheapest and least trusting first:
//! 1. size (before any parsing), shape (three base64url parts), header JSON;
//! 2. header `alg` against the configured allow-list (`none` and `HS*` are named as the attacks
//!    they are), `crit` (no extension is understood, so any is refused);
//! 3. key choice by `kid` (kid-less tokens only when exactly one key fits) and key/alg fit;
//! 4. signature, plus `iss`/`aud`/`exp` presence, by jsonwebtoken with an explicit `Validation`;
//! 5. sparkward's own claim checks, in the order a user can act on them: issuer, audience,
//!    time (`exp`, `nbf`, `iat` against `now_unix` with the configured leeway), subject, scopes.
//!
//! Header fields that point at other keys (`jku`, `jwk`, `x5u`, `x5c`) are ignored: only keys
//! from the configured JWKS ever verify a token.
//!
//! Error messages are read by data engineers in `kubectl` output: each names the cause and the
//! fix, and carries only safe facts (alg, kid, iss, aud, subject), truncated and stripped of
//! control characters. They never contain the token or any of its encoded parts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, dangerous, decode};
use serde_json::{Map, Value};

use crate::config::{Algorithm, IdentityConfig};
use crate::core::decision::Submitter;
use crate::core::keys::{self, KeySet, Selection, VerificationKey};

/// Largest annotation value treated as a token. Real access tokens are 1–4 KiB; anything
/// bigger is refused before it is decoded or parsed.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Longest subject accepted (an email is at most 254 characters).
const MAX_SUBJECT_BYTES: usize = 256;

/// Longest claim or header value quoted in a message.
const MAX_FACT_CHARS: usize = 96;

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// Value of the configured subject claim (`sub`, `email`, ...).
    pub subject: String,
    pub issuer: String,
    /// `jti`, when the token has one.
    pub token_id: Option<String>,
    /// Granted scopes, in token order, without duplicates.
    pub scopes: Vec<String>,
    /// The configured audience the token's `aud` matched.
    pub audience: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
}

/// Why a token (or the requester) was refused. One variant per cause; `code()` is the metric
/// label, `Display` the message for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "no submitter token: add your OAuth 2.0 access token as metadata.annotations[\"{annotation}\"], \
         or with spark-submit pass --conf spark.kubernetes.driver.annotation.{annotation}=$TOKEN"
    )]
    MissingToken { annotation: String },

    #[error(
        "the submitter token is {size} bytes, more than the {limit}-byte limit: put only the raw \
         access token (a JWT) in the annotation"
    )]
    TooLarge { size: usize, limit: usize },

    #[error(
        "the submitter token is not a valid JWT ({reason}): put the raw access token, three \
         base64url parts separated by dots, in the annotation"
    )]
    Malformed { reason: &'static str },

    #[error(
        "the submitter token is unsigned (alg 'none'): unsigned tokens are never accepted, anyone \
         could forge one ('alg: none' attack); get a signed token from your identity provider"
    )]
    AlgNone,

    #[error(
        "the submitter token uses the HMAC algorithm '{alg}': sparkward verifies with the identity \
         provider's public keys, and accepting HMAC would let anyone who has a public key forge \
         tokens (algorithm confusion attack); get a token signed with an asymmetric key"
    )]
    AlgHmac { alg: String },

    #[error(
        "token algorithm '{alg}' is not accepted here (allowed: {allowed}): get a token signed \
         with an allowed algorithm, or ask the platform team to allow it"
    )]
    AlgNotAllowed { alg: String, allowed: String },

    #[error(
        "the token header marks {names} as critical ('crit') and sparkward does not implement \
         them: get a plain signed access token from your identity provider"
    )]
    UnsupportedCritical { names: String },

    #[error("{}", no_kid_message(*alg, *candidates))]
    NoKid { alg: Algorithm, candidates: usize },

    #[error(
        "the token was signed with key '{kid}', which the identity provider does not publish \
         (keys re-fetched): get a fresh token; if it persists, the token comes from another \
         identity provider"
    )]
    UnknownKid { kid: String },

    /// The key is unknown and the re-fetch that could have found it failed: the provider may
    /// well publish it, so a fresh token would not help.
    #[error(
        "the token was signed with key '{kid}', which sparkward does not have yet, and the \
         identity provider's keys could not be re-fetched ({reason}): retry shortly, and tell \
         the platform team if it persists"
    )]
    UnknownKidKeysStale { kid: String, reason: String },

    #[error(
        "the token says alg '{}' but key '{kid}' is {key}: the token was not made for this key; \
         get a fresh token from your identity provider", alg.as_str()
    )]
    AlgKeyMismatch {
        kid: String,
        alg: Algorithm,
        key: String,
    },

    #[error(
        "the token signature does not verify with key '{}' ({}): the token was altered or signed \
         by someone else; get a fresh token from your identity provider",
        kid.as_deref().unwrap_or("(no kid)"), alg.as_str()
    )]
    BadSignature { kid: Option<String>, alg: Algorithm },

    #[error(
        "the token has no numeric expiry ('exp'): only expiring tokens are accepted; submit an \
         access token from your identity provider"
    )]
    MissingExpiry,

    #[error("token expired {} ago: get a fresh token and resubmit", human(*ago_secs))]
    Expired { ago_secs: u64 },

    #[error(
        "token is not valid for another {} ('nbf'): wait and resubmit, or get a token valid now",
        human(*in_secs)
    )]
    NotYetValid { in_secs: u64 },

    #[error(
        "token was issued {} in the future ('iat'): a clock is wrong, at the identity provider or \
         on this cluster; get a fresh token, and tell the platform team if it persists",
        human(*in_secs)
    )]
    IssuedInFuture { in_secs: u64 },

    #[error("{}", wrong_issuer_message(found.as_deref(), expected))]
    WrongIssuer {
        found: Option<String>,
        expected: String,
    },

    #[error("{}", wrong_audience_message(found, accepted))]
    WrongAudience {
        found: Vec<String>,
        accepted: Vec<String>,
    },

    #[error(
        "the token has no '{claim}' claim (or it is empty), which this cluster uses as your \
         identity: get a token that includes it, or ask the platform team which scope adds it"
    )]
    MissingSubject { claim: String },

    #[error(
        "the token's '{claim}' claim is not usable as an identity (longer than 256 bytes or \
         contains control characters): ask the platform team to check the identity provider"
    )]
    InvalidSubject { claim: String },

    #[error(
        "the token's email is not verified ('email_verified' is false): verify your email with \
         your identity provider, then get a fresh token"
    )]
    UnverifiedEmail,

    #[error(
        "the token's '{claim}' claim must be a space-separated string or a list of scope names: \
         ask the platform team to check the identity provider's scope mapping"
    )]
    BadScopeClaim { claim: String },

    #[error(
        "token belongs to {token_user}, request made by {requester}: submit with your own token"
    )]
    RequesterMismatch {
        token_user: String,
        requester: String,
    },

    #[error(
        "the identity provider's keys could not be loaded, so no token can be verified: retry \
         shortly, and tell the platform team if it persists"
    )]
    KeysUnavailable,

    #[error(
        "token verification is not configured on this cluster (no 'identity' section): tell the \
         platform team"
    )]
    NotConfigured,
}

impl IdentityError {
    /// A fixed, low-cardinality label for metrics and audit lines.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken { .. } => "missing_token",
            Self::TooLarge { .. } => "too_large",
            Self::Malformed { .. } => "malformed",
            Self::AlgNone | Self::AlgHmac { .. } | Self::AlgNotAllowed { .. } => "alg_not_allowed",
            Self::UnsupportedCritical { .. } => "unsupported_crit",
            Self::NoKid { .. } => "missing_kid",
            Self::UnknownKid { .. } => "unknown_kid",
            Self::UnknownKidKeysStale { .. } => "keys_stale",
            Self::AlgKeyMismatch { .. } => "alg_key_mismatch",
            Self::BadSignature { .. } => "bad_signature",
            Self::MissingExpiry => "missing_exp",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::IssuedInFuture { .. } => "issued_in_future",
            Self::WrongIssuer { .. } => "wrong_issuer",
            Self::WrongAudience { .. } => "wrong_audience",
            Self::MissingSubject { .. } => "missing_subject",
            Self::InvalidSubject { .. } => "invalid_subject",
            Self::UnverifiedEmail => "unverified_email",
            Self::BadScopeClaim { .. } => "bad_scope_claim",
            Self::RequesterMismatch { .. } => "requester_mismatch",
            Self::KeysUnavailable => "keys_unavailable",
            Self::NotConfigured => "not_configured",
        }
    }

    /// The error for an object without the token annotation.
    pub fn missing_token(cfg: &IdentityConfig) -> Self {
        Self::MissingToken {
            annotation: cfg.annotation.clone(),
        }
    }
}

fn no_kid_message(alg: Algorithm, candidates: usize) -> String {
    if candidates == 0 {
        format!(
            "the token names no signing key ('kid') and the identity provider publishes no key for \
             {}: get a fresh token from your identity provider",
            alg.as_str()
        )
    } else {
        format!(
            "the token names no signing key ('kid') and {candidates} published keys fit {}, so \
             the key is ambiguous: get a token whose header names its key",
            alg.as_str()
        )
    }
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn wrong_issuer_message(found: Option<&str>, expected: &str) -> String {
    match found {
        Some(found) => format!(
            "token issuer is '{found}', this cluster trusts '{expected}': get a token from that \
             identity provider"
        ),
        None => format!(
            "the token has no single issuer ('iss'), this cluster trusts '{expected}': get a \
             token from that identity provider"
        ),
    }
}

fn wrong_audience_message(found: &[String], accepted: &[String]) -> String {
    let accepted = quoted_list(accepted);
    if found.is_empty() {
        format!(
            "the token has no audience ('aud'), this cluster accepts {accepted}: request a token \
             for that audience"
        )
    } else {
        let found = found
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "token audience is {found}, this cluster accepts {accepted}: request a token for that \
             audience"
        )
    }
}

/// "45s", "4m", "2h5m", "3d2h": precise enough for a person, stable for tests.
pub fn human(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => match (s % 3600) / 60 {
            0 => format!("{}h", s / 3600),
            m => format!("{}h{m}m", s / 3600),
        },
        s => match (s % 86_400) / 3600 {
            0 => format!("{}d", s / 86_400),
            h => format!("{}d{h}h", s / 86_400),
        },
    }
}

/// A value from the token, made safe to quote: control characters replaced, length capped.
fn fact(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_FACT_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(MAX_FACT_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn malformed(reason: &'static str) -> IdentityError {
    IdentityError::Malformed { reason }
}

/// The parts of the JOSE header sparkward decides on.
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<Vec<String>>,
}

/// Verifies `token` against `keys` and the identity configuration, at time `now_unix`.
pub fn verify_token(
    token: &str,
    keys: &KeySet,
    cfg: &IdentityConfig,
    now_unix: u64,
) -> Result<VerifiedIdentity, IdentityError> {
    let token = check_shape(token, cfg)?;
    let header = read_header(token)?;
    let alg = allowed_algorithm(&header.alg, cfg)?;
    if let Some(names) = header.crit {
        return Err(IdentityError::UnsupportedCritical {
            names: names
                .iter()
                .map(|n| format!("'{}'", fact(n)))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let key = choose_key(keys, header.kid.as_deref(), alg)?;
    let claims = check_signature(token, key, alg, cfg, now_unix)?;
    check_claims(&claims, cfg, now_unix)
}

/// Size, whitespace, and the three-part base64url shape; returns the trimmed token.
fn check_shape<'t>(token: &'t str, cfg: &IdentityConfig) -> Result<&'t str, IdentityError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(IdentityError::TooLarge {
            size: token.len(),
            limit: MAX_TOKEN_BYTES,
        });
    }
    // YAML block scalars and `$(cat token)` leave newlines around the value.
    let token = token.trim();
    if token.is_empty() {
        return Err(IdentityError::missing_token(cfg));
    }
    if token
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
    {
        return Err(malformed(
            "it starts with 'Bearer ': remove that prefix and keep only the token",
        ));
    }
    let dots = token.bytes().filter(|&b| b == b'.').count();
    if dots == 4 {
        return Err(malformed(
            "it is an encrypted token (JWE), only signed tokens (JWS) are accepted",
        ));
    }
    if dots != 2 {
        return Err(malformed("it does not have three parts"));
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(malformed("it contains characters outside base64url"));
    }
    Ok(token)
}

fn read_header(token: &str) -> Result<Header, IdentityError> {
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| malformed("its header is not base64url"))?;
    let mut map: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| malformed("its header is not a JSON object"))?;
    let alg = match map.remove("alg") {
        Some(Value::String(alg)) => alg,
        _ => return Err(malformed("its header has no 'alg'")),
    };
    let kid = match map.remove("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid),
        Some(_) => return Err(malformed("its header 'kid' is not a string")),
    };
    let crit = match map.remove("crit") {
        None => None,
        Some(Value::Array(items)) if !items.is_empty() => Some(
            items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    _ => Err(malformed("its header 'crit' is not a list of names")),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(malformed("its header 'crit' is not a list of names")),
    };
    Ok(Header { alg, kid, crit })
}

fn allowed_algorithm(alg: &str, cfg: &IdentityConfig) -> Result<Algorithm, IdentityError> {
    if alg.eq_ignore_ascii_case("none") {
        return Err(IdentityError::AlgNone);
    }
    if alg.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) {
        return Err(IdentityError::AlgHmac { alg: fact(alg) });
    }
    match Algorithm::parse(alg) {
        Ok(parsed) if cfg.algorithms.contains(&parsed) => Ok(parsed),
        _ => Err(IdentityError::AlgNotAllowed {
            alg: fact(alg),
            allowed: cfg
                .algorithms
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn choose_key<'k>(
    keys: &'k KeySet,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<&'k VerificationKey, IdentityError> {
    keys.select(kid, alg).map_err(|why| match why {
        Selection::UnknownKid => IdentityError::UnknownKid {
            kid: fact(kid.unwrap_or_default()),
        },
        Selection::Mismatch { kind, alg: pinned } => IdentityError::AlgKeyMismatch {
            kid: fact(kid.unwrap_or_default()),
            alg,
            key: match pinned {
                Some(pinned) => format!("{kind} pinned to {}", pinned.as_str()),
                None => kind.to_string(),
            },
        },
        Selection::NoKid { candidates } => IdentityError::NoKid { alg, candidates },
    })
}

/// The signature and the presence of `exp`, `iss`, `aud`, checked by jsonwebtoken with a
/// Validation built for exactly this token's algorithm and this configuration. Time claims are
/// checked afterwards against the injected clock, so jsonwebtoken's wall-clock checks are off.
fn check_signature(
    token: &str,
    key: &VerificationKey,
    alg: Algorithm,
    cfg: &IdentityConfig,
    now_unix: u64,
) -> Result<Map<String, Value>, IdentityError> {
    let mut validation = Validation::new(keys::jwt_algorithm(alg));
    validation.algorithms = vec![keys::jwt_algorithm(alg)];
    validation.set_issuer(&[cfg.issuer.as_str()]);
    validation.set_audience(&cfg.audiences);
    validation.validate_aud = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = cfg.leeway.as_secs();

    match decode::<Map<String, Value>>(token, &key.decoding, &validation) {
        Ok(data) => Ok(data.claims),
        Err(err) => match err.kind() {
            ErrorKind::InvalidSignature => Err(IdentityError::BadSignature {
                kid: key.kid.as_deref().map(fact),
                alg,
            }),
            // jsonwebtoken checks claims only after the signature verified, so these claims are
            // authentic; read them again to say precisely what is wrong.
            ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidIssuer
            | ErrorKind::InvalidAudience => {
                let claims: Map<String, Value> = dangerous::insecure_decode_claims(token)
                    .map_err(|_| malformed("its claims are not a JSON object"))?;
                match check_claims(&claims, cfg, now_unix) {
                    Err(precise) => Err(precise),
                    // Unreachable unless the two readings disagree: deny all the same.
                    Ok(_) => Err(malformed("its issuer or audience claim is not usable")),
                }
            }
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey => Err(IdentityError::AlgKeyMismatch {
                kid: fact(key.kid.as_deref().unwrap_or_default()),
                alg,
                key: key.kind.to_string(),
            }),
            ErrorKind::Base64(_) => Err(malformed("a part is not base64url")),
            ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                Err(malformed("its claims are not a JSON object"))
            }
            ErrorKind::InvalidClaimFormat(_) => Err(malformed("a claim has the wrong type")),
            _ => Err(malformed("it could not be decoded")),
        },
    }
}

/// sparkward's own claim checks, on claims whose signature already verified.
fn check_claims(
    claims: &Map<String, Value>,
    cfg: &IdentityConfig,
    now_unix: u64,
) -> Result<VerifiedIdentity, IdentityError> {
    let issuer = match claims.get("iss") {
        Some(Value::String(iss)) if *iss == cfg.issuer => iss.clone(),
        Some(Value::String(iss)) => {
            return Err(IdentityError::WrongIssuer {
                found: Some(fact(iss)),
                expected: cfg.issuer.clone(),
            });
        }
        _ => {
            return Err(IdentityError::WrongIssuer {
                found: None,
                expected: cfg.issuer.clone(),
            });
        }
    };

    let audience = matched_audience(claims.get("aud"), cfg)?;
    let expires_at = check_time(claims, cfg, now_unix)?;
    let subject = subject(claims, cfg)?;
    let scopes = scopes(claims.get(&cfg.scope_claim), &cfg.scope_claim)?;
    let token_id = match claims.get("jti") {
        None | Some(Value::Null) => None,
        Some(Value::String(jti)) => Some(jti.clone()),
        Some(_) => return Err(malformed("its 'jti' is not a string")),
    };

    Ok(VerifiedIdentity {
        subject,
        issuer,
        token_id,
        scopes,
        audience,
        expires_at,
    })
}

/// `aud` may be one string or a list; the first entry this cluster accepts is the match.
fn matched_audience(aud: Option<&Value>, cfg: &IdentityConfig) -> Result<String, IdentityError> {
    let listed: Vec<&str> = match aud {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if let Some(hit) = listed
        .iter()
        .find(|a| cfg.audiences.iter().any(|c| c == *a))
    {
        return Ok((*hit).to_string());
    }
    Err(IdentityError::WrongAudience {
        found: listed.iter().take(5).map(|a| fact(a)).collect(),
        accepted: cfg.audiences.clone(),
    })
}

/// A NumericDate claim: absent, or seconds since the epoch (fractions are allowed by RFC 7519
/// and rounded down).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, IdentityError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => Ok(Some(secs)),
            (None, Some(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => {
                Ok(Some(f.floor() as u64))
            }
            _ => Err(malformed(
                "a time claim is not a positive number of seconds",
            )),
        },
        Some(_) => Err(malformed("a time claim is not a number of seconds")),
    }
}

/// `exp` (required), `nbf` and `iat` (optional) against `now`, each with the leeway; returns
/// `exp`. Messages report the real distance, without the leeway.
fn check_time(
    claims: &Map<String, Value>,
    cfg: &IdentityConfig,
    now: u64,
) -> Result<u64, IdentityError> {
    let leeway = cfg.leeway.as_secs();
    let exp = numeric_date(claims, "exp")?.ok_or(IdentityError::MissingExpiry)?;
    if now >= exp.saturating_add(leeway) {
        return Err(IdentityError::Expired {
            ago_secs: now - exp,
        });
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(IdentityError::NotYetValid { in_secs: nbf - now });
    }
    if let Some(iat) = numeric_date(claims, "iat")?
        && iat > now.saturating_add(leeway)
    {
        return Err(IdentityError::IssuedInFuture { in_secs: iat - now });
    }
    Ok(exp)
}

fn subject(claims: &Map<String, Value>, cfg: &IdentityConfig) -> Result<String, IdentityError> {
    let claim = &cfg.subject_claim;
    let subject = match claims.get(claim) {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        _ => {
            return Err(IdentityError::MissingSubject {
                claim: claim.clone(),
            });
        }
    };
    if subject.len() > MAX_SUBJECT_BYTES || subject.chars().any(char::is_control) {
        return Err(IdentityError::InvalidSubject {
            claim: claim.clone(),
        });
    }
    // An email the provider says it has not verified could be anybody's: refuse it as an
    // identity. Access tokens often omit `email_verified`; then the provider is trusted.
    if claim == "email" {
        let verified = match claims.get("email_verified") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true",
            Some(_) => false,
        };
        if !verified {
            return Err(IdentityError::UnverifiedEmail);
        }
    }
    Ok(subject.clone())
}

/// Scopes from a space-delimited string (`scope`, RFC 8693) or a list of names (`scp`).
fn scopes(value: Option<&Value>, claim: &str) -> Result<Vec<String>, IdentityError> {
    let bad = || IdentityError::BadScopeClaim {
        claim: claim.to_string(),
    };
    let mut out: Vec<String> = Vec::new();
    let mut add = |scope: &str| {
        if !out.iter().any(|s| s == scope) {
            out.push(scope.to_string());
        }
    };
    match value {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => text.split_ascii_whitespace().for_each(&mut add),
        Some(Value::Array(items)) => {
            for item in items {
                let scope = item.as_str().ok_or_else(bad)?;
                if scope.chars().any(char::is_whitespace) {
                    return Err(bad());
                }
                if !scope.is_empty() {
                    add(scope);
                }
            }
        }
        Some(_) => return Err(bad()),
    }
    Ok(out)
}

/// The job identity the API server's own OIDC login gives a requester, where the namespace
/// opted in (`identity.requesterIdentity`): the subject is the username without the OIDC
/// username prefix, the scopes the `groupScopes` of its OIDC groups (prefix stripped), in
/// configuration order without duplicates, the issuer the configured one. `None` when the
/// namespace did not opt in or the user was not authenticated through that OIDC login (no
/// prefix, or nothing after it).
pub fn requester_identity(
    cfg: &IdentityConfig,
    namespace: &str,
    username: &str,
    groups: &[String],
) -> Option<Submitter> {
    let r = cfg.requester_identity.as_ref()?;
    if !r.namespaces.iter().any(|n| n == namespace) {
        return None;
    }
    let subject = username
        .strip_prefix(r.username_prefix.as_str())
        .filter(|s| !s.is_empty())?;
    let mut scopes: Vec<String> = Vec::new();
    for group in groups {
        let Some(name) = group.strip_prefix(r.groups_prefix.as_str()) else {
            continue;
        };
        for scope in r.group_scopes.get(name).into_iter().flatten() {
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
    }
    Some(Submitter {
        subject: subject.to_string(),
        issuer: cfg.issuer.clone(),
        token_id: None,
        scopes,
    })
}

/// With requester binding enabled, the token's subject (with the configured username prefix)
/// must be the Kubernetes user who made the request: nobody submits with someone else's token.
pub fn check_requester(
    id: &VerifiedIdentity,
    username: &str,
    cfg: &IdentityConfig,
) -> Result<(), IdentityError> {
    let Some(binding) = &cfg.requester_binding else {
        return Ok(());
    };
    let matches = username
        .strip_prefix(binding.username_prefix.as_str())
        .is_some_and(|rest| rest == id.subject);
    if matches {
        return Ok(());
    }
    Err(IdentityError::RequesterMismatch {
        token_user: fact(&format!("{}{}", binding.username_prefix, id.subject)),
        requester: if username.is_empty() {
            "an anonymous user".to_string()
        } else {
            fact(username)
        },
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
    };
    use serde_json::json;

    use super::*;
    use crate::config::{JwksSource, RequesterBinding};

    const NOW: u64 = 1_750_000_000;
    const ISS: &str = "https://idp.example.com/realms/data";

    fn mk_config() -> IdentityConfig {
        IdentityConfig {
            annotation: "sparkward.io/submitter-token".into(),
            issuer: ISS.into(),
            audiences: vec!["sparkward".into()],
            jwks: JwksSource::File {
                path: "/unused".into(),
                refresh: Duration::from_secs(300),
            },
            algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA],
            leeway: Duration::from_secs(30),
            subject_claim: "sub".into(),
            scope_claim: "scope".into(),
            requester_binding: Some(RequesterBinding {
                username_prefix: "oidc:".into(),
            }),
            spark_operator: vec![],
            job_admins: Default::default(),
            kubernetes_controllers: vec![],
            evictors: Default::default(),
            requester_identity: None,
        }
    }

    #[test]
    fn the_api_servers_oidc_login_gives_an_identity_only_where_enabled() {
        use crate::config::RequesterIdentity;
        let mut cfg = mk_config();
        assert_eq!(
            requester_identity(&cfg, "analytics", "oidc:alice", &[]),
            None
        );
        cfg.requester_identity = Some(RequesterIdentity {
            namespaces: vec!["analytics".into()],
            username_prefix: "oidc:".into(),
            groups_prefix: "oidc:".into(),
            group_scopes: std::collections::BTreeMap::from([
                ("readers".to_string(), vec!["data:read".to_string()]),
                (
                    "streamers".to_string(),
                    vec!["stream:x".to_string(), "data:read".to_string()],
                ),
            ]),
        });
        let groups: Vec<String> = [
            "oidc:readers",
            "oidc:streamers",
            "readers",
            "system:authenticated",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let got = requester_identity(&cfg, "analytics", "oidc:alice", &groups).unwrap();
        assert_eq!(got.subject, "alice");
        assert_eq!(got.issuer, ISS);
        assert_eq!(got.token_id, None);
        assert_eq!(
            got.scopes,
            vec!["data:read".to_string(), "stream:x".to_string()]
        );
        // Another namespace, a name without the OIDC prefix (a certificate, a service
        // account), or the bare prefix: no identity.
        assert_eq!(
            requester_identity(&cfg, "spark-jobs", "oidc:alice", &groups),
            None
        );
        assert_eq!(
            requester_identity(&cfg, "analytics", "alice", &groups),
            None
        );
        assert_eq!(
            requester_identity(
                &cfg,
                "analytics",
                "system:serviceaccount:analytics:spark",
                &groups
            ),
            None
        );
        assert_eq!(
            requester_identity(&cfg, "analytics", "oidc:", &groups),
            None
        );
    }

    fn b64u(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Two Ed25519 keys ("ed-1" published, "ed-2" also published) and one EC P-256 key.
    struct Keys {
        ed: Ed25519KeyPair,
        ec: EcdsaKeyPair,
        set: KeySet,
    }

    fn mk_keys() -> Keys {
        let ed = Ed25519KeyPair::generate().unwrap();
        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = ec.public_key().as_ref().to_vec();
        let jwks = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": b64u(ed.public_key().as_ref())},
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256",
             "x": b64u(&point[1..33]), "y": b64u(&point[33..])},
        ]});
        let set = KeySet::from_jwks_json(jwks.to_string().as_bytes()).unwrap();
        Keys { ed, ec, set }
    }

    fn mk_claims() -> Value {
        json!({
            "iss": ISS, "aud": "sparkward", "sub": "alice", "exp": NOW + 600, "iat": NOW - 10,
            "jti": "t-1", "scope": "data:read:postgres-main openid data:read:postgres-main",
        })
    }

    fn mk_unsigned(header: &Value, claims: &Value) -> String {
        format!(
            "{}.{}",
            b64u(header.to_string().as_bytes()),
            b64u(claims.to_string().as_bytes())
        )
    }

    fn mk_ed_token(keys: &Keys, header: &Value, claims: &Value) -> String {
        let input = mk_unsigned(header, claims);
        let sig = keys.ed.sign(input.as_bytes());
        format!("{input}.{}", b64u(sig.as_ref()))
    }

    fn mk_token(keys: &Keys, claims: &Value) -> String {
        mk_ed_token(
            keys,
            &json!({"alg": "EdDSA", "kid": "ed-1", "typ": "JWT"}),
            claims,
        )
    }

    fn verify(token: &str, keys: &Keys) -> Result<VerifiedIdentity, IdentityError> {
        verify_token(token, &keys.set, &mk_config(), NOW)
    }

    #[test]
    fn accepts_a_valid_token_and_reads_its_identity() {
        let keys = mk_keys();
        let id = verify(&mk_token(&keys, &mk_claims()), &keys).unwrap();
        assert_eq!(
            id,
            VerifiedIdentity {
                subject: "alice".into(),
                issuer: ISS.into(),
                token_id: Some("t-1".into()),
                scopes: vec!["data:read:postgres-main".into(), "openid".into()],
                audience: "sparkward".into(),
                expires_at: NOW + 600,
            }
        );
    }

    #[test]
    fn accepts_an_es256_token_with_a_pinned_key() {
        let keys = mk_keys();
        let input = mk_unsigned(&json!({"alg": "ES256", "kid": "ec-1"}), &mk_claims());
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = keys.ec.sign(&rng, input.as_bytes()).unwrap();
        let token = format!("{input}.{}", b64u(sig.as_ref()));
        assert_eq!(verify(&token, &keys).unwrap().subject, "alice");
    }

    #[test]
    fn checks_claims_in_a_table() {
        type Edit = fn(&mut Value);
        let cases: Vec<(&str, Edit, Result<(), IdentityError>)> = vec![
            ("valid", |_| {}, Ok(())),
            (
                "expired 4 minutes ago",
                |c| c["exp"] = json!(NOW - 240),
                Err(IdentityError::Expired { ago_secs: 240 }),
            ),
            (
                "expired within leeway",
                |c| c["exp"] = json!(NOW - 20),
                Ok(()),
            ),
            (
                "expires exactly at the end of the leeway",
                |c| c["exp"] = json!(NOW - 30),
                Err(IdentityError::Expired { ago_secs: 30 }),
            ),
            (
                "fractional exp",
                |c| c["exp"] = json!((NOW + 60) as f64 + 0.5),
                Ok(()),
            ),
            (
                "no exp",
                |c| {
                    c.as_object_mut().unwrap().remove("exp");
                },
                Err(IdentityError::MissingExpiry),
            ),
            (
                "exp as text",
                |c| c["exp"] = json!("soon"),
                Err(IdentityError::Malformed {
                    reason: "a time claim is not a number of seconds",
                }),
            ),
            (
                "nbf in 2 minutes",
                |c| c["nbf"] = json!(NOW + 120),
                Err(IdentityError::NotYetValid { in_secs: 120 }),
            ),
            ("nbf within leeway", |c| c["nbf"] = json!(NOW + 30), Ok(())),
            (
                "iat in 1 hour",
                |c| c["iat"] = json!(NOW + 3600),
                Err(IdentityError::IssuedInFuture { in_secs: 3600 }),
            ),
            ("iat within leeway", |c| c["iat"] = json!(NOW + 25), Ok(())),
            (
                "wrong issuer",
                |c| c["iss"] = json!("https://evil.example.com"),
                Err(IdentityError::WrongIssuer {
                    found: Some("https://evil.example.com".into()),
                    expected: ISS.into(),
                }),
            ),
            (
                "issuer with trailing slash",
                |c| c["iss"] = json!(format!("{ISS}/")),
                Err(IdentityError::WrongIssuer {
                    found: Some(format!("{ISS}/")),
                    expected: ISS.into(),
                }),
            ),
            (
                "issuer list",
                |c| c["iss"] = json!([ISS]),
                Err(IdentityError::WrongIssuer {
                    found: None,
                    expected: ISS.into(),
                }),
            ),
            (
                "no issuer",
                |c| {
                    c.as_object_mut().unwrap().remove("iss");
                },
                Err(IdentityError::WrongIssuer {
                    found: None,
                    expected: ISS.into(),
                }),
            ),
            (
                "wrong audience",
                |c| c["aud"] = json!("account"),
                Err(IdentityError::WrongAudience {
                    found: vec!["account".into()],
                    accepted: vec!["sparkward".into()],
                }),
            ),
            (
                "audience list with ours",
                |c| c["aud"] = json!(["account", "sparkward"]),
                Ok(()),
            ),
            (
                "no audience",
                |c| {
                    c.as_object_mut().unwrap().remove("aud");
                },
                Err(IdentityError::WrongAudience {
                    found: vec![],
                    accepted: vec!["sparkward".into()],
                }),
            ),
            (
                "no subject",
                |c| {
                    c.as_object_mut().unwrap().remove("sub");
                },
                Err(IdentityError::MissingSubject {
                    claim: "sub".into(),
                }),
            ),
            (
                "blank subject",
                |c| c["sub"] = json!("  "),
                Err(IdentityError::MissingSubject {
                    claim: "sub".into(),
                }),
            ),
            (
                "numeric subject",
                |c| c["sub"] = json!(42),
                Err(IdentityError::MissingSubject {
                    claim: "sub".into(),
                }),
            ),
            (
                "subject with a newline",
                |c| c["sub"] = json!("alice\nadmin"),
                Err(IdentityError::InvalidSubject {
                    claim: "sub".into(),
                }),
            ),
            (
                "no scope",
                |c| {
                    c.as_object_mut().unwrap().remove("scope");
                },
                Ok(()),
            ),
            (
                "scope as number",
                |c| c["scope"] = json!(7),
                Err(IdentityError::BadScopeClaim {
                    claim: "scope".into(),
                }),
            ),
            (
                "jti as object",
                |c| c["jti"] = json!({}),
                Err(IdentityError::Malformed {
                    reason: "its 'jti' is not a string",
                }),
            ),
        ];
        let keys = mk_keys();
        for (name, edit, want) in cases {
            let mut claims = mk_claims();
            edit(&mut claims);
            let got = verify(&mk_token(&keys, &claims), &keys).map(|_| ());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn reads_scopes_from_a_string_or_a_list() {
        type Case = (Option<Value>, Result<Vec<&'static str>, ()>);
        let cases: Vec<Case> = vec![
            (None, Ok(vec![])),
            (Some(json!(null)), Ok(vec![])),
            (Some(json!("a  b\tc a")), Ok(vec!["a", "b", "c"])),
            (Some(json!(["a", "b", "", "a"])), Ok(vec!["a", "b"])),
            (Some(json!(["a b"])), Err(())),
            (Some(json!(["a", 1])), Err(())),
            (Some(json!(true)), Err(())),
        ];
        for (value, want) in cases {
            let got = scopes(value.as_ref(), "scp").map_err(|_| ());
            let want = want.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(got, want, "{value:?}");
        }
    }

    #[test]
    fn uses_the_configured_subject_claim_and_refuses_unverified_email() {
        let keys = mk_keys();
        let mut cfg = mk_config();
        cfg.subject_claim = "email".into();
        cfg.scope_claim = "scp".into();
        let mut claims = mk_claims();
        claims["email"] = json!("alice@example.com");
        claims["scp"] = json!(["x", "y"]);
        let id = verify_token(&mk_token(&keys, &claims), &keys.set, &cfg, NOW).unwrap();
        assert_eq!(id.subject, "alice@example.com");
        assert_eq!(id.scopes, vec!["x", "y"]);

        claims["email_verified"] = json!(false);
        assert_eq!(
            verify_token(&mk_token(&keys, &claims), &keys.set, &cfg, NOW),
            Err(IdentityError::UnverifiedEmail)
        );
    }

    #[test]
    fn refuses_bad_headers_before_looking_at_keys() {
        let keys = mk_keys();
        let claims = mk_claims();
        let cases: Vec<(Value, IdentityError)> = vec![
            (json!({"alg": "none"}), IdentityError::AlgNone),
            (
                json!({"alg": "NONE", "kid": "ed-1"}),
                IdentityError::AlgNone,
            ),
            (
                json!({"alg": "HS256", "kid": "ed-1"}),
                IdentityError::AlgHmac {
                    alg: "HS256".into(),
                },
            ),
            (
                json!({"alg": "ES512", "kid": "ed-1"}),
                IdentityError::AlgNotAllowed {
                    alg: "ES512".into(),
                    allowed: "RS256, ES256, EdDSA".into(),
                },
            ),
            (
                json!({"alg": "PS256", "kid": "ed-1"}),
                IdentityError::AlgNotAllowed {
                    alg: "PS256".into(),
                    allowed: "RS256, ES256, EdDSA".into(),
                },
            ),
            (
                json!({"kid": "ed-1"}),
                IdentityError::Malformed {
                    reason: "its header has no 'alg'",
                },
            ),
            (
                json!({"alg": "EdDSA", "kid": 7}),
                IdentityError::Malformed {
                    reason: "its header 'kid' is not a string",
                },
            ),
            (
                json!({"alg": "EdDSA", "kid": "ed-1", "crit": ["b64"], "b64": false}),
                IdentityError::UnsupportedCritical {
                    names: "'b64'".into(),
                },
            ),
            (
                json!({"alg": "EdDSA", "kid": "ed-1", "crit": "exp"}),
                IdentityError::Malformed {
                    reason: "its header 'crit' is not a list of names",
                },
            ),
            (
                json!({"alg": "EdDSA", "kid": "ed-9"}),
                IdentityError::UnknownKid { kid: "ed-9".into() },
            ),
            (
                json!({"alg": "ES256", "kid": "ed-1"}),
                IdentityError::AlgKeyMismatch {
                    kid: "ed-1".into(),
                    alg: Algorithm::ES256,
                    key: "an Ed25519 key (EdDSA only)".into(),
                },
            ),
            (
                json!({"alg": "RS256"}),
                IdentityError::NoKid {
                    alg: Algorithm::RS256,
                    candidates: 0,
                },
            ),
        ];
        for (header, want) in cases {
            let token = mk_ed_token(&keys, &header, &claims);
            assert_eq!(verify(&token, &keys), Err(want), "{header}");
        }
    }

    #[test]
    fn accepts_a_token_without_kid_when_exactly_one_key_fits() {
        let keys = mk_keys();
        let token = mk_ed_token(&keys, &json!({"alg": "EdDSA"}), &mk_claims());
        assert!(verify(&token, &keys).is_ok());
    }

    #[test]
    fn ignores_embedded_keys_in_the_header() {
        // A token carrying its own key (`jwk`) must still verify against the JWKS only.
        let keys = mk_keys();
        let attacker = Ed25519KeyPair::generate().unwrap();
        let header = json!({"alg": "EdDSA", "kid": "ed-1",
            "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64u(attacker.public_key().as_ref())}});
        let input = mk_unsigned(&header, &mk_claims());
        let token = format!("{input}.{}", b64u(attacker.sign(input.as_bytes()).as_ref()));
        assert_eq!(
            verify(&token, &keys),
            Err(IdentityError::BadSignature {
                kid: Some("ed-1".into()),
                alg: Algorithm::EdDSA
            })
        );
    }

    #[test]
    fn refuses_malformed_and_oversized_input() {
        let keys = mk_keys();
        let cfg = mk_config();
        let valid = mk_token(&keys, &mk_claims());
        let mut parts = valid.split('.');
        let (h, p) = (parts.next().unwrap(), parts.next().unwrap());
        let huge = "a".repeat(1024 * 1024);
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "missing_token"),
            (" \n".into(), "missing_token"),
            (huge, "too_large"),
            ("not a token".into(), "malformed"),
            (format!("Bearer {valid}"), "malformed"),
            (format!("{h}.{p}"), "malformed"),
            (format!("{h}.{p}.{p}.{p}.{p}"), "malformed"),
            (format!("{h}.{p}.s+g="), "malformed"),
            (format!("{h}.{p}.é"), "malformed"),
            ("....".into(), "malformed"),
            ("e30.e30.".into(), "malformed"),
            (format!("{}.{p}.", b64u(b"[1]")), "malformed"),
            // Signature first: an unsigned payload never gets as far as being parsed.
            (format!("{h}.{}.AA", b64u(b"not json")), "bad_signature"),
            (format!("{h}.{}.AA", b64u(b"{}")), "bad_signature"),
        ];
        for (token, code) in cases {
            let err = verify_token(&token, &keys.set, &cfg, NOW).unwrap_err();
            assert_eq!(err.code(), code, "{token:.60}: {err}");
        }
        // A correctly signed payload that is not a JSON object.
        let input = format!("{h}.{}", b64u(b"not json"));
        let token = format!("{input}.{}", b64u(keys.ed.sign(input.as_bytes()).as_ref()));
        assert_eq!(
            verify_token(&token, &keys.set, &cfg, NOW),
            Err(IdentityError::Malformed {
                reason: "its claims are not a JSON object"
            })
        );
        // Surrounding whitespace (a YAML block scalar) is tolerated.
        assert!(verify_token(&format!("\n{valid}\n"), &keys.set, &cfg, NOW).is_ok());
    }

    #[test]
    fn refuses_a_tampered_payload() {
        let keys = mk_keys();
        let token = mk_token(&keys, &mk_claims());
        let sig = token.rsplit('.').next().unwrap();
        let mut claims = mk_claims();
        claims["sub"] = json!("admin");
        let forged = format!(
            "{}.{sig}",
            mk_unsigned(&json!({"alg": "EdDSA", "kid": "ed-1"}), &claims)
        );
        assert_eq!(verify(&forged, &keys).unwrap_err().code(), "bad_signature");
    }

    #[test]
    fn binds_the_token_to_the_requesting_user() {
        let id = VerifiedIdentity {
            subject: "alice".into(),
            issuer: ISS.into(),
            token_id: None,
            scopes: vec![],
            audience: "sparkward".into(),
            expires_at: NOW,
        };
        let mut cfg = mk_config();
        assert_eq!(check_requester(&id, "oidc:alice", &cfg), Ok(()));
        let err = check_requester(&id, "oidc:bob", &cfg).unwrap_err();
        assert_eq!(
            err.to_string(),
            "token belongs to oidc:alice, request made by oidc:bob: submit with your own token"
        );
        assert_eq!(err.code(), "requester_mismatch");
        assert!(check_requester(&id, "alice", &cfg).is_err());
        assert!(check_requester(&id, "oidc:alice2", &cfg).is_err());
        cfg.requester_binding = Some(RequesterBinding {
            username_prefix: String::new(),
        });
        assert_eq!(check_requester(&id, "alice", &cfg), Ok(()));
        cfg.requester_binding = None;
        assert_eq!(
            check_requester(&id, "system:serviceaccount:x:y", &cfg),
            Ok(())
        );
    }

    #[test]
    fn messages_name_the_cause_and_the_fix() {
        let cfg = mk_config();
        let cases: Vec<(IdentityError, &str)> = vec![
            (
                IdentityError::Expired { ago_secs: 250 },
                "token expired 4m ago: get a fresh token and resubmit",
            ),
            (
                IdentityError::WrongAudience {
                    found: vec!["x".into()],
                    accepted: vec!["sparkward".into()],
                },
                "token audience is 'x', this cluster accepts 'sparkward': request a token for that audience",
            ),
            (
                IdentityError::missing_token(&cfg),
                "no submitter token: add your OAuth 2.0 access token as \
                 metadata.annotations[\"sparkward.io/submitter-token\"], or with spark-submit pass \
                 --conf spark.kubernetes.driver.annotation.sparkward.io/submitter-token=$TOKEN",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
        assert!(
            IdentityError::AlgNone
                .to_string()
                .contains("'alg: none' attack")
        );
        assert!(
            IdentityError::AlgHmac {
                alg: "HS256".into()
            }
            .to_string()
            .contains("algorithm confusion attack")
        );
        assert!(
            IdentityError::KeysUnavailable
                .to_string()
                .contains("retry shortly")
        );
    }

    #[test]
    fn formats_durations_for_people() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (250, "4m"),
            (3600, "1h"),
            (3900, "1h5m"),
            (86_400, "1d"),
            (90_000, "1d1h"),
        ];
        for (secs, want) in cases {
            assert_eq!(human(secs), want);
        }
    }

    #[test]
    fn quotes_token_values_safely() {
        assert_eq!(fact("a\u{1b}[31mb"), "a?[31mb");
        let long = "x".repeat(500);
        assert_eq!(fact(&long).chars().count(), MAX_FACT_CHARS + 1);
    }
}
