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
pub const ENFORCE_LABEL: &str = "sparkward.io/enforce";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
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
/// Sanitised user labels are cut to this length before the hash suffix is added.
const USER_LABEL_CUT: usize = 54;

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

/// The label-safe form of a verified subject (DESIGN.md): the subject itself when it is a
/// non-empty valid label value; otherwise invalid characters become `-`, the result is trimmed
/// to alphanumerics at both ends, cut to 54 characters, and `-` plus the first 8 hex characters
/// of sha256(subject) are appended so different subjects never share a label.
pub fn user_label(subject: &str) -> String {
    if !subject.is_empty() && is_label_value(subject) {
        return subject.to_string();
    }
    let digest = Sha256::digest(subject.as_bytes());
    let suffix: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
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
    let cut: String = trimmed.chars().take(USER_LABEL_CUT).collect();
    let cut = cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if cut.is_empty() {
        suffix
    } else {
        format!("{cut}-{suffix}")
    }
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

    #[test]
    fn valid_subjects_are_kept() {
        for s in ["alice", "a.b_c-d", "0123", &"x".repeat(63)] {
            assert_eq!(user_label(s), s);
        }
    }

    #[test]
    fn invalid_subjects_are_sanitised_with_a_hash() {
        let cases = [
            "alice@example.com",
            "-leading",
            "trailing.",
            "CN=Alice Smith,O=Data",
            "",
            "@@@",
            "ünïcode-user",
        ];
        for s in cases {
            let label = user_label(s);
            assert!(is_label_value(&label), "{s:?} -> {label:?}");
            assert!(!label.is_empty(), "{s:?}");
            assert!(label.len() <= 63, "{s:?} -> {label:?}");
        }
        assert!(user_label("alice@example.com").starts_with("alice-example.com-"));
        assert_ne!(user_label("a@b"), user_label("a#b"));
    }

    #[test]
    fn long_subjects_are_cut_to_54_plus_hash() {
        let s = format!("{}@corp", "u".repeat(100));
        let label = user_label(&s);
        assert_eq!(label.len(), 54 + 1 + 8);
        assert!(label.starts_with(&"u".repeat(54)));
        // A 64-character valid-looking subject is too long and gets the hash too.
        let long = "v".repeat(64);
        assert_eq!(user_label(&long).len(), 63);
    }
}
