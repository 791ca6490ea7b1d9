//! The admission stamp: how sparkward recognises, in a later webhook call of the same API
//! request, an identity that its own mutating call wrote.
//!
//! The API server gives every webhook call its own `request.uid` (the mutating call, each
//! re-invocation and each validating call differ), so nothing in the review links the calls of
//! one request. The mutating call therefore writes `sparkward.io/stamp` next to the identity it
//! derived: an HMAC-SHA256, under a key shared by all replicas, over
//!
//! - what the stamp binds to: the object's kind (group + kind), namespace and name (or its
//!   `generateName` prefix when the name is not assigned yet), the requester (username, uid and
//!   the pod a service-account token is bound to), whether the request is a dry run, the
//!   identity source, and an expiry (`stamp.validity` after the mutating call);
//! - what it attests: every `sparkward.io/` label and annotation sparkward wrote on the object
//!   (job id, user, role, submitter, issuer, token id, scopes, policy, schedule id).
//!
//! A later call recomputes the MAC from *its own* request and the final object and compares in
//! constant time. So a stamp copied onto another object, kind, namespace or requester, an
//! edited identity, a dry-run stamp in a real request, an expired stamp, and a stamp made under
//! a key that has since been removed all fail. Verification is pure and local: no API call.
//!
//! Wire form: `v1.<key id>.<expiry unix seconds>.<flags>.<source>.<mac, base64url>`, where
//! `flags` holds `d` (dry run) and `g` (bound to the generateName prefix), or `-` for none.
//!
//! Residual (documented in the README): within its validity a stamp can be replayed only by the
//! same requester onto an object of the same kind, namespace and name (after deleting the
//! original) or the same generateName, and then carries exactly the identity sparkward verified
//! for that requester moments before.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::core::labels::{PREFIX, STAMP_ANNOTATION};

/// Version tag of the wire form and of the MAC input.
const VERSION: &str = "v1";
/// Shortest key accepted (256 bits).
const MIN_KEY_BYTES: usize = 32;
/// Longest key id.
const MAX_KEY_ID: usize = 16;
/// How far a stamp's issue time may lie in the future (clock skew between replicas).
const SKEW_SECS: u64 = 5;

/// Why a key file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampKeyError {
    #[error("the stamp key file holds no key (one 'id:base64key' per line, the first one signs)")]
    Empty,
    #[error("stamp key file line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// One named HMAC key.
struct NamedKey {
    id: String,
    key: hmac::Key,
}

/// The keys stamps are made and checked with. The first key signs; every key verifies, so a
/// new key can be rolled out to all replicas before it signs, and an old one kept until the
/// stamps it made have expired.
pub struct StampKeys {
    keys: Vec<NamedKey>,
    fingerprint: String,
}

impl fmt::Debug for StampKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("StampKeys")
            .field("ids", &self.ids())
            .finish()
    }
}

impl StampKeys {
    /// Parses a key file: one `id:base64key` per line (standard or URL-safe base64, at least 32
    /// bytes), `#` comments and blank lines ignored, ids unique, `[a-z0-9-]`, at most 16
    /// characters.
    pub fn parse(text: &str) -> Result<Self, StampKeyError> {
        let mut keys: Vec<NamedKey> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: String| StampKeyError::Line {
                line: i + 1,
                reason,
            };
            let (id, b64) = line
                .split_once(':')
                .ok_or_else(|| err("expected 'id:base64key'".into()))?;
            let (id, b64) = (id.trim(), b64.trim());
            if id.is_empty()
                || id.len() > MAX_KEY_ID
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(err(format!(
                    "key id '{id}' must be 1-{MAX_KEY_ID} characters of a-z, 0-9 and '-'"
                )));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(err(format!("key id '{id}' appears twice")));
            }
            let bytes = STANDARD
                .decode(b64)
                .or_else(|_| URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')))
                .map_err(|_| err(format!("the key of '{id}' is not base64")))?;
            if bytes.len() < MIN_KEY_BYTES {
                return Err(err(format!(
                    "the key of '{id}' has {} bytes; use at least {MIN_KEY_BYTES} random bytes",
                    bytes.len()
                )));
            }
            keys.push(NamedKey {
                id: id.to_string(),
                key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            });
        }
        if keys.is_empty() {
            return Err(StampKeyError::Empty);
        }
        let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
        Ok(Self {
            fingerprint: ids.join(","),
            keys,
        })
    }

    /// A key-file line for a new key from 32 random bytes.
    pub fn line_for(id: &str, random: &[u8; 32]) -> String {
        format!("{id}:{}", STANDARD.encode(random))
    }

    /// Key ids in file order (the first signs).
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// The ids, for logs ("which keys are loaded"); never key material.
    pub fn describe(&self) -> &str {
        &self.fingerprint
    }

    /// 13 bytes derived from `input` under the signing key for `purpose`: the same input gives
    /// the same bytes (so a retried webhook call, which repeats its uid, gets the same job id and
    /// re-applies the same policy), and nobody without the key can predict them.
    pub fn derive(&self, purpose: &str, input: &str) -> [u8; 13] {
        let mut buf = Vec::with_capacity(64);
        push(&mut buf, b"sparkward-derive");
        push(&mut buf, purpose.as_bytes());
        push(&mut buf, input.as_bytes());
        let tag = hmac::sign(&self.signing().key, &buf);
        let mut out = [0u8; 13];
        out.copy_from_slice(&tag.as_ref()[..13]);
        out
    }

    fn signing(&self) -> &NamedKey {
        // `parse` guarantees at least one key.
        &self.keys[0]
    }

    fn by_id(&self, id: &str) -> Option<&NamedKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

/// How the object's name is known to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundName<'a> {
    /// `metadata.name` (or `request.name`).
    Named(&'a str),
    /// Not assigned yet: the `generateName` prefix (the API server resolves it after the
    /// mutating webhooks).
    Generated(&'a str),
}

/// What a stamp is bound to: facts of the API request that every webhook call of it shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    /// `group/Kind` (`/Pod` for the core group): the version may differ between calls.
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: BoundName<'a>,
    pub username: &'a str,
    pub user_uid: &'a str,
    /// The pod a service-account token is bound to (name, uid), empty otherwise.
    pub bound_pod: (&'a str, &'a str),
    pub dry_run: bool,
}

/// Where the stamped identity came from (recorded in the stamp, for the validating pass and the
/// audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Token,
    Operator,
    CreatorPod,
    Schedule,
    /// The API server's own OIDC login of the requester (`identity.requesterIdentity`).
    Requester,
}

impl Source {
    fn code(self) -> char {
        match self {
            Source::Token => 't',
            Source::Operator => 'o',
            Source::CreatorPod => 'p',
            Source::Schedule => 's',
            Source::Requester => 'r',
        }
    }

    fn from_code(c: &str) -> Option<Self> {
        Some(match c {
            "t" => Source::Token,
            "o" => Source::Operator,
            "p" => Source::CreatorPod,
            "s" => Source::Schedule,
            "r" => Source::Requester,
            _ => return None,
        })
    }

    /// The audit name of the source.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Token => "token",
            Source::Operator => "operator",
            Source::CreatorPod => "creator-pod",
            Source::Schedule => "schedule",
            Source::Requester => "requester",
        }
    }
}

/// A stamp that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub key_id: String,
    pub expires: u64,
    pub source: Source,
}

/// Why a stamp did not verify. Each message says what is wrong in terms a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error("it is not a sparkward stamp")]
    Malformed,
    #[error("it was made with key '{0}', which this sparkward does not hold (rotated out)")]
    UnknownKey(String),
    #[error("it expired {0} s ago")]
    Expired(u64),
    #[error("its expiry lies further in the future than any stamp sparkward makes")]
    FromTheFuture,
    #[error("it was made for a dry run, and this request is not one (or the reverse)")]
    DryRunMismatch,
    #[error("it was made for an unassigned name, but this object's name is set")]
    NameAssigned,
    #[error(
        "it does not match this object, namespace, kind and requester, or the sparkward.io/ \
         identity it covers was changed"
    )]
    Mismatch,
}

/// The `sparkward.io/` entries a stamp covers: every one sparkward wrote, except the token
/// input and the stamp itself.
pub fn covered<'m>(
    labels: impl IntoIterator<Item = (&'m str, &'m str)>,
    annotations: impl IntoIterator<Item = (&'m str, &'m str)>,
    token_annotation: &str,
) -> Covered<'m> {
    let pick = |k: &str| k.starts_with(PREFIX) && k != token_annotation && k != STAMP_ANNOTATION;
    Covered {
        labels: labels.into_iter().filter(|(k, _)| pick(k)).collect(),
        annotations: annotations.into_iter().filter(|(k, _)| pick(k)).collect(),
    }
}

/// The attested entries, sorted by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Covered<'m> {
    pub labels: BTreeMap<&'m str, &'m str>,
    pub annotations: BTreeMap<&'m str, &'m str>,
}

fn push(buf: &mut Vec<u8>, field: &[u8]) {
    // Length-prefixed, so no choice of field contents can make two inputs collide.
    buf.extend_from_slice(&(field.len() as u32).to_be_bytes());
    buf.extend_from_slice(field);
}

fn mac_input(
    key_id: &str,
    expires: u64,
    flags: &str,
    source: Source,
    b: &Binding<'_>,
    c: &Covered<'_>,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(512);
    push(&mut buf, b"sparkward-stamp");
    push(&mut buf, VERSION.as_bytes());
    push(&mut buf, key_id.as_bytes());
    push(&mut buf, expires.to_string().as_bytes());
    push(&mut buf, flags.as_bytes());
    push(&mut buf, source.code().to_string().as_bytes());
    push(&mut buf, b.kind.as_bytes());
    push(&mut buf, b.namespace.as_bytes());
    match b.name {
        BoundName::Named(n) => {
            push(&mut buf, b"name");
            push(&mut buf, n.as_bytes());
        }
        BoundName::Generated(g) => {
            push(&mut buf, b"generateName");
            push(&mut buf, g.as_bytes());
        }
    }
    push(&mut buf, b.username.as_bytes());
    push(&mut buf, b.user_uid.as_bytes());
    push(&mut buf, b.bound_pod.0.as_bytes());
    push(&mut buf, b.bound_pod.1.as_bytes());
    push(&mut buf, &(c.labels.len() as u32).to_be_bytes());
    for (k, v) in &c.labels {
        push(&mut buf, k.as_bytes());
        push(&mut buf, v.as_bytes());
    }
    push(&mut buf, &(c.annotations.len() as u32).to_be_bytes());
    for (k, v) in &c.annotations {
        push(&mut buf, k.as_bytes());
        push(&mut buf, v.as_bytes());
    }
    buf
}

fn flags_of(b: &Binding<'_>) -> String {
    let mut f = String::new();
    if b.dry_run {
        f.push('d');
    }
    if matches!(b.name, BoundName::Generated(_)) {
        f.push('g');
    }
    if f.is_empty() {
        f.push('-');
    }
    f
}

/// Makes the stamp for `covered` written in the request `binding`, valid until `expires` (unix
/// seconds).
pub fn seal(
    keys: &StampKeys,
    binding: &Binding<'_>,
    source: Source,
    covered: &Covered<'_>,
    expires: u64,
) -> String {
    let key = keys.signing();
    let flags = flags_of(binding);
    let input = mac_input(&key.id, expires, &flags, source, binding, covered);
    let tag = hmac::sign(&key.key, &input);
    format!(
        "{VERSION}.{}.{expires}.{flags}.{}.{}",
        key.id,
        source.code(),
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// The parts of a stamp before it is checked.
struct Parts<'s> {
    key_id: &'s str,
    expires: u64,
    flags: &'s str,
    source: Source,
    tag: Vec<u8>,
}

fn split(stamp: &str) -> Result<Parts<'_>, StampError> {
    let mut it = stamp.split('.');
    let (Some(VERSION), Some(key_id), Some(expires), Some(flags), Some(source), Some(tag), None) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) else {
        return Err(StampError::Malformed);
    };
    let expires = expires.parse().map_err(|_| StampError::Malformed)?;
    if !(flags == "-" || (!flags.is_empty() && flags.chars().all(|c| c == 'd' || c == 'g'))) {
        return Err(StampError::Malformed);
    }
    let source = Source::from_code(source).ok_or(StampError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| StampError::Malformed)?;
    Ok(Parts {
        key_id,
        expires,
        flags,
        source,
        tag,
    })
}

/// Whether a stamp was made for an unassigned name (its `g` flag), before it is verified: the
/// caller needs it to choose the binding's name.
pub fn bound_to_generated_name(stamp: &str) -> bool {
    split(stamp).is_ok_and(|p| p.flags.contains('g'))
}

/// Checks `stamp` against this call's request and the object's attested entries at `now`
/// (unix seconds). `validity` is the longest lifetime sparkward gives a stamp.
pub fn open(
    keys: &StampKeys,
    stamp: &str,
    binding: &Binding<'_>,
    covered: &Covered<'_>,
    now: u64,
    validity: u64,
) -> Result<Opened, StampError> {
    let p = split(stamp)?;
    let key = keys
        .by_id(p.key_id)
        .ok_or_else(|| StampError::UnknownKey(p.key_id.to_string()))?;
    if p.flags.contains('d') != binding.dry_run {
        return Err(StampError::DryRunMismatch);
    }
    if p.flags.contains('g') != matches!(binding.name, BoundName::Generated(_)) {
        return Err(match binding.name {
            BoundName::Named(_) => StampError::NameAssigned,
            BoundName::Generated(_) => StampError::Mismatch,
        });
    }
    let input = mac_input(p.key_id, p.expires, p.flags, p.source, binding, covered);
    hmac::verify(&key.key, &input, &p.tag).map_err(|_| StampError::Mismatch)?;
    // Time is checked after the MAC, so the expiry is known to be sparkward's own.
    if now > p.expires {
        return Err(StampError::Expired(now - p.expires));
    }
    if p.expires > now.saturating_add(validity).saturating_add(SKEW_SECS) {
        return Err(StampError::FromTheFuture);
    }
    Ok(Opened {
        key_id: p.key_id.to_string(),
        expires: p.expires,
        source: p.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    const NOW: u64 = 1_800_000_000;

    fn keys(text: &str) -> StampKeys {
        StampKeys::parse(text).unwrap()
    }

    fn binding() -> Binding<'static> {
        Binding {
            kind: "sparkoperator.k8s.io/SparkApplication",
            namespace: "spark-jobs",
            name: BoundName::Named("etl"),
            username: "oidc:alice",
            user_uid: "",
            bound_pod: ("", ""),
            dry_run: false,
        }
    }

    fn covered_of(pairs: &[(&'static str, &'static str)]) -> Covered<'static> {
        covered(
            pairs.iter().copied().filter(|(k, _)| k.ends_with("job-id")),
            pairs
                .iter()
                .copied()
                .filter(|(k, _)| !k.ends_with("job-id")),
            "sparkward.io/submitter-token",
        )
    }

    fn identity() -> Covered<'static> {
        covered_of(&[
            ("sparkward.io/job-id", "sj-aaaaaaaaaaaaaaaaaaaa"),
            ("sparkward.io/submitter", "alice"),
            ("sparkward.io/scopes", "data:read"),
        ])
    }

    #[test]
    fn a_stamp_opens_for_the_request_it_was_made_in() {
        let k = keys(K1);
        let s = seal(&k, &binding(), Source::Token, &identity(), NOW + 60);
        assert!(s.starts_with("v1.k1."), "{s}");
        let opened = open(&k, &s, &binding(), &identity(), NOW, 60).unwrap();
        assert_eq!(opened.source, Source::Token);
        assert_eq!(opened.key_id, "k1");
    }

    #[test]
    fn a_stamp_does_not_open_anywhere_else() {
        let k = keys(K1);
        let s = seal(&k, &binding(), Source::Token, &identity(), NOW + 60);
        let cases: Vec<(&str, Binding<'static>)> = vec![
            (
                "other name",
                Binding {
                    name: BoundName::Named("etl2"),
                    ..binding()
                },
            ),
            (
                "other namespace",
                Binding {
                    namespace: "team-b",
                    ..binding()
                },
            ),
            (
                "other kind",
                Binding {
                    kind: "/Pod",
                    ..binding()
                },
            ),
            (
                "other requester",
                Binding {
                    username: "oidc:mallory",
                    ..binding()
                },
            ),
            (
                "other requester uid",
                Binding {
                    user_uid: "u-2",
                    ..binding()
                },
            ),
            (
                "bound to another pod",
                Binding {
                    bound_pod: ("driver-b", "uid-b"),
                    ..binding()
                },
            ),
        ];
        for (what, b) in cases {
            assert_eq!(
                open(&k, &s, &b, &identity(), NOW, 60),
                Err(StampError::Mismatch),
                "{what}"
            );
        }
    }

    #[test]
    fn an_edited_identity_breaks_the_stamp() {
        let k = keys(K1);
        let s = seal(&k, &binding(), Source::Token, &identity(), NOW + 60);
        let edited = covered_of(&[
            ("sparkward.io/job-id", "sj-aaaaaaaaaaaaaaaaaaaa"),
            ("sparkward.io/submitter", "alice"),
            ("sparkward.io/scopes", "data:read data:write"),
        ]);
        assert_eq!(
            open(&k, &s, &binding(), &edited, NOW, 60),
            Err(StampError::Mismatch)
        );
        let added = covered_of(&[
            ("sparkward.io/job-id", "sj-aaaaaaaaaaaaaaaaaaaa"),
            ("sparkward.io/submitter", "alice"),
            ("sparkward.io/scopes", "data:read"),
            ("sparkward.io/extra", "x"),
        ]);
        assert_eq!(
            open(&k, &s, &binding(), &added, NOW, 60),
            Err(StampError::Mismatch)
        );
    }

    #[test]
    fn expired_and_future_stamps_are_refused() {
        let k = keys(K1);
        let s = seal(&k, &binding(), Source::Token, &identity(), NOW + 60);
        assert_eq!(
            open(&k, &s, &binding(), &identity(), NOW + 61, 60),
            Err(StampError::Expired(1))
        );
        let far = seal(&k, &binding(), Source::Token, &identity(), NOW + 3600);
        assert_eq!(
            open(&k, &far, &binding(), &identity(), NOW, 60),
            Err(StampError::FromTheFuture)
        );
    }

    #[test]
    fn a_dry_run_stamp_does_not_admit_a_real_request() {
        let k = keys(K1);
        let dry = Binding {
            dry_run: true,
            ..binding()
        };
        let s = seal(&k, &dry, Source::Token, &identity(), NOW + 60);
        assert!(open(&k, &s, &dry, &identity(), NOW, 60).is_ok());
        assert_eq!(
            open(&k, &s, &binding(), &identity(), NOW, 60),
            Err(StampError::DryRunMismatch)
        );
    }

    #[test]
    fn generate_name_stamps_bind_the_prefix_and_only_before_the_name_is_set() {
        let k = keys(K1);
        let g = Binding {
            name: BoundName::Generated("etl-"),
            ..binding()
        };
        let s = seal(&k, &g, Source::Token, &identity(), NOW + 60);
        assert!(bound_to_generated_name(&s));
        assert!(open(&k, &s, &g, &identity(), NOW, 60).is_ok());
        let other_prefix = Binding {
            name: BoundName::Generated("other-"),
            ..binding()
        };
        assert_eq!(
            open(&k, &s, &other_prefix, &identity(), NOW, 60),
            Err(StampError::Mismatch)
        );
        assert_eq!(
            open(&k, &s, &binding(), &identity(), NOW, 60),
            Err(StampError::NameAssigned)
        );
    }

    #[test]
    fn rotation_verifies_with_every_listed_key_and_signs_with_the_first() {
        let old = keys(K1);
        let s_old = seal(&old, &binding(), Source::Token, &identity(), NOW + 60);
        // Step 1: the new key is rolled out verify-only (second line).
        let both = keys(&format!("{K1}\n{K2}"));
        assert!(open(&both, &s_old, &binding(), &identity(), NOW, 60).is_ok());
        // Step 2: the new key signs; stamps of the old one still verify.
        let swapped = keys(&format!("{K2}\n{K1}"));
        let s_new = seal(&swapped, &binding(), Source::Token, &identity(), NOW + 60);
        assert!(s_new.starts_with("v1.k2."));
        assert!(open(&swapped, &s_old, &binding(), &identity(), NOW, 60).is_ok());
        assert!(open(&both, &s_new, &binding(), &identity(), NOW, 60).is_ok());
        // Step 3: the old key is removed; its stamps no longer verify.
        let new_only = keys(K2);
        assert_eq!(
            open(&new_only, &s_old, &binding(), &identity(), NOW, 60),
            Err(StampError::UnknownKey("k1".into()))
        );
    }

    #[test]
    fn a_stamp_under_the_same_id_but_another_key_is_refused() {
        let other = "k1:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
        let s = seal(
            &keys(other),
            &binding(),
            Source::Token,
            &identity(),
            NOW + 60,
        );
        assert_eq!(
            open(&keys(K1), &s, &binding(), &identity(), NOW, 60),
            Err(StampError::Mismatch)
        );
    }

    #[test]
    fn tampered_wire_forms_are_refused() {
        let k = keys(K1);
        let s = seal(&k, &binding(), Source::Token, &identity(), NOW + 60);
        let parts: Vec<&str> = s.split('.').collect();
        let with = |i: usize, v: &str| {
            let mut p = parts.clone();
            p[i] = v;
            p.join(".")
        };
        let later = (NOW + 50).to_string();
        for (bad, want) in [
            (String::new(), StampError::Malformed),
            ("v2".to_string() + &s[2..], StampError::Malformed),
            (format!("{s}.x"), StampError::Malformed),
            (with(2, "soon"), StampError::Malformed),
            (with(3, "x"), StampError::Malformed),
            (with(4, "z"), StampError::Malformed),
            (with(5, "!!"), StampError::Malformed),
            (with(2, &later), StampError::Mismatch),
            (with(4, "o"), StampError::Mismatch),
            (with(1, "k9"), StampError::UnknownKey("k9".into())),
        ] {
            assert_eq!(
                open(&k, &bad, &binding(), &identity(), NOW, 60),
                Err(want),
                "{bad}"
            );
        }
    }

    #[test]
    fn derived_ids_are_stable_per_input_and_key() {
        let k = keys(K1);
        assert_eq!(k.derive("job-id", "uid-1"), k.derive("job-id", "uid-1"));
        assert_ne!(k.derive("job-id", "uid-1"), k.derive("job-id", "uid-2"));
        assert_ne!(
            k.derive("job-id", "uid-1"),
            k.derive("schedule-id", "uid-1")
        );
        assert_ne!(
            k.derive("job-id", "uid-1"),
            keys(K2).derive("job-id", "uid-1")
        );
    }

    #[test]
    fn key_files_are_checked() {
        assert_eq!(
            StampKeys::parse("# only a comment\n").unwrap_err(),
            StampKeyError::Empty
        );
        for (text, needle) in [
            ("k1", "expected"),
            ("K1:AAAA", "key id"),
            ("k1:not base64!", "not base64"),
            ("k1:AAAA", "at least 32"),
            (&format!("{K1}\n{K1}") as &str, "twice"),
        ] {
            let e = StampKeys::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
        let k = keys(&format!("# keys\n\n{K2}\n{K1}\n"));
        assert_eq!(k.ids(), vec!["k2", "k1"]);
        assert!(!format!("{k:?}").contains("ICEi"));
        let line = StampKeys::line_for("k3", &[7u8; 32]);
        assert_eq!(keys(&line).ids(), vec!["k3"]);
    }
}
