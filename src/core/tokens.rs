//! Bearer tokens in objects about to be stored. The submitter's token is read from its
//! annotation and removed (`mutation::plan_metadata`); no other copy of it, and no other token
//! of the identity provider, may reach etcd either.
//!
//! - The mutating pass knows the token (the annotation's value). `find_token_copies` finds every
//!   other occurrence of it, or of its signature (the third segment: with header and payload
//!   public or guessable, the signature alone is what makes a leak usable), in any string or key
//!   of the object. The copies spark-submit and kubectl make themselves are scrubbed (`Remedy`);
//!   every other copy is denied, with its field.
//! - The validating pass no longer knows the token. `find_issuer_jwts` finds JWT-shaped strings
//!   (three base64url segments, the header starting `eyJ`, i.e. `{"`) whose payload is JSON with
//!   `iss` equal to the configured issuer: a bearer token of the identity provider, whoever's.
//!
//! Both search the raw JSON text first and parse and walk the object only on a hit, because every
//! pod review passes through here. That shortcut relies on the token's characters (base64url and
//! `.`) appearing verbatim in the text: kube-apiserver re-encodes every object it sends and never
//! escapes them, and a review whose text escapes any of them (hand-made, offline) is walked
//! whole. No message ever contains a token: a copy in a key is reported at the key's parent.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use memchr::memmem;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;

use crate::core::hardening::{Loc, Violation};
use crate::core::json::KeyText;
use crate::core::mutation::{LAST_APPLIED_ANNOTATION, rewrite_last_applied, token_properties};

/// A signature shorter than this is not searched for on its own (every algorithm sparkward
/// accepts signs with at least 256 bits, 43 characters); the whole token still is.
const MIN_SIGNATURE_CHARS: usize = 16;
/// What every JWT header starts with: base64url of `{"`.
const JWT_PREFIX: &str = "eyJ";

/// What happens to one copy of the submitter's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// A spark-submit property that would put the token on the driver or executor pods
    /// (`spec.sparkConf["spark.kubernetes.driver.annotation.<token annotation>"]`, and the same
    /// under `spec.template` of a ScheduledSparkApplication): removed with a JSON Patch
    /// `remove` at the copy's location.
    Remove,
    /// kubectl's last-applied configuration: `plan_metadata` rewrites it without the token
    /// annotation and those properties, which leaves no copy (checked here).
    LastApplied,
    /// Anywhere else: the object is denied and the user removes the copy.
    Deny,
}

/// Where a token was found: the string at `loc`, or (`in_key`) a key of the map at `loc`.
#[derive(Debug, Clone)]
pub struct Found {
    pub loc: Loc,
    pub in_key: bool,
}

impl Found {
    /// The field for messages: the string's path, or the map whose key holds the token (a path
    /// through that key would print the token).
    pub fn field(&self) -> String {
        match self.loc.human() {
            human if human.is_empty() => "(the object)".to_string(),
            human => human,
        }
    }
}

/// One copy of the submitter's token.
#[derive(Debug, Clone)]
pub struct TokenCopy {
    pub found: Found,
    pub remedy: Remedy,
}

/// The needle `find_token_copies` searches for: the signature when it is long enough to stand
/// for the token, else the whole token.
fn token_needle(token: &str) -> &str {
    token
        .rsplit('.')
        .next()
        .filter(|s| s.len() >= MIN_SIGNATURE_CHARS)
        .unwrap_or(token)
}

/// Whether `text` (the object's JSON text, or any text that contains it) may hold a copy of
/// `token` beside the annotation: the cheap test that decides whether `find_token_copies` has
/// anything to find.
pub fn may_hold_token_copy(text: &str, token: &str) -> bool {
    let token = token.trim();
    // The annotation holds one occurrence; anything beyond it may be a copy.
    !token.is_empty()
        && (occurrences(text, token_needle(token)).nth(1).is_some()
            || escapes_token_characters(text))
}

/// Whether `text` may hold a JWT: the cheap test that decides whether `find_issuer_jwts` has
/// anything to find.
pub fn may_hold_jwt(text: &str) -> bool {
    memmem::find(text.as_bytes(), JWT_PREFIX.as_bytes()).is_some() || escapes_token_characters(text)
}

/// Non-overlapping occurrences of `needle` in `text`, as `str::matches` counts them, found with
/// memchr's vectorised search: these scans read every pod review's whole text. A long needle (a
/// whole token, ~1 KB) is found by its first bytes and then compared: building a searcher for
/// all of it would cost more than the search.
fn occurrences<'t>(text: &'t str, needle: &'t str) -> impl Iterator<Item = usize> + 't {
    const PREFIX: usize = 32;
    let head = needle.as_bytes().get(..PREFIX).unwrap_or(needle.as_bytes());
    let finder = memmem::Finder::new(head).into_owned();
    let (text, needle) = (text.as_bytes(), needle.as_bytes());
    let mut at = 0;
    std::iter::from_fn(move || {
        loop {
            let found = at + finder.find(text.get(at..)?)?;
            if text.get(found..)?.starts_with(needle) {
                at = found + needle.len().max(1);
                return Some(found);
            }
            at = found + 1;
        }
    })
}

/// Whether `text` may hold a JWT other than `token` (the submitter's, which the mutating pass
/// always finds in its annotation): the cheap test before `find_issuer_jwts` there. Counts
/// the JWT prefixes beyond those inside the copies of `token`.
pub fn may_hold_other_jwt(text: &str, token: Option<&str>) -> bool {
    if escapes_token_characters(text) {
        return true;
    }
    let own = token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map_or(0, |t| {
            occurrences(text, t).count() * occurrences(t, JWT_PREFIX).count()
        });
    occurrences(text, JWT_PREFIX).count() > own
}

/// Every copy of `token` in the object `raw` (its JSON text) other than the token annotation
/// itself. The object's `kind` decides which spark-submit properties are known forms.
pub fn find_token_copies(
    raw: &str,
    token: &str,
    token_annotation: &str,
) -> Result<Vec<TokenCopy>, serde_json::Error> {
    if !may_hold_token_copy(raw, token) {
        return Ok(Vec::new());
    }
    // The signature is part of the token: searching for it finds both.
    let needle = token_needle(token.trim());
    // Which spark-submit properties are known forms depends on the object's `kind`, which the
    // walk may meet after them: a copy there is classed when the walk is done.
    let mut kind = None;
    let properties = token_properties(token_annotation);
    let mut copies = Vec::new();
    let mut seen = Seen::default();
    walk(raw, &mut |path, text, in_key| {
        // The last `kind` written is the object's (the API server keeps the last of a key
        // written twice): each one forgets the one before, and only a string sets it.
        match (path, in_key) {
            ([], true) if text == "kind" => kind = None,
            ([Seg::Key(k)], false) if k == "kind" => kind = Some(text.to_string()),
            _ => {}
        }
        if !text.contains(needle) {
            return false;
        }
        let value_at = |prefix: &[&str]| {
            !in_key
                && path.len() == prefix.len() + 1
                && path.iter().zip(prefix).all(|(a, b)| a.is_key(b))
        };
        let key = match path.last() {
            Some(Seg::Key(k)) => k.as_ref(),
            _ => "",
        };
        let annotation = value_at(&["metadata", "annotations"]);
        let remedy = if annotation && key == token_annotation {
            // The token itself: removed by `plan_metadata`.
            return true;
        } else if annotation && key == LAST_APPLIED_ANNOTATION {
            // `plan_metadata` rewrites it when it mentions the token annotation; whatever copy
            // that leaves is the user's to remove.
            let scrubbed = text.contains(token_annotation)
                && rewrite_last_applied(text, token_annotation)
                    .is_none_or(|rewritten| !rewritten.contains(needle));
            if scrubbed {
                Pending::Known(Remedy::LastApplied)
            } else {
                Pending::Known(Remedy::Deny)
            }
        } else if properties.iter().any(|p| p == key) && value_at(&["spec", "sparkConf"]) {
            Pending::Conf("SparkApplication")
        } else if properties.iter().any(|p| p == key)
            && value_at(&["spec", "template", "sparkConf"])
        {
            Pending::Conf("ScheduledSparkApplication")
        } else {
            Pending::Known(Remedy::Deny)
        };
        let found = Found {
            loc: to_loc(path),
            in_key,
        };
        // A place written twice keeps the remedy of its last value, the one that is stored.
        match seen.index(&found, copies.len()) {
            Some(at) => copies[at] = (found, remedy),
            None => copies.push((found, remedy)),
        }
        true
    })?;
    Ok(copies
        .into_iter()
        .map(|(found, pending)| TokenCopy {
            found,
            remedy: match pending {
                Pending::Known(remedy) => remedy,
                Pending::Conf(of) if kind.as_deref() == Some(of) => Remedy::Remove,
                Pending::Conf(_) => Remedy::Deny,
            },
        })
        .collect())
}

/// A copy's remedy before the object's `kind` is known: a spark-submit property is one only in
/// the `sparkConf` of its kind.
enum Pending {
    Known(Remedy),
    /// A token property in a `sparkConf`: removed if the object is of this kind.
    Conf(&'static str),
}

/// The places already reported, with their index in the report: a JSON object may repeat a
/// key (the API server keeps the last one), and one place is reported, and patched, once.
#[derive(Default)]
struct Seen(std::collections::HashMap<(String, bool), usize>);

impl Seen {
    /// Where `found` was reported before, or `None` after recording it at `next`.
    fn index(&mut self, found: &Found, next: usize) -> Option<usize> {
        let place = (found.loc.pointer().as_str().to_string(), found.in_key);
        match self.0.entry(place) {
            std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(next);
                None
            }
        }
    }
}

/// The denial for the copies that cannot be scrubbed (`Remedy::Deny`), one violation each.
pub fn copy_violations(copies: &[TokenCopy], token_annotation: &str) -> Vec<Violation> {
    copies
        .iter()
        .filter(|c| c.remedy == Remedy::Deny)
        .map(|c| Violation {
            field: c.found.field(),
            problem: if c.found.in_key {
                "has a key that holds a copy of the submitter token".into()
            } else {
                "holds a copy of the submitter token".into()
            },
            fix: format!(
                "remove it: sparkward reads the token only from the {token_annotation} annotation \
                 and removes it there, so that no bearer token is stored; a job that needs \
                 credentials gets them from a Secret"
            ),
        })
        .collect()
}

/// Which of the JWTs `find_issuer_jwts` finds it does not report.
#[derive(Debug, Clone, Copy)]
pub enum Exempt<'a> {
    /// None: every JWT of the issuer is reported (the validating pass on a CREATE).
    Nothing,
    /// The submitter's own token, exactly: the mutating pass removes it from its annotation and
    /// judges its copies (`find_token_copies`). Only the whole token: a part of it elsewhere (a
    /// copy cut short in its signature is still a JWT) stays in the object and is reported, as
    /// the validating pass reports it on the patched object.
    Own(&'a str),
    /// Whatever the object an update replaces (its JSON text) already held: an update is
    /// refused for what it adds, not for what was stored before.
    Stored(&'a str),
}

impl Exempt<'_> {
    fn exempts(self, jwt: &str) -> bool {
        match self {
            Exempt::Nothing => false,
            Exempt::Own(token) => token.trim() == jwt,
            Exempt::Stored(old) => old.contains(jwt),
        }
    }

    /// What one `exempts` costs, charged to the search's budget.
    fn cost(self) -> usize {
        match self {
            Exempt::Nothing => 0,
            Exempt::Own(token) => token.len(),
            Exempt::Stored(old) => old.len(),
        }
    }
}

/// Every JWT in the object `raw` whose payload names `issuer` as `iss`, but those `exempt`
/// names.
pub fn find_issuer_jwts(
    raw: &str,
    issuer: &str,
    exempt: Exempt<'_>,
) -> Result<Vec<Found>, serde_json::Error> {
    if issuer.is_empty() || !may_hold_jwt(raw) {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    let mut seen = Seen::default();
    let limit = search_budget(raw);
    let mut budget = limit;
    let mut exhausted = false;
    walk(raw, &mut |path, text, in_key| {
        if exhausted {
            return false;
        }
        let Ok(jwts) = issuer_jwts(text, issuer, &mut budget) else {
            exhausted = true;
            return false;
        };
        let new = |jwt: &&str| {
            // Each comparison is charged too.
            match budget.checked_sub(exempt.cost()) {
                Some(left) => budget = left,
                None => exhausted = true,
            }
            !exempt.exempts(jwt)
        };
        let reported = jwts.iter().any(new);
        if reported {
            let place = Found {
                loc: to_loc(path),
                in_key,
            };
            if seen.index(&place, found.len()).is_none() {
                found.push(place);
            }
        }
        // A key is skipped only when it is reported itself: one that holds only exempt
        // tokens (stored before, or the submitter's own) is walked into like any other, or a
        // new token below it would go unseen.
        reported
    })?;
    if exhausted {
        return Err(serde::de::Error::custom(format_args!(
            "it holds too many strings shaped like a JWT to search them within {} KiB of \
             decoding; remove the JWT-like text (sparkward refuses objects that store bearer \
             tokens)",
            limit / 1024
        )));
    }
    Ok(found)
}

/// The denial for tokens `find_issuer_jwts` found.
pub fn issuer_jwt_violations(found: &[Found], issuer: &str) -> Vec<Violation> {
    found
        .iter()
        .map(|f| Violation {
            field: f.field(),
            problem: format!(
                "{} a bearer token issued by {issuer}, which would be stored",
                if f.in_key {
                    "has a key that holds"
                } else {
                    "holds"
                }
            ),
            fix: "remove it: a submitter token is given only in sparkward's token annotation, \
                  which sparkward removes; a job that needs credentials gets them from a Secret"
                .into(),
        })
        .collect()
}

/// How much decoding `find_issuer_jwts` may do for one object: a few times its size plus a
/// fixed allowance. Every `eyJ` inside a run of token characters starts a candidate, so a run
/// such as `eyJ.eyJ.eyJ…` (or any string made of them) asks for a decode per 4 bytes; past the
/// budget the object is refused instead of searched for minutes.
fn search_budget(raw: &str) -> usize {
    raw.len().saturating_mul(8).saturating_add(1 << 20)
}

/// The search ran out of its budget (`search_budget`).
struct TooManyCandidates;

/// The JWTs in `text` whose payload names `issuer`, charging what each candidate costs to
/// `budget`. Linear in `text` apart from the charged decoding: the end of a run of token
/// characters is found once for every candidate in it.
fn issuer_jwts<'t>(
    text: &'t str,
    issuer: &str,
    budget: &mut usize,
) -> Result<Vec<&'t str>, TooManyCandidates> {
    let mut out = Vec::new();
    let mut from = 0;
    // The end of the run the last candidate was in: a later start before it is in the same run.
    let mut run_end = 0;
    while let Some(at) = text
        .get(from..)
        .and_then(|t| memmem::find(t.as_bytes(), JWT_PREFIX.as_bytes()))
    {
        let start = from + at;
        if start >= run_end {
            run_end = text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
                .map_or(text.len(), |len| start + len);
        }
        let candidate = &text[start..run_end];
        // What `jwt_of_issuer` may read: up to its third dot.
        let cost = candidate
            .match_indices('.')
            .nth(2)
            .map_or(candidate.len(), |(dot, _)| dot)
            .max(1);
        *budget = budget.checked_sub(cost).ok_or(TooManyCandidates)?;
        from = start + JWT_PREFIX.len();
        if let Some(jwt) = jwt_of_issuer(candidate, issuer) {
            from = start + jwt.len();
            out.push(jwt);
        }
    }
    Ok(out)
}

/// The JWT at the start of `run` (a run of base64url characters and dots starting `eyJ`) when
/// its header decodes to a JSON object and its payload to one with `iss` equal to `issuer`.
fn jwt_of_issuer<'r>(run: &'r str, issuer: &str) -> Option<&'r str> {
    let mut parts = run.splitn(4, '.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return None;
    }
    let json_object = |segment: &str| {
        let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
        serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes).ok()
    };
    json_object(header)?;
    let claims = json_object(payload)?;
    (claims.get("iss").and_then(Value::as_str) == Some(issuer))
        .then(|| &run[..header.len() + payload.len() + signature.len() + 2])
}

/// Whether the JSON text escapes a character a token is made of (`\u0041` for `A`): standard
/// encoders, kube-apiserver's included, never do, so only then can a substring search miss a
/// token.
fn escapes_token_characters(raw: &str) -> bool {
    memmem::find_iter(raw.as_bytes(), b"\\u00").any(|at| {
        raw.get(at + 4..at + 6)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    })
}

/// One step of a path through the object.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg<'t> {
    Key(Cow<'t, str>),
    Index(usize),
}

impl Seg<'_> {
    fn is_key(&self, key: &str) -> bool {
        matches!(self, Seg::Key(k) if k == key)
    }
}

fn to_loc(path: &[Seg<'_>]) -> Loc {
    path.iter().fold(Loc::root(), |loc, seg| match seg {
        Seg::Key(k) => loc.key(k),
        Seg::Index(i) => loc.index(*i),
    })
}

/// What `walk` calls for every string and key: `(path, text, in_key)`, answering whether the
/// text holds what it looks for.
type Visit<'a, 't> = dyn FnMut(&[Seg<'t>], &str, bool) -> bool + 'a;

/// Calls `visit(path, text, in_key)` for every string in the JSON text `raw` and every key of its
/// maps (`path` is then the map's), in the order they are written; a key written twice is
/// visited twice. A key whose `visit` answers true is not descended into, since a path through
/// it would have to name it. The text is read as it is walked, never held as a tree: what the
/// walk keeps is its path, at most serde_json's 128 levels.
fn walk<'t>(raw: &'t str, visit: &mut Visit<'_, 't>) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(raw);
    Walker {
        path: &mut Vec::new(),
        visit,
    }
    .deserialize(&mut de)?;
    de.end()
}

/// One level of `walk`.
struct Walker<'w, 'a, 't> {
    path: &'w mut Vec<Seg<'t>>,
    visit: &'w mut Visit<'a, 't>,
}

impl<'t> DeserializeSeed<'t> for Walker<'_, '_, 't> {
    type Value = ();

    fn deserialize<D: Deserializer<'t>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'t> Visitor<'t> for Walker<'_, '_, 't> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        (self.visit)(self.path, s, false);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'t>>(self, mut seq: A) -> Result<(), A::Error> {
        for i in 0.. {
            self.path.push(Seg::Index(i));
            let more = seq.next_element_seed(Walker {
                path: self.path,
                visit: self.visit,
            })?;
            self.path.pop();
            if more.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'t>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeyText)? {
            if (self.visit)(self.path, &key, true) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            self.path.push(Seg::Key(key));
            map.next_value_seed(Walker {
                path: self.path,
                visit: self.visit,
            })?;
            self.path.pop();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::labels::TOKEN_ANNOTATION;
    use serde_json::json;

    const ISSUER: &str = "https://idp.example.com/realms/data";

    /// A JWT-shaped token: a real header and payload, a made-up 43-character signature.
    fn mk_jwt(iss: &str, signature_seed: char) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#);
        let claims = json!({"iss": iss, "sub": "alice", "aud": "sparkward", "exp": 1_900_000_000});
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signature: String = std::iter::repeat_n(signature_seed, 43).collect();
        format!("{header}.{payload}.{signature}")
    }

    fn token() -> String {
        mk_jwt(ISSUER, 'S')
    }

    fn signature(token: &str) -> &str {
        token.rsplit('.').next().unwrap()
    }

    #[test]
    fn occurrences_count_like_str_matches() {
        // A needle longer than the searched prefix, with near misses that share the prefix.
        let long_needle = format!("{}tail", "p".repeat(40));
        let long_text = format!(
            "{n}{n}x{p}tai{n}{p}{n}",
            n = long_needle,
            p = "p".repeat(45)
        );
        for (text, needle) in [
            ("aaaaa", "aa"),
            ("eyJeyJ.eyJ", "eyJ"),
            ("", "eyJ"),
            ("ééeyJé", "eyJ"),
            ("abc", "abcd"),
            ("x.y.z", "."),
            (&long_text, &long_needle),
        ] {
            assert_eq!(
                occurrences(text, needle).count(),
                text.matches(needle).count(),
                "{text:?} / {needle:?}"
            );
        }
    }

    #[test]
    fn other_jwts_are_told_from_copies_of_the_submitters_own() {
        let own = token();
        let other = mk_jwt(ISSUER, 'T');
        let mut app = mk_app(&own);
        let text = app.to_string();
        assert!(!may_hold_other_jwt(&text, Some(&own)));
        assert!(may_hold_other_jwt(&text, None));
        // The own token twice (a last-applied copy) is still only the own token.
        app["metadata"]["annotations"]["x"] = json!(own);
        assert!(!may_hold_other_jwt(&app.to_string(), Some(&own)));
        app["spec"]["image"] = json!(other);
        let text = app.to_string();
        assert!(may_hold_other_jwt(&text, Some(&own)));
        let found = find_issuer_jwts(&text, ISSUER, Exempt::Own(&own)).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field(), "spec.image");
    }

    /// Found by the fourth 1,000,000-case run: the own token cut short in its signature (a
    /// label held `...submitter-token=<token>` and one character of the signature became `,`)
    /// is still a JWT of the issuer, and it stays in the object after the mutating pass removes
    /// the annotation. The mutating pass exempts only the whole own token, so it refuses the
    /// object as the validating pass would on the patched one.
    #[test]
    fn a_copy_of_the_own_token_cut_short_is_another_jwt() {
        let own = token();
        let cut = format!("{},{}", &own[..own.len() - 20], &own[own.len() - 19..]);
        let mut app = mk_app(&own);
        app["metadata"]["labels"] = json!({"spark.properties": format!("x={cut}")});
        let text = app.to_string();
        assert!(may_hold_other_jwt(&text, Some(&own)));
        let found = find_issuer_jwts(&text, ISSUER, Exempt::Own(&own)).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field(), "metadata.labels[\"spark.properties\"]");
        // What the validating pass sees once the annotation is gone: the same.
        app["metadata"]["annotations"] = json!({});
        let patched = find_issuer_jwts(&app.to_string(), ISSUER, Exempt::Nothing).unwrap();
        assert_eq!(patched.len(), 1);
        // The whole own token is exempt, wherever it is; its copies are judged elsewhere.
        assert!(
            find_issuer_jwts(&mk_app(&own).to_string(), ISSUER, Exempt::Own(&own))
                .unwrap()
                .is_empty()
        );
    }

    fn mk_app(token: &str) -> Value {
        json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {"name": "a", "annotations": {TOKEN_ANNOTATION: token}},
            "spec": {"type": "Scala", "sparkConf": {"spark.app.name": "pi"},
                "driver": {"cores": 1}, "executor": {"instances": 1}}
        })
    }

    fn mk_pod(token: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": {TOKEN_ANNOTATION: token}},
            "spec": {"containers": [{"name": "spark", "image": "apache/spark",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "args": ["driver"]}],
                "volumes": [{"name": "v", "emptyDir": {}}]}
        })
    }

    /// A JSON Patch `remove` at every copy found.
    fn remove_ops(found: &[TokenCopy]) -> Vec<json_patch::PatchOperation> {
        found
            .iter()
            .map(|c| {
                json_patch::PatchOperation::Remove(json_patch::RemoveOperation {
                    path: c.found.loc.pointer(),
                })
            })
            .collect()
    }

    /// (field, remedy) of every copy.
    fn copies(object: &Value, token: &str) -> Vec<(String, Remedy)> {
        find_token_copies(&object.to_string(), token, TOKEN_ANNOTATION)
            .unwrap()
            .into_iter()
            .map(|c| (c.found.field(), c.remedy))
            .collect()
    }

    #[test]
    fn the_token_annotation_alone_is_no_copy() {
        let t = token();
        assert!(copies(&mk_app(&t), &t).is_empty());
        assert!(copies(&mk_pod(&t), &t).is_empty());
        assert!(!may_hold_token_copy(&mk_pod(&t).to_string(), &t));
    }

    #[test]
    fn spark_submit_properties_are_scrubbed_from_the_spark_conf() {
        let t = token();
        let driver = format!("spark.kubernetes.driver.annotation.{TOKEN_ANNOTATION}");
        let executor = format!("spark.kubernetes.executor.annotation.{TOKEN_ANNOTATION}");
        let mut app = mk_app(&t);
        app["spec"]["sparkConf"][&driver] = json!(t);
        app["spec"]["sparkConf"][&executor] = json!(t);
        let found = find_token_copies(&app.to_string(), &t, TOKEN_ANNOTATION).unwrap();
        let owned: Vec<(String, Remedy)> =
            found.iter().map(|c| (c.found.field(), c.remedy)).collect();
        let fields: Vec<(&str, Remedy)> = owned.iter().map(|(f, r)| (f.as_str(), *r)).collect();
        assert_eq!(
            fields,
            vec![
                (
                    "spec.sparkConf[\"spark.kubernetes.driver.annotation.sparkward.io/submitter-token\"]",
                    Remedy::Remove
                ),
                (
                    "spec.sparkConf[\"spark.kubernetes.executor.annotation.sparkward.io/submitter-token\"]",
                    Remedy::Remove
                ),
            ]
        );
        // The pointer escapes the `/` of the key: applied, the rest of sparkConf stays.
        let ops = remove_ops(&found);
        let mut patched = app.clone();
        json_patch::patch(&mut patched, &ops).unwrap();
        assert_eq!(
            patched["spec"]["sparkConf"],
            json!({"spark.app.name": "pi"})
        );
        assert!(copy_violations(&found, TOKEN_ANNOTATION).is_empty());

        // The same under a ScheduledSparkApplication's template.
        let scheduled = json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "ScheduledSparkApplication",
            "metadata": {"name": "s", "annotations": {TOKEN_ANNOTATION: t}},
            "spec": {"schedule": "@every 1h", "template": {"sparkConf": {driver.clone(): t}}}
        });
        assert_eq!(
            copies(&scheduled, &t),
            vec![(
                format!("spec.template.sparkConf[\"{driver}\"]"),
                Remedy::Remove
            )]
        );
    }

    #[test]
    fn the_walk_reads_the_text_as_written_kind_last_keys_repeated_or_escaped() {
        let t = token();
        let driver = format!("spark.kubernetes.driver.annotation.{TOKEN_ANNOTATION}");
        // `kind` after `spec`, a property written twice (the API server keeps the last), an
        // escaped key: one `remove` for the property, and it applies.
        let raw = format!(
            r#"{{"spec":{{"sparkConf":{{"{driver}":"{t}","{driver}":"{t}"}}}},
                "metadata":{{"annotations":{{"{TOKEN_ANNOTATION}":"{t}"}}}},
                "kind":"SparkApplication"}}"#
        );
        let found = find_token_copies(&raw, &t, TOKEN_ANNOTATION).unwrap();
        let fields: Vec<(String, Remedy)> =
            found.iter().map(|c| (c.found.field(), c.remedy)).collect();
        assert_eq!(
            fields,
            vec![(format!("spec.sparkConf[\"{driver}\"]"), Remedy::Remove)]
        );
        let ops = remove_ops(&found);
        let mut object: Value = serde_json::from_str(&raw).unwrap();
        json_patch::patch(&mut object, &ops).unwrap();
        // The same property in an object of another kind is no known form.
        let other = raw.replace("\"SparkApplication\"", "\"Pod\"");
        assert_eq!(
            find_token_copies(&other, &t, TOKEN_ANNOTATION).unwrap()[0].remedy,
            Remedy::Deny
        );
        // A copy under a key written with escapes is found at the key's unescaped path, and a
        // key written twice with a copy in the first value is still reported (once).
        let escaped = format!(
            r#"{{"kind":"Pod","metadata":{{"annotations":{{"{TOKEN_ANNOTATION}":"{t}"}}}},
                "spec":{{"n\u0061me":"{t}","x":"{t}","x":"clean"}}}}"#
        );
        let fields: Vec<String> = find_token_copies(&escaped, &t, TOKEN_ANNOTATION)
            .unwrap()
            .iter()
            .map(|c| c.found.field())
            .collect();
        assert_eq!(fields, vec!["spec.name", "spec.x"]);
        // `kind` and kubectl's last-applied copy written twice: the last value decides, as
        // the API server keeps it.
        let conf = format!(r#""spec":{{"sparkConf":{{"{driver}":"{t}"}}}}"#);
        let own = format!(r#""metadata":{{"annotations":{{"{TOKEN_ANNOTATION}":"{t}"}}}}"#);
        for (kinds, remedy) in [
            (r#""kind":"Pod","kind":"SparkApplication""#, Remedy::Remove),
            (r#""kind":"SparkApplication","kind":null"#, Remedy::Deny),
            (r#""kind":"SparkApplication","kind":"Pod""#, Remedy::Deny),
        ] {
            let raw = format!("{{{kinds},{own},{conf}}}");
            let found = find_token_copies(&raw, &t, TOKEN_ANNOTATION).unwrap();
            assert_eq!(found.len(), 1, "{kinds}");
            assert_eq!(found[0].remedy, remedy, "{kinds}");
        }
        let clean = format!(r#"{{{own}}}"#);
        let dirty = format!(r#"{{{own},"spec":{{"x":"{t}"}}}}"#);
        let quoted = |s: &str| serde_json::to_string(s).unwrap();
        for (first, last, remedy) in [
            (&clean, &dirty, Remedy::Deny),
            (&dirty, &clean, Remedy::LastApplied),
        ] {
            let raw = format!(
                r#"{{"kind":"Pod","metadata":{{"annotations":{{"{TOKEN_ANNOTATION}":"{t}",
                    "{LAST_APPLIED_ANNOTATION}":{},"{LAST_APPLIED_ANNOTATION}":{}}}}}}}"#,
                quoted(first),
                quoted(last)
            );
            let found = find_token_copies(&raw, &t, TOKEN_ANNOTATION).unwrap();
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].remedy, remedy);
        }
        // Broken JSON is an error, as before.
        assert!(find_token_copies(&format!("{escaped}x"), &t, TOKEN_ANNOTATION).is_err());
        assert!(find_issuer_jwts(&format!("[\"{t}\""), ISSUER, Exempt::Nothing).is_err());
    }

    #[test]
    fn other_properties_and_other_kinds_are_not_known_forms() {
        let t = token();
        let driver = format!("spark.kubernetes.driver.annotation.{TOKEN_ANNOTATION}");
        let mut app = mk_app(&t);
        app["spec"]["sparkConf"]["spark.kubernetes.driverEnv.TOKEN"] = json!(t);
        assert_eq!(
            copies(&app, &t),
            vec![(
                "spec.sparkConf[\"spark.kubernetes.driverEnv.TOKEN\"]".to_string(),
                Remedy::Deny
            )]
        );
        // A Pod has no sparkConf: the same key there is just a copy.
        let mut pod = mk_pod(&t);
        pod["spec"]["sparkConf"] = json!({driver.clone(): t});
        assert_eq!(copies(&pod, &t)[0].1, Remedy::Deny);
        // And a SparkApplication's property at another depth is not the known form.
        let mut app = mk_app(&t);
        app["spec"]["driver"]["sparkConf"] = json!({driver: t});
        assert_eq!(copies(&app, &t)[0].1, Remedy::Deny);
    }

    #[test]
    fn copies_anywhere_else_are_denied_with_their_field() {
        let t = token();
        type Place = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Place)> = vec![
            (
                "spec.containers[0].env[1].value",
                Box::new(|p: &mut Value| {
                    p["spec"]["containers"][0]["env"][1]["value"] = json!(token())
                }),
            ),
            (
                "spec.containers[0].args[1]",
                Box::new(|p: &mut Value| {
                    p["spec"]["containers"][0]["args"] =
                        json!(["driver", format!("--token={}", token())])
                }),
            ),
            (
                "metadata.annotations.note",
                Box::new(|p: &mut Value| {
                    p["metadata"]["annotations"]["note"] = json!(format!("Bearer {}", token()))
                }),
            ),
            (
                "metadata.labels.t",
                // Labels cannot hold a whole token (63 characters), but the signature fits.
                Box::new(|p: &mut Value| {
                    p["metadata"]["labels"] = json!({"t": signature(&token())})
                }),
            ),
            (
                "spec.volumes[1].csi.volumeAttributes.token",
                Box::new(|p: &mut Value| {
                    let volumes = p["spec"]["volumes"].as_array_mut().unwrap();
                    volumes.push(json!({"name": "s3", "csi": {"driver": "x",
                        "volumeAttributes": {"token": token()}}}));
                }),
            ),
            (
                "spec.containers[0].env[0].value",
                // The signature alone is a usable leak.
                Box::new(|p: &mut Value| {
                    p["spec"]["containers"][0]["env"][0]["value"] = json!(signature(&token()))
                }),
            ),
        ];
        for (field, place) in cases {
            let mut pod = mk_pod(&t);
            place(&mut pod);
            let found = find_token_copies(&pod.to_string(), &t, TOKEN_ANNOTATION).unwrap();
            let violations = copy_violations(&found, TOKEN_ANNOTATION);
            assert_eq!(violations.len(), 1, "{field}: {found:?}");
            assert_eq!(violations[0].field, field);
            assert_eq!(violations[0].problem, "holds a copy of the submitter token");
            assert!(violations[0].fix.starts_with("remove it"));
            assert!(!violations[0].to_string().contains(signature(&t)));
        }
    }

    #[test]
    fn a_copy_in_a_key_is_reported_at_its_map_without_the_token() {
        let t = token();
        let mut pod = mk_pod(&t);
        pod["metadata"]["annotations"][format!("x/{}", signature(&t))] = json!("1");
        let found = find_token_copies(&pod.to_string(), &t, TOKEN_ANNOTATION).unwrap();
        let v = copy_violations(&found, TOKEN_ANNOTATION);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "metadata.annotations");
        assert_eq!(
            v[0].problem,
            "has a key that holds a copy of the submitter token"
        );
        assert!(!v[0].to_string().contains(signature(&t)));
    }

    #[test]
    fn kubectls_last_applied_copy_is_left_to_the_metadata_plan_when_that_cleans_it() {
        let t = token();
        let driver = format!("spark.kubernetes.driver.annotation.{TOKEN_ANNOTATION}");
        let mut app = mk_app(&t);
        app["spec"]["sparkConf"][&driver] = json!(t);
        let applied = app.to_string();
        app["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] = json!(applied);
        let found = copies(&app, &t);
        assert_eq!(
            found,
            vec![
                (
                    format!("metadata.annotations[\"{LAST_APPLIED_ANNOTATION}\"]"),
                    Remedy::LastApplied
                ),
                (format!("spec.sparkConf[\"{driver}\"]"), Remedy::Remove),
            ]
        );
        let rewritten = rewrite_last_applied(&applied, TOKEN_ANNOTATION).unwrap();
        assert!(!rewritten.contains(signature(&t)), "{rewritten}");
        assert!(rewritten.contains("spark.app.name"));

        // A copy the rewrite cannot remove is the user's to remove: denied.
        let mut pod = mk_pod(&t);
        let mut applied = pod.clone();
        applied["spec"]["containers"][0]["env"][0]["value"] = json!(t);
        pod["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] = json!(applied.to_string());
        assert_eq!(
            copies(&pod, &t),
            vec![(
                format!("metadata.annotations[\"{LAST_APPLIED_ANNOTATION}\"]"),
                Remedy::Deny
            )]
        );
    }

    #[test]
    fn a_copy_hidden_behind_json_escapes_is_still_found() {
        let t = token();
        // The copy's signature starts `S`, written `\u0053` in the JSON text: a substring
        // search of the text sees the signature only once (in the annotation).
        let (head, sig) = t.rsplit_once('.').unwrap();
        let hidden = format!("{head}.\\u0053{}", &sig[1..]);
        let text = mk_pod(&t).to_string().replacen(
            "\"args\":[\"driver\"]",
            &format!("\"args\":[\"{hidden}\"]"),
            1,
        );
        assert_eq!(text.matches(sig).count(), 1, "{text}");
        let found = find_token_copies(&text, &t, TOKEN_ANNOTATION).unwrap();
        assert_eq!(found.len(), 1, "{text}");
        assert_eq!(found[0].found.field(), "spec.containers[0].args[0]");
        // Escapes of characters no token holds (kube-apiserver writes `&` as \u0026) do not
        // make every review a walk.
        assert!(!escapes_token_characters(
            r#"{"args":["a \u0026\u0026 b"]}"#
        ));
        assert!(escapes_token_characters(r#"{"args":["\u0041"]}"#));
    }

    #[test]
    fn a_configmap_copy_is_found_by_either_rule() {
        let t = token();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c",
            "annotations": {TOKEN_ANNOTATION: t}},
            "data": {"spark.properties": format!("spark.app.name=pi\nspark.hadoop.token={t}\n")}});
        assert_eq!(
            copies(&cm, &t),
            vec![("data[\"spark.properties\"]".to_string(), Remedy::Deny)]
        );
        let found = find_issuer_jwts(&cm.to_string(), ISSUER, Exempt::Nothing).unwrap();
        let fields: Vec<String> = found.iter().map(Found::field).collect();
        assert_eq!(
            fields,
            vec![
                "data[\"spark.properties\"]",
                "metadata.annotations[\"sparkward.io/submitter-token\"]"
            ]
        );
    }

    #[test]
    fn the_issuer_search_is_bounded_on_strings_made_of_jwt_prefixes() {
        let mine = mk_jwt(ISSUER, 'S');
        // A run of prefixes without dots: each start would read to the end of the run (a
        // quadratic search before, minutes for a 1 MiB string). Refused within the budget.
        let dotless = json!({"data": {"a": "eyJ".repeat(350_000)}}).to_string();
        let e = find_issuer_jwts(&dotless, ISSUER, Exempt::Nothing)
            .unwrap_err()
            .to_string();
        assert!(e.contains("too many strings shaped like a JWT"), "{e}");
        // Prefixes with dots cost a few bytes each: searched, nothing found, and a real token
        // after them is still found.
        let dotted = json!({"data": {"a": "eyJ.".repeat(250_000), "b": mine}}).to_string();
        let found = find_issuer_jwts(&dotted, ISSUER, Exempt::Nothing).unwrap();
        let fields: Vec<String> = found.iter().map(Found::field).collect();
        assert_eq!(fields, vec!["data.b"]);
        // The legitimate neighbour: base64 of JSON starts with `eyJ` too; 200 values of 5 KB
        // are searched whole.
        let blob = URL_SAFE_NO_PAD.encode(format!("{{\"k\":\"{}\"}}", "v".repeat(3700)));
        let values: serde_json::Map<String, Value> =
            (0..200).map(|i| (format!("k{i}"), json!(blob))).collect();
        let cm = json!({"data": values}).to_string();
        assert!(
            find_issuer_jwts(&cm, ISSUER, Exempt::Nothing)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_validating_pass_finds_tokens_of_the_issuer_only() {
        let mine = mk_jwt(ISSUER, 'S');
        let foreign = mk_jwt("https://other.example.com", 'F');
        let mut pod = mk_pod("");
        pod["metadata"]["annotations"] =
            json!({"foreign": foreign, "mine": format!("Bearer {mine}")});
        pod["spec"]["containers"][0]["env"][0]["value"] = json!(mine);
        pod["spec"]["containers"][0]["args"] = json!([format!("{foreign},{mine}")]);
        let found = find_issuer_jwts(&pod.to_string(), ISSUER, Exempt::Nothing).unwrap();
        let violations = issuer_jwt_violations(&found, ISSUER);
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.annotations.mine",
                "spec.containers[0].args[0]",
                "spec.containers[0].env[0].value",
            ]
        );
        assert_eq!(
            violations[0].problem,
            format!("holds a bearer token issued by {ISSUER}, which would be stored")
        );
        assert!(
            !violations
                .iter()
                .any(|v| v.to_string().contains(signature(&mine)))
        );
        // Another issuer's token alone is not sparkward's business.
        let mut other = mk_pod("");
        other["metadata"]["annotations"] = json!({"foreign": foreign});
        assert!(
            find_issuer_jwts(&other.to_string(), ISSUER, Exempt::Nothing)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn random_base64_and_near_jwts_are_not_tokens() {
        let payload = URL_SAFE_NO_PAD.encode(json!({"iss": ISSUER}).to_string());
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let not_json = URL_SAFE_NO_PAD.encode(b"{\"iss\": nope");
        let cases = [
            // Random base64 that happens to start like a JSON header.
            "eyJhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk".to_string(),
            format!("eyJ{}", "A".repeat(200)),
            // Two segments, or an empty signature.
            format!("{header}.{payload}"),
            format!("{header}.{payload}."),
            // A payload that is not JSON, a header that is not JSON.
            format!("{header}.{not_json}.sig"),
            format!("eyJub3Q.{payload}.sig"),
            // The issuer only as a prefix of another.
            mk_jwt(&format!("{ISSUER}-staging"), 'x'),
            // A base64 blob, e.g. a certificate.
            URL_SAFE_NO_PAD.encode([7u8; 300]),
        ];
        for case in cases {
            let pod = json!({"metadata": {"annotations": {"x": case}}});
            let found = find_issuer_jwts(&pod.to_string(), ISSUER, Exempt::Nothing).unwrap();
            assert!(found.is_empty(), "{case}");
        }
        assert!(!may_hold_jwt(&mk_pod("").to_string()));
    }

    #[test]
    fn an_update_is_refused_only_for_tokens_it_adds() {
        let stored_token = mk_jwt(ISSUER, 'O');
        let mut old = mk_pod("");
        old["metadata"]["annotations"] = json!({"old": stored_token});
        let old_text = old.to_string();
        // Unchanged, or moved: nothing new is stored.
        let mut same = old.clone();
        same["metadata"]["labels"] = json!({"team": "data"});
        assert!(
            find_issuer_jwts(&same.to_string(), ISSUER, Exempt::Stored(&old_text))
                .unwrap()
                .is_empty()
        );
        // A token pasted later is refused.
        let mut pasted = old.clone();
        pasted["metadata"]["annotations"]["new"] = json!(mk_jwt(ISSUER, 'N'));
        let found =
            find_issuer_jwts(&pasted.to_string(), ISSUER, Exempt::Stored(&old_text)).unwrap();
        let fields: Vec<String> = found.iter().map(Found::field).collect();
        assert_eq!(fields, vec!["metadata.annotations.new"]);
    }

    #[test]
    fn a_token_added_below_a_key_that_holds_a_stored_token_is_refused() {
        // A map key that already held a token when sparkward's rule came in (a ConfigMap's
        // data written by hand, say): the key stays updatable, but what is written below it
        // is searched like anywhere else.
        let stored_token = mk_jwt(ISSUER, 'O');
        let mut old = mk_pod("");
        old["metadata"]["annotations"] = json!({"note": "x"});
        old["spec"]["extra"] = json!({ stored_token.as_str(): {"value": "plain"} });
        let old_text = old.to_string();
        // The owner edits the plain value below the stored key: allowed, as before.
        let mut edited = old.clone();
        edited["spec"]["extra"][stored_token.as_str()]["value"] = json!("still plain");
        assert!(
            find_issuer_jwts(&edited.to_string(), ISSUER, Exempt::Stored(&old_text))
                .unwrap()
                .is_empty()
        );
        // A new token below it is refused, named by its full path.
        let mut pasted = old.clone();
        pasted["spec"]["extra"][stored_token.as_str()]["value"] = json!(mk_jwt(ISSUER, 'N'));
        let found =
            find_issuer_jwts(&pasted.to_string(), ISSUER, Exempt::Stored(&old_text)).unwrap();
        let fields: Vec<String> = found.iter().map(Found::field).collect();
        assert_eq!(fields.len(), 1, "{fields:?}");
        assert!(
            fields[0].starts_with("spec.extra") && fields[0].ends_with(".value"),
            "{fields:?}"
        );
        // The same below the submitter's own token as a key, in the mutating pass's search.
        let own = mk_jwt(ISSUER, 'S');
        let keyed = json!({"metadata": {"annotations": {"x": "y"}},
                           "spec": {"extra": { own.as_str(): {"value": mk_jwt(ISSUER, 'M')}}}});
        let found = find_issuer_jwts(&keyed.to_string(), ISSUER, Exempt::Own(&own)).unwrap();
        assert_eq!(
            found.len(),
            1,
            "{:?}",
            found.iter().map(Found::field).collect::<Vec<_>>()
        );
        // A key that holds a new token is reported itself, and its value is not searched
        // again (a path through it names it already).
        let mut new_key = old.clone();
        new_key["spec"]["more"] =
            json!({ mk_jwt(ISSUER, 'K').as_str(): {"v": mk_jwt(ISSUER, 'V')}});
        let found =
            find_issuer_jwts(&new_key.to_string(), ISSUER, Exempt::Stored(&old_text)).unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].in_key);
    }
}
