//! The names users and tools see (DESIGN.md, "Names users see") and the pure helpers that derive
//! them: the job id from random bytes, the label-safe user, the policy name. Admission and the
//! lifecycle controller both use these, so whatever is admitted can be found and cleaned up.

use sha2::{Digest, Sha256};

/// Prefix of every label and annotation sparkward owns.
pub const PREFIX: &str = "sparkward.io/";
/// Input annotation carrying the submitter's OAuth 2.0 access token; removed by the mutation.
pub const TOKEN_ANNOTATION: &str = "sparkward.io/submitter-token";
pub const JOB_ID_LABEL: &str = "sparkward.io/job-id";
pub const USER_LABEL: &str = "sparkward.io/user";
pub const ROLE_LABEL: &str = "sparkward.io/role";
pub const SUBMITTER_ANNOTATION: &str = "sparkward.io/submitter";
pub const ISSUER_ANNOTATION: &str = "sparkward.io/issuer";
pub const TOKEN_ID_ANNOTATION: &str = "sparkward.io/token-id";
pub const SCOPES_ANNOTATION: &str = "sparkward.io/scopes";
pub const POLICY_ANNOTATION: &str = "sparkward.io/policy";
/// On a ScheduledSparkApplication: the id of the admission that verified its token (derived from
/// that request's uid like a job id), so a re-invocation of the same request is recognised and a
/// schedule created with hand-written identity annotations is not.
pub const SCHEDULE_ID_ANNOTATION: &str = "sparkward.io/schedule-id";
/// The HMAC stamp the mutating webhook writes next to an identity (see `core::stamp`).
pub const STAMP_ANNOTATION: &str = "sparkward.io/stamp";
/// On a job's objects: the Spark security profile the job was admitted under.
pub const SPARK_PROFILE_ANNOTATION: &str = "sparkward.io/spark-profile";
/// On a job's objects: the name of the job's RPC authentication Secret, when it has one.
pub const RPC_SECRET_ANNOTATION: &str = "sparkward.io/rpc-secret";
pub const ENFORCE_LABEL: &str = "sparkward.io/enforce";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Labels spark-operator sets (`sparkoperator.k8s.io/`): it names the application a driver
/// belongs to with them, so only the operator may write them.
pub const OPERATOR_LABEL_PREFIX: &str = "sparkoperator.k8s.io/";
pub const MANAGED_BY_VALUE: &str = "sparkward";
/// Label Spark puts on driver and executor pods.
pub const SPARK_ROLE_LABEL: &str = "spark-role";
/// Label spark-operator puts on the pods of a SparkApplication it launched.
pub const SPARK_APP_NAME_LABEL: &str = "sparkoperator.k8s.io/app-name";

/// Prefix of job ids.
pub const JOB_ID_PREFIX: &str = "sj-";
/// Number of base32 characters after the prefix (100 bits of the digest).
const JOB_ID_CHARS: usize = 20;
/// Longest a label value may be.
const LABEL_VALUE_MAX: usize = 63;
/// Hash part of a hashed user label: lowercase base32 characters of sha256(subject) (130 bits).
const USER_HASH_CHARS: usize = 26;
/// Between the stem and the hash of a hashed user label.
const USER_HASH_SEPARATOR: &str = "--";
/// Longest stem of a hashed user label, so that the whole fits in a label value.
const USER_STEM_MAX: usize = LABEL_VALUE_MAX - USER_HASH_SEPARATOR.len() - USER_HASH_CHARS;
/// Stem of a hashed user label when nothing of the subject is usable.
const EMPTY_STEM: &str = "u";
/// The previous scheme: sanitised subjects cut to 54 characters, `-`, 8 hex characters.
const LEGACY_USER_LABEL_CUT: usize = 54;
const LEGACY_HASH_CHARS: usize = 8;

/// Random bytes a job id is made from (100 bits are used).
pub type JobIdEntropy = [u8; 13];

/// A new job id from fresh random bytes: `sj-` followed by 20 lowercase base32 characters (100
/// bits). Unique per job and unguessable; a re-invocation of the same request reads the id back
/// from the stamped object instead of making a new one (see `core::stamp`).
pub fn job_id_from(random: &JobIdEntropy) -> String {
    let encoded = data_encoding::BASE32_NOPAD.encode(random);
    let mut id = String::with_capacity(JOB_ID_PREFIX.len() + JOB_ID_CHARS);
    id.push_str(JOB_ID_PREFIX);
    id.extend(
        encoded
            .chars()
            .take(JOB_ID_CHARS)
            .map(|c| c.to_ascii_lowercase()),
    );
    id
}

/// A job id derived from a string (sha256), for tests and fixtures that need a stable,
/// well-formed id. Admission never uses it: real ids are random (`job_id_from`).
pub fn job_id_for_test(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut random = JobIdEntropy::default();
    random.copy_from_slice(&digest[..13]);
    job_id_from(&random)
}

/// Whether `value` has the shape of a job id sparkward issues.
pub fn is_job_id(value: &str) -> bool {
    value.strip_prefix(JOB_ID_PREFIX).is_some_and(|rest| {
        rest.len() == JOB_ID_CHARS
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    })
}

/// Name of the CiliumNetworkPolicy of a job.
pub fn policy_name(job_id: &str) -> String {
    format!("sparkward-{job_id}")
}

/// Whether `key` is a valid Kubernetes label key: an optional DNS-subdomain prefix and `/`,
/// then a non-empty name of at most 63 characters with a label value's syntax.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// Name of the RPC authentication Secret of a job.
pub fn rpc_secret_name(job_id: &str) -> String {
    format!("sparkward-{job_id}-rpc")
}

/// Whether `value` is a valid Kubernetes label value: at most 63 characters, alphanumerics with
/// `-`, `_`, `.` inside, starting and ending alphanumeric (the empty value is valid too).
pub fn is_label_value(value: &str) -> bool {
    if value.is_empty() {
        return true;
    }
    let bytes = value.as_bytes();
    bytes.len() <= LABEL_VALUE_MAX
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The label-safe form of a verified subject. Injective: two different subjects never get the
/// same label.
///
/// - **Verbatim**: the subject itself, when it is a non-empty valid label value that does not
///   end in a reserved hash suffix (below).
/// - **Hashed**, for every other subject: a readable stem (invalid characters become `-`,
///   trimmed to alphanumerics at both ends, cut to 35 characters; `u` when nothing is left),
///   then `--`, then 26 lowercase base32 characters (130 bits) of sha256(subject). At most
///   63 characters.
///
/// Reserved suffixes, which a verbatim label never has: `--` + 26 characters of `[a-z2-7]`
/// (the hashed form's own shape), and `-` + 8 lowercase hex characters, or exactly 8 of them
/// (the hashed shape of the previous scheme, `legacy_user_label`). A subject that ends like
/// that is hashed too. So a verbatim label never equals a hashed one, of either scheme; two
/// hashed labels are equal only if 130 bits of sha256 collide; and two verbatim labels are
/// equal only if the subjects are.
pub fn user_label(subject: &str) -> String {
    if !subject.is_empty() && is_label_value(subject) && !has_reserved_suffix(subject) {
        return subject.to_string();
    }
    let digest = Sha256::digest(subject.as_bytes());
    let encoded = data_encoding::BASE32_NOPAD.encode(&digest);
    let stem = label_stem(subject, USER_STEM_MAX);
    let stem = if stem.is_empty() { EMPTY_STEM } else { &stem };
    let mut label = String::with_capacity(stem.len() + USER_HASH_SEPARATOR.len() + USER_HASH_CHARS);
    label.push_str(stem);
    label.push_str(USER_HASH_SEPARATOR);
    label.extend(
        encoded
            .chars()
            .take(USER_HASH_CHARS)
            .map(|c| c.to_ascii_lowercase()),
    );
    label
}

/// Whether `label` is what sparkward writes, or wrote before the current scheme, for
/// `subject`. For objects that were stored before an upgrade (DESIGN.md's earlier scheme,
/// `legacy_user_label`): their identity record stays readable, so running jobs keep their
/// lineage. New objects always get `user_label`.
pub fn is_user_label_of(label: &str, subject: &str) -> bool {
    label == user_label(subject) || label == legacy_user_label(subject)
}

/// The user label of the previous scheme (DESIGN.md's "cut to 54 chars, plus `-` and 8 hex
/// chars of sha256(subject)"): the subject itself when it is a non-empty valid label value;
/// otherwise sanitised, cut to 54 characters, `-`, and 8 hex characters of sha256(subject). Not
/// injective (a subject can be chosen to equal another subject's hashed form, and 32 bits are
/// brute-forced in seconds), so it is only ever *read*, never written: see `is_user_label_of`.
pub fn legacy_user_label(subject: &str) -> String {
    if !subject.is_empty() && is_label_value(subject) {
        return subject.to_string();
    }
    let digest = Sha256::digest(subject.as_bytes());
    let suffix: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let cut = label_stem(subject, LEGACY_USER_LABEL_CUT);
    if cut.is_empty() {
        suffix
    } else {
        format!("{cut}-{suffix}")
    }
}

/// The readable part of a hashed user label: characters a label value may not hold become
/// `-`, the result is trimmed to alphanumerics at both ends and cut to `max` characters (and
/// trimmed again, so it ends alphanumeric). Empty when nothing usable is left.
fn label_stem(subject: &str, max: usize) -> String {
    let sanitised: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = sanitised.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let cut: String = trimmed.chars().take(max).collect();
    cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// Whether a valid label value ends like a hashed user label of either scheme (see
/// `user_label`), so that it may not be used verbatim.
fn has_reserved_suffix(value: &str) -> bool {
    let b = value.as_bytes();
    let base32 = |c: &u8| c.is_ascii_lowercase() || (b'2'..=b'7').contains(c);
    let hex = |c: &u8| c.is_ascii_digit() || (b'a'..=b'f').contains(c);
    let n = b.len();
    let hashed = n >= USER_HASH_CHARS + USER_HASH_SEPARATOR.len()
        && &b[n - USER_HASH_CHARS - USER_HASH_SEPARATOR.len()..n - USER_HASH_CHARS]
            == USER_HASH_SEPARATOR.as_bytes()
        && b[n - USER_HASH_CHARS..].iter().all(base32);
    let legacy = n >= LEGACY_HASH_CHARS
        && b[n - LEGACY_HASH_CHARS..].iter().all(hex)
        && (n == LEGACY_HASH_CHARS || b[n - LEGACY_HASH_CHARS - 1] == b'-');
    hashed || legacy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_well_formed_and_follow_their_entropy() {
        let a = job_id_from(&[0x5a; 13]);
        assert_eq!(a, job_id_from(&[0x5a; 13]));
        assert_ne!(a, job_id_from(&[0x5b; 13]));
        assert_ne!(job_id_for_test("a"), job_id_for_test("b"));
        assert_eq!(a.len(), 23);
        assert!(is_job_id(&a), "{a}");
        assert!(is_label_value(&a));
        assert!(is_label_value(&policy_name(&a)));
    }

    #[test]
    fn job_id_shape_is_checked() {
        assert!(!is_job_id("sj-short"));
        assert!(!is_job_id("xx-aaaaaaaaaaaaaaaaaaaa"));
        assert!(!is_job_id("sj-AAAAAAAAAAAAAAAAAAAA"));
        assert!(!is_job_id("sj-aaaaaaaaaaaaaaaaaaa1"));
        assert!(is_job_id("sj-aaaaaaaaaaaaaaaaaaa7"));
    }

    /// The shape every hashed label has: a stem, `--`, 26 lowercase base32 characters.
    fn assert_hashed(subject: &str, label: &str) {
        assert!(is_label_value(label), "{subject:?} -> {label:?}");
        assert!(label.len() <= 63, "{subject:?} -> {label:?}");
        let (stem, hash) = label.rsplit_once("--").unwrap();
        assert!(!stem.is_empty(), "{subject:?} -> {label:?}");
        assert_eq!(hash.len(), 26, "{subject:?} -> {label:?}");
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
            "{label:?}"
        );
        assert!(has_reserved_suffix(label), "{label:?}");
    }

    #[test]
    fn valid_subjects_are_kept() {
        let uuid = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6";
        for s in [
            "alice",
            "a.b_c-d",
            "0123",
            &"x".repeat(63),
            uuid,
            "ci-1234abc",
            "A--B",
        ] {
            assert_eq!(user_label(s), s);
            assert!(is_user_label_of(s, s));
        }
    }

    #[test]
    fn invalid_subjects_are_hashed_into_a_valid_label() {
        let long = format!("{}@corp", "u".repeat(100));
        let cases = [
            "alice@example.com",
            "-leading",
            "trailing.",
            "CN=Alice Smith,O=Data",
            "",
            "@@@",
            "ünïcode-user",
            "ünïcode",
            "日本語",
            &long,
            &"v".repeat(64),
        ];
        for s in cases {
            assert_hashed(s, &user_label(s));
        }
        assert!(user_label("alice@example.com").starts_with("alice-example.com--"));
        assert_eq!(user_label(&long).len(), 63);
        assert!(user_label(&long).starts_with(&"u".repeat(35)));
        // Nothing usable of the subject: a fixed stem, the hash still tells them apart.
        assert!(user_label("").starts_with("u--"));
        assert!(user_label("日本語").starts_with("u--"));
        assert_ne!(user_label(""), user_label("日本語"));
        assert_ne!(user_label("a@b"), user_label("a#b"));
        assert_eq!(user_label("a@b"), user_label("a@b"));
    }

    #[test]
    fn a_subject_shaped_like_a_hashed_label_is_hashed_too() {
        let new_shape = format!("bob--{}", "a".repeat(26));
        let cases = [
            new_shape.as_str(),
            "alice-example.com-1a2b3c4d",
            "deadbeef",
            "svc-0badf00d",
        ];
        for s in cases {
            assert!(is_label_value(s));
            let label = user_label(s);
            assert_ne!(label, s);
            assert_hashed(s, &label);
            assert!(label.starts_with(s.get(..3).unwrap()), "{label}");
        }
        // Not quite the reserved shapes: kept.
        for s in [
            format!("bob-{}", "a".repeat(26)),
            format!("bob--{}", "a".repeat(25)),
            format!("bob--{}", "A".repeat(26)),
            "svc-0BADF00D".to_string(),
            "svc-0badf00".to_string(),
            "svc_0badf00d".to_string(),
        ] {
            assert_eq!(user_label(&s), s);
        }
    }

    #[test]
    fn subjects_crafted_to_collide_under_the_previous_scheme_get_different_labels() {
        let victims = [
            "alice@example.com",
            "@@@",
            "ünïcode",
            "CN=Alice Smith,O=Data",
            &format!("{}@corp", "w".repeat(80)),
        ];
        for victim in victims {
            // Choosing one's subject to equal the victim's hashed label collided before...
            let crafted = legacy_user_label(victim);
            assert_ne!(crafted, victim);
            assert_eq!(legacy_user_label(&crafted), legacy_user_label(victim));
            // ...and does not now, whichever scheme's label the attacker imitates.
            assert_ne!(user_label(&crafted), user_label(victim), "{victim:?}");
            let crafted = user_label(victim);
            assert_ne!(user_label(&crafted), user_label(victim), "{victim:?}");
            // A new label never equals an old hashed one either (running jobs of the victim
            // keep theirs until they end).
            assert_ne!(user_label(&crafted), legacy_user_label(victim));
            assert_ne!(
                user_label(&legacy_user_label(victim)),
                legacy_user_label(victim)
            );
        }
    }

    #[test]
    fn the_previous_schemes_label_is_still_recognised_for_its_own_subject() {
        let old = legacy_user_label("alice@example.com");
        assert_eq!(old.len(), "alice-example.com".len() + 1 + 8);
        assert!(old.starts_with("alice-example.com-"));
        assert_ne!(old, user_label("alice@example.com"));
        assert!(is_user_label_of(&old, "alice@example.com"));
        assert!(is_user_label_of(
            &user_label("alice@example.com"),
            "alice@example.com"
        ));
        assert!(!is_user_label_of(&old, "bob@example.com"));
        assert!(!is_user_label_of("alice", "alice@example.com"));
        assert!(!is_user_label_of(
            &user_label("bob@example.com"),
            "alice@example.com"
        ));
        // The previous scheme, pinned: 54 characters of stem, 8 hex characters.
        let long = format!("{}@corp", "u".repeat(100));
        assert_eq!(legacy_user_label(&long).len(), 54 + 1 + 8);
        assert_eq!(legacy_user_label("").len(), 8);
        assert_eq!(legacy_user_label("alice"), "alice");
    }
}
