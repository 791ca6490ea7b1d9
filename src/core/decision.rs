//! Decisions: the job identity an object is admitted under, where it comes from (lineage), and
//! the typed reasons for a denial.
//!
//! A job identity is written once, by the mutation that admits the job, into labels and
//! annotations (`Stamp`); every later pod of the job reads it back from the object it descends
//! from (`JobIdentity::from_admitted`), never from labels the new pod carries itself. The
//! lifecycle controller uses the same readers.

use std::collections::BTreeMap;
use std::fmt;

use crate::core::hardening::{MAX_LISTED, Violation};
use crate::core::identity::IdentityError;
use crate::core::labels::{
    self, ISSUER_ANNOTATION, JOB_ID_LABEL, POLICY_ANNOTATION, ROLE_LABEL, RPC_SECRET_ANNOTATION,
    SCHEDULE_ID_ANNOTATION, SCOPES_ANNOTATION, SPARK_PROFILE_ANNOTATION, SUBMITTER_ANNOTATION,
    TOKEN_ID_ANNOTATION, USER_LABEL,
};
use crate::core::mutation::Stamp;
use crate::core::objects::Meta;

/// Who submitted a job and what the token granted: what every object of the job carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitter {
    pub subject: String,
    pub issuer: String,
    pub token_id: Option<String>,
    pub scopes: Vec<String>,
}

impl Submitter {
    /// Reads the submitter recorded on an admitted object. `None` when the object does not carry
    /// a complete record (it was never admitted by sparkward).
    pub fn from_annotations(meta: &Meta) -> Option<Self> {
        let subject = meta.annotation(SUBMITTER_ANNOTATION)?.to_string();
        let issuer = meta.annotation(ISSUER_ANNOTATION)?.to_string();
        if subject.is_empty() || issuer.is_empty() {
            return None;
        }
        // The user label must be the one derived from the subject: a mismatch means the record
        // was edited by hand (validation forbids that), so it is not trusted. The previous
        // scheme's label is accepted too: objects admitted before an upgrade carry it, and their
        // jobs keep their lineage (new objects are always written with the current scheme).
        if !meta
            .label(USER_LABEL)
            .is_some_and(|label| labels::is_user_label_of(label, &subject))
        {
            return None;
        }
        Some(Self {
            subject,
            issuer,
            token_id: meta
                .annotation(TOKEN_ID_ANNOTATION)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            scopes: meta
                .annotation(SCOPES_ANNOTATION)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        })
    }

    fn annotate(&self, annotations: &mut BTreeMap<&'static str, String>) {
        annotations.insert(SUBMITTER_ANNOTATION, self.subject.clone());
        annotations.insert(ISSUER_ANNOTATION, self.issuer.clone());
        if let Some(jti) = &self.token_id {
            annotations.insert(TOKEN_ID_ANNOTATION, jti.clone());
        }
        annotations.insert(SCOPES_ANNOTATION, self.scopes.join(" "));
    }
}

/// A job: its id, its submitter and the Spark security it was admitted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobIdentity {
    pub job_id: String,
    pub submitter: Submitter,
    /// `None` for jobs admitted before Spark security profiles existed.
    pub security: Option<JobSecurity>,
}

/// The Spark security a job was admitted with: its profile, and whether it has its own RPC
/// authentication Secret (`labels::rpc_secret_name`), which every pod of the job mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSecurity {
    pub profile: String,
    pub rpc_secret: bool,
}

impl JobIdentity {
    /// Reads the job an admitted object (SparkApplication or job pod) belongs to.
    pub fn from_admitted(meta: &Meta) -> Option<Self> {
        let job_id = meta
            .label(JOB_ID_LABEL)
            .filter(|id| labels::is_job_id(id))?;
        let submitter = Submitter::from_annotations(meta)?;
        let security = match (
            meta.annotation(SPARK_PROFILE_ANNOTATION),
            meta.annotation(RPC_SECRET_ANNOTATION),
        ) {
            (None, None) => None,
            (Some(profile), secret) if !profile.is_empty() => {
                // The secret's name follows from the job id; anything else was not written by
                // sparkward (and the validating webhook forbids edits).
                if secret.is_some_and(|s| s != labels::rpc_secret_name(job_id)) {
                    return None;
                }
                Some(JobSecurity {
                    profile: profile.to_string(),
                    rpc_secret: secret.is_some(),
                })
            }
            _ => return None,
        };
        Some(Self {
            job_id: job_id.to_string(),
            submitter,
            security,
        })
    }

    /// The job's RPC authentication Secret, if it has one.
    pub fn rpc_secret(&self) -> Option<String> {
        self.security
            .as_ref()
            .filter(|s| s.rpc_secret)
            .map(|_| labels::rpc_secret_name(&self.job_id))
    }

    pub fn user_label(&self) -> String {
        labels::user_label(&self.submitter.subject)
    }

    pub fn policy_name(&self) -> String {
        labels::policy_name(&self.job_id)
    }

    /// The labels that select the job's pods (also written into `spec.driver.labels` and
    /// `spec.executor.labels` of a SparkApplication).
    pub fn pod_labels(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            (JOB_ID_LABEL, self.job_id.clone()),
            (USER_LABEL, self.user_label()),
        ])
    }

    /// What sparkward writes on an object of this job. `role` is `driver`/`executor` on pods.
    pub fn stamp(&self, role: Option<&str>) -> Stamp {
        let mut labels = self.pod_labels();
        if let Some(role) = role {
            labels.insert(ROLE_LABEL, role.to_string());
        }
        let mut annotations = BTreeMap::new();
        self.submitter.annotate(&mut annotations);
        annotations.insert(POLICY_ANNOTATION, self.policy_name());
        if let Some(security) = &self.security {
            annotations.insert(SPARK_PROFILE_ANNOTATION, security.profile.clone());
            if let Some(secret) = self.rpc_secret() {
                annotations.insert(RPC_SECRET_ANNOTATION, secret);
            }
        }
        Stamp {
            labels,
            annotations,
        }
    }
}

/// What sparkward writes on a ScheduledSparkApplication: the submitter (runs inherit it) and the
/// id of the admission that verified it. No job id: each run is its own job. spark-operator
/// copies the schedule's labels (not its annotations) onto each run, so the user label travels
/// and the schedule id does not.
pub fn schedule_stamp(submitter: &Submitter, schedule_id: &str) -> Stamp {
    let mut annotations = BTreeMap::new();
    submitter.annotate(&mut annotations);
    annotations.insert(SCHEDULE_ID_ANNOTATION, schedule_id.to_string());
    Stamp {
        labels: BTreeMap::from([(USER_LABEL, labels::user_label(&submitter.subject))]),
        annotations,
    }
}

/// The Spark role of a pod, from Spark's own `spark-role` label.
pub fn spark_role(meta: &Meta) -> Option<&'static str> {
    match meta.label(labels::SPARK_ROLE_LABEL) {
        Some("driver") => Some("driver"),
        Some("executor") => Some("executor"),
        _ => None,
    }
}

/// Why a review was denied. `code()` is a fixed string for metrics and audit; `Display` is the
/// message the kubectl user reads: what is wrong and what to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The review or its object is not what the webhook can decide on.
    Malformed(String),
    /// A kind or operation this webhook does not handle (a webhook configuration error).
    Unsupported(String),
    /// The submitter's token failed verification; `code` comes from the identity error.
    Identity { code: &'static str, message: String },
    /// Settings explicitly weaker than the hardening.
    Hardening(Vec<Violation>),
    /// Hardening missing on an object that should already carry it (validation).
    NotHardened(Vec<Violation>),
    /// Images from outside `hardening.images.allowed`, not pinned when digests are required,
    /// or not valid references.
    Image(Vec<Violation>),
    /// `sparkward.io/` claims that contradict the derived identity.
    Spoofing(Vec<Violation>),
    /// The object claims to belong to a job that cannot be traced to an admission.
    Lineage(String),
    /// A `sparkward.io/stamp` that does not verify for this request (copied, edited, replayed,
    /// expired, or made under a key sparkward no longer holds).
    Stamp(String),
    /// `sparkward.io/` metadata or hardened fields changed by an update.
    Immutable(Vec<Violation>),
    /// A bearer token that would be stored: a copy of the submitter token (mutation), or a
    /// token of the identity provider (validation). Never holds the token itself.
    TokenCopy(Vec<Violation>),
    /// A network policy in an enforced namespace touched by someone who may not: a job policy
    /// by anyone but `policy.managers`, any other by anyone but them and the job admins.
    NotManager(String),
    /// A job's object changed, deleted or entered by someone who may not.
    NotOwner(String),
    /// Scopes the mapping does not know, with `unknownScopes: deny`.
    UnknownScopes(String),
    /// The job's CiliumNetworkPolicy could not be applied.
    PolicyApply { code: &'static str, message: String },
    /// A lookup the decision needs failed (API error, cache not synced).
    Lookup(String),
    /// The review did not finish within the deadline.
    Deadline(String),
    /// The webhook cannot decide safely right now (cluster unreachable, no keys).
    Unavailable(String),
}

impl From<IdentityError> for Reason {
    fn from(e: IdentityError) -> Self {
        Reason::Identity {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl Reason {
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Malformed(_) => "malformed",
            Reason::Unsupported(_) => "unsupported",
            Reason::Identity { code, .. } => code,
            Reason::Hardening(_) => "hardening",
            Reason::NotHardened(_) => "not_hardened",
            Reason::Image(_) => "image",
            Reason::Spoofing(_) => "spoofing",
            Reason::Lineage(_) => "lineage",
            Reason::Immutable(_) => "immutable",
            Reason::TokenCopy(_) => "token_copy",
            Reason::NotManager(_) => "not_manager",
            Reason::NotOwner(_) => "not_owner",
            Reason::Stamp(_) => "stamp",
            Reason::UnknownScopes(_) => "unknown_scopes",
            Reason::PolicyApply { .. } => "policy_apply",
            Reason::Lookup(_) => "lookup",
            Reason::Deadline(_) => "deadline",
            Reason::Unavailable(_) => "unavailable",
        }
    }

    /// HTTP-like status code for `response.status.code`.
    pub fn status_code(&self) -> u16 {
        match self {
            Reason::Malformed(_) => 400,
            Reason::Deadline(_) => 504,
            Reason::Unavailable(_) | Reason::Lookup(_) | Reason::PolicyApply { .. } => 503,
            _ => 403,
        }
    }
}

fn list(f: &mut fmt::Formatter<'_>, lead: &str, items: &[Violation]) -> fmt::Result {
    write!(f, "{lead}")?;
    for (i, v) in items.iter().take(MAX_LISTED).enumerate() {
        write!(f, "{}{v}", if i == 0 { ": " } else { "; " })?;
    }
    if items.len() > MAX_LISTED {
        write!(
            f,
            "; and {} more not listed: fix the ones above and resubmit to see the rest",
            items.len() - MAX_LISTED
        )?;
    }
    Ok(())
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Malformed(m)
            | Reason::Unsupported(m)
            | Reason::Lineage(m)
            | Reason::NotManager(m)
            | Reason::NotOwner(m)
            | Reason::Stamp(m)
            | Reason::UnknownScopes(m)
            | Reason::Lookup(m)
            | Reason::Deadline(m)
            | Reason::Unavailable(m) => f.write_str(m),
            Reason::Identity { message, .. } | Reason::PolicyApply { message, .. } => {
                f.write_str(message)
            }
            Reason::Hardening(v) => list(f, "the object weakens the required hardening", v),
            Reason::NotHardened(v) => list(f, "the object is not hardened", v),
            Reason::Image(v) => list(f, "the object uses images that are not approved", v),
            Reason::Spoofing(v) => list(f, "the object carries identity claims it may not make", v),
            Reason::Immutable(v) => list(f, "the update changes fields sparkward protects", v),
            Reason::TokenCopy(v) => list(f, "the object would store a bearer token", v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitter() -> Submitter {
        Submitter {
            subject: "alice@example.com".into(),
            issuer: "https://idp".into(),
            token_id: Some("jti-1".into()),
            scopes: vec!["a".into(), "b:c".into()],
        }
    }

    #[test]
    fn stamp_round_trips_through_metadata() {
        let job = JobIdentity {
            job_id: labels::job_id_for_test("uid-1"),
            submitter: submitter(),
            security: None,
        };
        let stamp = job.stamp(Some("driver"));
        let meta = Meta {
            labels: Some(
                stamp
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ),
            annotations: Some(
                stamp
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ),
            ..Meta::default()
        };
        assert_eq!(JobIdentity::from_admitted(&meta), Some(job));
        assert_eq!(meta.label(ROLE_LABEL), Some("driver"));
    }

    #[test]
    fn edited_user_label_is_not_trusted() {
        let job = JobIdentity {
            job_id: labels::job_id_for_test("uid-1"),
            submitter: submitter(),
            security: None,
        };
        let stamp = job.stamp(None);
        let mut labels: BTreeMap<String, String> = stamp
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        labels.insert(USER_LABEL.into(), "mallory".into());
        let meta = Meta {
            labels: Some(labels),
            annotations: Some(
                stamp
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ),
            ..Meta::default()
        };
        assert_eq!(JobIdentity::from_admitted(&meta), None);
    }

    fn meta_with_user(job: &JobIdentity, user: &str) -> Meta {
        let stamp = job.stamp(None);
        let mut labels: BTreeMap<String, String> = stamp
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        labels.insert(USER_LABEL.into(), user.into());
        Meta {
            labels: Some(labels),
            annotations: Some(
                stamp
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ),
            ..Meta::default()
        }
    }

    #[test]
    fn objects_stored_with_the_previous_user_label_keep_their_identity() {
        let job = JobIdentity {
            job_id: labels::job_id_for_test("uid-1"),
            submitter: submitter(),
            security: None,
        };
        let old = labels::legacy_user_label("alice@example.com");
        assert_ne!(old, job.user_label());
        let meta = meta_with_user(&job, &old);
        assert_eq!(JobIdentity::from_admitted(&meta), Some(job.clone()));
        // What is written from it is the current label.
        assert_eq!(job.stamp(None).labels[USER_LABEL], job.user_label());
        assert_eq!(
            schedule_stamp(&job.submitter, &job.job_id).labels[USER_LABEL],
            job.user_label()
        );
        // Another subject's label, of either scheme, is not accepted.
        for other in [
            labels::legacy_user_label("bob@example.com"),
            labels::user_label("bob@example.com"),
            // The subject that collided with alice's under the previous scheme.
            labels::user_label(&old),
        ] {
            assert_eq!(
                JobIdentity::from_admitted(&meta_with_user(&job, &other)),
                None
            );
        }
    }

    #[test]
    fn a_denial_lists_at_most_64_items_and_counts_the_rest() {
        let item = |i: usize| Violation {
            field: format!("metadata.labels[\"sparkward.io/k{i}\"]"),
            problem: "is a claim".into(),
            fix: "remove it".into(),
        };
        let message = Reason::Spoofing((0..100).map(item).collect()).to_string();
        assert!(
            message.contains("k63\"]") && !message.contains("k64\"]"),
            "{message}"
        );
        assert!(
            message.ends_with(
                "; and 36 more not listed: fix the ones above and resubmit to see the rest"
            ),
            "{message}"
        );
        let short = Reason::Spoofing((0..2).map(item).collect()).to_string();
        assert!(!short.contains("not listed"), "{short}");
    }

    #[test]
    fn reasons_have_codes_and_messages() {
        let r = Reason::Hardening(vec![Violation {
            field: "spec.hostNetwork".into(),
            problem: "is true".into(),
            fix: "remove it".into(),
        }]);
        assert_eq!(r.code(), "hardening");
        assert_eq!(
            r.to_string(),
            "the object weakens the required hardening: spec.hostNetwork is true: remove it"
        );
        let r = Reason::TokenCopy(vec![Violation {
            field: "spec.containers[0].env[1].value".into(),
            problem: "holds a copy of the submitter token".into(),
            fix: "remove it".into(),
        }]);
        assert_eq!((r.code(), r.status_code()), ("token_copy", 403));
        assert_eq!(
            r.to_string(),
            "the object would store a bearer token: spec.containers[0].env[1].value holds a copy \
             of the submitter token: remove it"
        );
        let r = Reason::Image(vec![Violation {
            field: "spec.image".into(),
            problem: "is 'x', which is not pinned by digest".into(),
            fix: "pin it".into(),
        }]);
        assert_eq!((r.code(), r.status_code()), ("image", 403));
        assert_eq!(
            r.to_string(),
            "the object uses images that are not approved: spec.image is 'x', which is not \
             pinned by digest: pin it"
        );
    }
}
