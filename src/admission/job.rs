//! What every admitted kind shares: establishing a job's identity (token verification, fresh job
//! ids), the admission stamp that lets later webhook calls of the same request recognise that
//! identity, applying a new job's policy before the answer, and the claim/immutability checks
//! on `sparkward.io/` metadata.
//!
//! Ordering invariant: a new job's CiliumNetworkPolicy is applied (and the apply confirmed)
//! before the allowed answer is produced; on dry runs it is rendered and not applied. Any
//! failure on the way is a denial, never an allowed answer without a policy.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use json_patch::PatchOperation;

use crate::admission::decode::{Operation, PodParts, Request};
use crate::admission::no_identity;
use crate::admission::review::{Allowed, Ctx, Decided, Facts, Mode, Pipeline};
use crate::config::SparkProfile;
use crate::core::decision::{JobIdentity, JobSecurity, Reason, Submitter, spark_role};
use crate::core::hardening::{Findings, Loc, Violation};
use crate::core::identity::{IdentityError, requester_identity};
use crate::core::images::{ImageField, check_images};
use crate::core::json;
use crate::core::labels::{self, JOB_ID_LABEL, OPERATOR_LABEL_PREFIX, PREFIX, STAMP_ANNOTATION};
use crate::core::mutation::{
    Stamp, conflicting_claims, token_present, without_superseded_user_label,
};
use crate::core::objects::{Meta, SparkAppSpec};
use crate::core::ownership::{self, Action, JobObject, Refusal, Requester, Trusted};
use crate::core::policy::{PolicyError, PolicyInput, render_policy};
use crate::core::spark::{RPC_SECRET_BYTES, RpcSecret};
use crate::core::stamp::{self, Binding, BoundName, Opened, Source, StampError};
use crate::telemetry::OutcomeLabels;

/// Seconds since the Unix epoch (0 if the clock is before it, which no stamp survives).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Pipeline {
    /// The id of the job (or schedule) this request starts: derived under the stamp key from
    /// the request uid, so it is unguessable and unique per request, and a retried call (the
    /// API server resends the same review after a transport error) re-applies the same policy
    /// instead of leaving a second one behind. Re-invocations and the validating call, which
    /// have other uids, read the id back from the stamped object.
    pub(super) fn new_job_id(&self, ctx: &Ctx<'_>, purpose: &str) -> Result<String, Reason> {
        let keys = self.stamp_keys.current().map_err(no_stamp_keys)?;
        Ok(labels::job_id_from(&keys.derive(purpose, &ctx.req.uid)))
    }

    pub(super) fn token_annotation(&self) -> &str {
        self.config
            .identity
            .as_ref()
            .map_or(labels::TOKEN_ANNOTATION, |i| i.annotation.as_str())
    }

    pub(super) fn is_operator(&self, username: &str) -> bool {
        self.config
            .identity
            .as_ref()
            .is_some_and(|i| i.spark_operator.iter().any(|o| o == username))
    }

    // -----------------------------------------------------------------------------------------
    // Stamps
    // -----------------------------------------------------------------------------------------

    /// The binding of a stamp on `meta` in this call. Before the API server assigns a
    /// `generateName` object its name (mutating calls), the stamp binds the prefix; a validating
    /// call recognises such a stamp by its flag and checks that the assigned name extends it.
    fn binding<'a>(
        &self,
        req: &'a Request<'_>,
        mode: Mode,
        kind: &'a str,
        meta: &'a Meta,
        generated_stamp: bool,
    ) -> Result<Binding<'a>, StampError> {
        let name = meta
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(req.name.as_deref().filter(|n| !n.is_empty()));
        let prefix = meta.generate_name.as_deref().unwrap_or("");
        // The API server assigns a generateName object its name after the mutating webhooks:
        // a mutating call never sees a name there, so a named object with a prefix-bound stamp
        // is a copy. Only the validating call sees the assigned name extend the prefix.
        let validating = mode == Mode::Validate;
        let name = match (name, generated_stamp) {
            (Some(n), true) if validating && !prefix.is_empty() && n.starts_with(prefix) => {
                BoundName::Generated(prefix)
            }
            (Some(_), true) => return Err(StampError::NameAssigned),
            (Some(n), false) => BoundName::Named(n),
            (None, _) => BoundName::Generated(prefix),
        };
        let (pod, pod_uid) = req.user_info.bound_pod().unwrap_or(("", None));
        Ok(Binding {
            kind,
            namespace: req.namespace.as_deref().unwrap_or(""),
            name,
            username: &req.user_info.username,
            user_uid: &req.user_info.uid,
            bound_pod: (pod, pod_uid.unwrap_or("")),
            dry_run: req.is_dry_run(),
        })
    }

    /// Adds the stamp that attests `stamp`'s entries for this request to `stamp`.
    pub(super) fn seal(
        &self,
        ctx: &Ctx<'_>,
        meta: &Meta,
        stamp: &mut Stamp,
        source: Source,
    ) -> Result<(), Reason> {
        let keys = self.stamp_keys.current().map_err(no_stamp_keys)?;
        // A mutating call binds the name it sees; a generateName object has none yet.
        let kind = kind_key(ctx.req);
        let binding = self
            .binding(ctx.req, ctx.mode, &kind, meta, false)
            .map_err(|e| Reason::Malformed(format!("the object cannot be stamped: {e}")))?;
        let covered = stamp::covered(
            stamp.labels.iter().map(|(k, v)| (*k, v.as_str())),
            stamp.annotations.iter().map(|(k, v)| (*k, v.as_str())),
            self.token_annotation(),
        );
        let expires = unix_now().saturating_add(self.config.stamp.validity.as_secs());
        let sealed = stamp::seal(&keys, &binding, source, &covered, expires);
        stamp.annotations.insert(STAMP_ANNOTATION, sealed);
        Ok(())
    }

    /// Opens the stamp `meta` carries for this request. `Ok(None)`: the object has no stamp.
    /// A stamp that does not open is a denial: it was copied, edited, replayed or expired.
    pub(super) fn open_stamp(
        &self,
        ctx: &Ctx<'_>,
        meta: &Meta,
        kind: &str,
    ) -> Result<Option<Opened>, Reason> {
        let Some(sealed) = meta.annotation(STAMP_ANNOTATION) else {
            return Ok(None);
        };
        let keys = self.stamp_keys.current().map_err(no_stamp_keys)?;
        let invalid = |e: StampError| {
            Reason::Stamp(format!(
                "this {kind} carries a {STAMP_ANNOTATION} annotation that is not valid for this \
                 request: {e}. Stamps are written by sparkward's mutating webhook for one \
                 request only: remove sparkward.io/ labels and annotations from the manifest \
                 (they are never copied between objects) and submit again"
            ))
        };
        let generated = stamp::bound_to_generated_name(sealed);
        let kind_key = kind_key(ctx.req);
        let binding = self
            .binding(ctx.req, ctx.mode, &kind_key, meta, generated)
            .map_err(invalid)?;
        let covered = stamp::covered(
            meta.labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
            meta.annotations
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
            self.token_annotation(),
        );
        stamp::open(
            &keys,
            sealed,
            &binding,
            &covered,
            unix_now(),
            self.config.stamp.validity.as_secs(),
        )
        .map(Some)
        .map_err(invalid)
    }

    /// The validating pass of a new object: it must carry a stamp sparkward made in this
    /// request.
    pub(super) fn require_stamp(
        &self,
        ctx: &mut Ctx<'_>,
        meta: &Meta,
        kind: &str,
    ) -> Result<Opened, Reason> {
        let opened = self
            .open_stamp(ctx, meta, kind)?
            .ok_or_else(|| not_admitted_here(kind))?;
        ctx.facts.identity_source = Some(opened.source.as_str());
        Ok(opened)
    }

    // -----------------------------------------------------------------------------------------
    // Identity
    // -----------------------------------------------------------------------------------------

    /// The submitter of a new job: the verified token in the annotation, or, with no token
    /// and where the namespace opted in, the API server's own OIDC login of the requester.
    pub(super) async fn verify_token(
        &self,
        ctx: &mut Ctx<'_>,
        meta: &Meta,
    ) -> Result<(Submitter, Source), Reason> {
        let Some(identity) = &self.config.identity else {
            return Err(no_identity());
        };
        let token = meta
            .annotation(&identity.annotation)
            .filter(|t| !t.trim().is_empty());
        let Some(token) = token else {
            let user = &ctx.req.user_info;
            let namespace = ctx.req.namespace.as_deref().unwrap_or("");
            return match requester_identity(identity, namespace, &user.username, &user.groups) {
                Some(submitter) => {
                    ctx.facts.identity_source = Some(Source::Requester.as_str());
                    ctx.facts.submitter = Some(submitter.clone());
                    Ok((submitter, Source::Requester))
                }
                None => Err(Reason::from(IdentityError::missing_token(identity))),
            };
        };
        let started = Instant::now();
        let verified = self
            .verifier
            .verify(token.trim(), &ctx.req.user_info.username, identity)
            .await;
        if let Some(m) = &self.metrics {
            m.token_verification_duration
                .observe(started.elapsed().as_secs_f64());
        }
        let submitter = verified?;
        ctx.facts.identity_source = Some(Source::Token.as_str());
        ctx.facts.submitter = Some(submitter.clone());
        Ok((submitter, Source::Token))
    }

    /// The Spark security a new job in `namespace` gets: the profile its namespace label names
    /// (or the default one).
    pub(super) async fn job_security(&self, namespace: &str) -> Result<JobSecurity, Reason> {
        let spark = &self.config.spark;
        let labels = self
            .lookup
            .namespace_labels(namespace)
            .await
            .map_err(|e| lookup_failed("Namespace", "", namespace, e))?
            .unwrap_or_default();
        let name = labels
            .get(&spark.profile_label)
            .cloned()
            .unwrap_or_else(|| spark.default_profile.clone());
        let profile = spark.profiles.get(&name).ok_or_else(|| {
            Reason::Unavailable(format!(
                "namespace {namespace} selects the Spark security profile '{name}' (label {}), \
                 which sparkward's configuration does not define: ask the platform team to fix \
                 the label or add the profile (spark.profiles)",
                spark.profile_label
            ))
        })?;
        Ok(JobSecurity {
            profile: name,
            rpc_secret: profile.rpc_secret,
        })
    }

    /// The profile a job was admitted under, as configured now; `None` for jobs from before
    /// profiles. A profile removed from the configuration since is a denial: the job's
    /// settings can no longer be checked.
    pub(super) fn profile_of<'c>(
        &'c self,
        job: &JobIdentity,
    ) -> Result<Option<&'c SparkProfile>, Reason> {
        let Some(security) = &job.security else {
            return Ok(None);
        };
        self.config
            .spark
            .profiles
            .get(&security.profile)
            .map(Some)
            .ok_or_else(|| {
                Reason::Unavailable(format!(
                    "job {} was admitted under the Spark security profile '{}', which \
                     sparkward's configuration no longer defines: ask the platform team",
                    job.job_id, security.profile
                ))
            })
    }

    /// The allowed answer for a job's object: a new job's policy is applied first.
    pub(super) async fn allow_job(
        &self,
        ctx: &mut Ctx<'_>,
        job: &JobIdentity,
        namespace: &str,
        new_job: bool,
        patch: Vec<PatchOperation>,
    ) -> Decided {
        let warnings = if new_job {
            let warnings = self.apply_policy(ctx, job, namespace).await?;
            // After the policy: a Secret whose policy failed would have no owner to be reaped
            // with (the lifecycle controller finds a job's Secret through its policy).
            self.create_rpc_secret(ctx, job, namespace).await?;
            warnings
        } else {
            Vec::new()
        };
        Ok(Allowed { patch, warnings })
    }

    /// A new job's RPC Secret (when its profile asks for one): 256 fresh random bits, created
    /// before answering unless this is a dry run.
    async fn create_rpc_secret(
        &self,
        ctx: &mut Ctx<'_>,
        job: &JobIdentity,
        namespace: &str,
    ) -> Result<(), Reason> {
        let Some(name) = job.rpc_secret() else {
            return Ok(());
        };
        let mut data = vec![0u8; RPC_SECRET_BYTES];
        getrandom::fill(&mut data).map_err(|e| {
            Reason::Unavailable(format!(
                "sparkward could not draw the job's RPC secret ({e}); nothing was admitted, \
                 retry shortly"
            ))
        })?;
        let secret = RpcSecret {
            namespace: namespace.to_string(),
            name,
            job_id: job.job_id.clone(),
            user_label: job.user_label(),
            data,
        };
        if !ctx.req.is_dry_run() {
            self.secrets
                .create(&secret)
                .await
                .map_err(|e| Reason::PolicyApply {
                    code: e.code(),
                    message: e.to_string(),
                })?;
        }
        ctx.secrets.push(secret);
        Ok(())
    }

    /// Renders the job's policy and, unless this is a dry run, applies it before answering.
    async fn apply_policy(
        &self,
        ctx: &mut Ctx<'_>,
        job: &JobIdentity,
        namespace: &str,
    ) -> Result<Vec<String>, Reason> {
        let user_label = job.user_label();
        let rendered = render_policy(
            &PolicyInput {
                job_id: &job.job_id,
                namespace,
                user_label: &user_label,
                scopes: &job.submitter.scopes,
            },
            &self.config.policy,
        )
        .map_err(|e| match e {
            PolicyError::UnknownScopes(_) => Reason::UnknownScopes(e.to_string()),
            // A scope rule or input that cannot be rendered is a configuration fault: deny, and
            // say so (config validation makes this unreachable for linted scope rules).
            other => Reason::Unavailable(format!(
                "sparkward could not render the job's network policy: {other}; tell the \
                 platform team"
            )),
        })?;
        let applied = if ctx.req.is_dry_run() {
            Ok(())
        } else {
            let started = Instant::now();
            let applied = self.policies.apply(&rendered.policy).await;
            if let Some(m) = &self.metrics {
                let outcome = if applied.is_ok() {
                    "success"
                } else {
                    "failure"
                };
                m.policy_apply_duration
                    .get_or_create(&OutcomeLabels { outcome })
                    .observe(started.elapsed().as_secs_f64());
            }
            applied
        };
        // The outcome reports the policy whether or not its apply succeeded.
        ctx.policies.push(rendered.policy);
        applied.map_err(|e| Reason::PolicyApply {
            code: e.code(),
            message: e.to_string(),
        })?;
        Ok(rendered.warnings)
    }

    // -----------------------------------------------------------------------------------------
    // Ownership
    // -----------------------------------------------------------------------------------------

    /// The Kubernetes user a job was submitted as: the requester binding's prefix + subject.
    pub(super) fn owner_username(&self, submitter: &Submitter) -> String {
        let prefix = self
            .config
            .identity
            .as_ref()
            .and_then(|i| i.requester_binding.as_ref())
            .map_or("", |b| b.username_prefix.as_str());
        format!("{prefix}{}", submitter.subject)
    }

    /// Refuses `actions` on an object of `job` unless the requester's roles permit them (see
    /// `core::ownership`). `node`: the pod's node, for the kubelet. The requester's own-driver
    /// role needs a lookup and is resolved only when the other roles do not suffice.
    pub(super) async fn require_owner_rights(
        &self,
        ctx: &mut Ctx<'_>,
        object: JobObject,
        job: &JobIdentity,
        node: Option<&str>,
        actions: &[Action],
    ) -> Result<(), Reason> {
        if actions.is_empty() {
            return Ok(());
        }
        record_job(&mut ctx.facts, job);
        let Some(identity) = &self.config.identity else {
            return Err(no_identity());
        };
        let user = &ctx.req.user_info;
        let owner = self.owner_username(&job.submitter);
        let trusted = Trusted {
            admin_users: &identity.job_admins.users,
            admin_groups: &identity.job_admins.groups,
            operators: &identity.spark_operator,
            controllers: &identity.kubernetes_controllers,
            evictor_users: &identity.evictors.users,
            evictor_groups: &identity.evictors.groups,
        };
        let mut who = Requester {
            username: &user.username,
            groups: &user.groups,
            own_driver: false,
        };
        let mut refused = ownership::refused(
            &ownership::roles(&who, &owner, node, &trusted),
            object,
            actions,
        );
        if !refused.is_empty() && self.is_own_driver(ctx, &job.job_id).await? {
            who.own_driver = true;
            refused = ownership::refused(
                &ownership::roles(&who, &owner, node, &trusted),
                object,
                actions,
            );
        }
        if refused.is_empty() {
            return Ok(());
        }
        Err(Reason::NotOwner(
            Refusal {
                object,
                namespace: ctx.req.namespace.clone().unwrap_or_default(),
                name: ctx.req.name.clone().unwrap_or_default(),
                job_id: job.job_id.clone(),
                owner,
                requester: user.username.clone(),
                refused,
            }
            .to_string(),
        ))
    }

    /// Whether the requester is the driver pod of job `job_id`: a service-account token bound
    /// to a pod of this namespace that is that job's driver.
    async fn is_own_driver(&self, ctx: &Ctx<'_>, job_id: &str) -> Result<bool, Reason> {
        let user = &ctx.req.user_info;
        let namespace = ctx.req.namespace.as_deref().unwrap_or("");
        let (Some((pod_name, pod_uid)), Some((sa_namespace, _))) =
            (user.bound_pod(), user.service_account())
        else {
            return Ok(false);
        };
        if sa_namespace != namespace {
            return Ok(false);
        }
        let Some(pod) = self
            .lookup
            .pod(namespace, pod_name)
            .await
            .map_err(|e| lookup_failed("Pod", namespace, pod_name, e))?
        else {
            return Ok(false);
        };
        let same_pod = pod_uid.is_none_or(|uid| pod.meta.uid.as_deref() == Some(uid));
        Ok(same_pod
            && spark_role(&pod.meta) == Some("driver")
            && JobIdentity::from_admitted(&pod.meta).is_some_and(|j| j.job_id == job_id))
    }

    // -----------------------------------------------------------------------------------------
    // Claims and protected metadata
    // -----------------------------------------------------------------------------------------

    pub(super) fn claims(&self, meta: &Meta, stamp: &Stamp) -> Vec<Violation> {
        conflicting_claims(
            &Loc::root().key("metadata"),
            meta.labels.as_ref(),
            meta.annotations.as_ref(),
            stamp,
            self.token_annotation(),
        )
    }

    /// `claims` for the mutating pass, where an arriving object may carry the previous user
    /// label scheme's value for its own subject, copied from an object admitted before an
    /// upgrade: not a claim, replaced by the plan (`without_superseded_user_label`).
    pub(super) fn admission_claims(&self, meta: &Meta, stamp: &Stamp) -> Vec<Violation> {
        match without_superseded_user_label(meta.labels.as_ref(), stamp) {
            Some(labels) => conflicting_claims(
                &Loc::root().key("metadata"),
                Some(&labels),
                meta.annotations.as_ref(),
                stamp,
                self.token_annotation(),
            ),
            None => self.claims(meta, stamp),
        }
    }

    pub(super) fn require_token_removed(&self, meta: &Meta) -> Result<(), Reason> {
        let ann = self.token_annotation();
        if token_present(meta, ann) {
            return Err(Reason::NotHardened(vec![Violation {
                field: format!("metadata.annotations[\"{ann}\"]"),
                problem: "is still present".into(),
                fix: "sparkward's mutating webhook removes the token so it is never stored; check \
                      that the mutating webhook configuration covers this namespace"
                    .into(),
            }]));
        }
        Ok(())
    }

    /// The images `fields` names must be approved (`hardening.images`); `fields` is only
    /// computed when an image rule is configured.
    pub(super) fn require_approved_images(
        &self,
        fields: impl FnOnce() -> Vec<ImageField>,
    ) -> Result<(), Reason> {
        let policy = &self.config.hardening.images;
        if !policy.is_active() {
            return Ok(());
        }
        let violations = check_images(policy, &fields());
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Reason::Image(violations))
        }
    }

    pub(super) fn require_hardened(&self, findings: Findings) -> Result<(), Reason> {
        if !findings.weaker.is_empty() {
            return Err(Reason::Hardening(findings.into_violations()));
        }
        let missing = findings.missing_as_violations();
        if !missing.is_empty() {
            return Err(Reason::NotHardened(missing));
        }
        Ok(())
    }

    /// Changes to `sparkward.io/` labels and annotations (the token annotation included: a
    /// token may only be given at creation).
    pub(super) fn protected_metadata_changes(&self, new: &Meta, old: &Meta) -> Vec<Violation> {
        let meta = Loc::root().key("metadata");
        let mut out = protected_changes(
            &meta.key("labels"),
            new.labels.as_ref(),
            old.labels.as_ref(),
            |k| k.starts_with(PREFIX),
        );
        out.extend(protected_changes(
            &meta.key("annotations"),
            new.annotations.as_ref(),
            old.annotations.as_ref(),
            |k| k.starts_with(PREFIX),
        ));
        out
    }
}

/// `group/Kind` of the request: stable across the webhook calls of one request (the version
/// may differ under `matchPolicy: Equivalent`).
fn kind_key(req: &Request<'_>) -> String {
    format!("{}/{}", req.kind.group, req.kind.kind)
}

/// The parts of an object whose change decides the action of an UPDATE. `spec` and the owner
/// references stay raw: equal bytes are equal (the API server encodes old and new objects the
/// same way); unequal bytes are compared as JSON (`json::same_json`) before they count as a
/// change.
#[derive(serde::Deserialize)]
struct Shape<'a> {
    #[serde(borrow, default)]
    metadata: ShapeMeta<'a>,
    #[serde(borrow, default)]
    spec: Option<&'a serde_json::value::RawValue>,
}

#[derive(Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ShapeMeta<'a> {
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    finalizers: Option<Vec<String>>,
    #[serde(borrow)]
    owner_references: Option<&'a serde_json::value::RawValue>,
}

impl ShapeMeta<'_> {
    fn same(&self, other: &ShapeMeta<'_>) -> bool {
        self.labels == other.labels
            && self.annotations == other.annotations
            && self.finalizers == other.finalizers
            && !json::raw_differs(self.owner_references, other.owner_references)
    }
}

/// What an UPDATE of a job object does, from its old and new object: the actions the
/// ownership table is asked about.
pub(super) fn update_actions(req: &Request<'_>) -> Result<Vec<Action>, Reason> {
    fn parse<'r>(
        raw: Option<&'r serde_json::value::RawValue>,
        what: &str,
        kind: &str,
    ) -> Result<Shape<'r>, Reason> {
        let raw = raw.ok_or_else(|| Reason::Malformed(format!("request.{what} is missing")))?;
        serde_json::from_str(raw.get())
            .map_err(|e| Reason::Malformed(format!("request.{what} is not a valid {kind}: {e}")))
    }
    let kind = req.kind.kind.as_str();
    let (new, old) = (
        parse(req.object(), "object", kind)?,
        parse(req.old_object(), "oldObject", kind)?,
    );
    let mut actions = Vec::new();
    match req.sub_resource.as_deref().unwrap_or("") {
        "status" => actions.push(Action::Status),
        "ephemeralcontainers" => actions.push(Action::Enter),
        _ => {
            if json::raw_differs(new.spec, old.spec) {
                actions.push(Action::Spec);
            }
        }
    }
    if !new.metadata.same(&old.metadata) {
        actions.push(Action::Metadata);
    }
    Ok(actions)
}

/// `update_actions` of a Pod UPDATE whose objects decode read into parts (`sub`: the
/// subresource). The same actions from the same fields: the raw `spec` compared as
/// `update_actions` compares it, the metadata shape field by field. Cannot fail: the parts
/// hold everything the shape parse reads, and were only made where it succeeds.
pub(super) fn update_actions_of(sub: &str, new: &PodParts<'_>, old: &PodParts<'_>) -> Vec<Action> {
    let mut actions = Vec::new();
    match sub {
        "status" => actions.push(Action::Status),
        "ephemeralcontainers" => actions.push(Action::Enter),
        _ => {
            // Both specs are kept raw outside status writes (a missing one counts as changed).
            if json::raw_differs(new.spec, old.spec) {
                actions.push(Action::Spec);
            }
        }
    }
    if !new.same_metadata_shape(old) {
        actions.push(Action::Metadata);
    }
    actions
}

fn no_stamp_keys(why: String) -> Reason {
    Reason::Unavailable(format!(
        "sparkward has no stamp key loaded ({why}), so it cannot mark or recognise what it \
         admitted; nothing was admitted. The platform team must provide the Secret \
         sparkward-stamp-keys (see the README's install guide)"
    ))
}

/// Keys selected by `protected` whose value differs between `old` and `new` (added, removed or
/// changed), in key order. Both maps are sorted, so they are walked side by side instead of
/// looking every key of either up in the other.
pub(super) fn protected_changes(
    loc: &Loc,
    new: Option<&BTreeMap<String, String>>,
    old: Option<&BTreeMap<String, String>>,
    protected: impl Fn(&str) -> bool,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let (mut new, mut old) = (new.into_iter().flatten(), old.into_iter().flatten());
    let (mut n, mut o) = (new.next(), old.next());
    loop {
        // The smaller key of the two heads, with its value on each side.
        let (key, new_value, old_value) = match (n, o) {
            (None, None) => break,
            (Some((nk, nv)), Some((ok, ov))) => match nk.cmp(ok) {
                Ordering::Less => {
                    n = new.next();
                    (nk, Some(nv), None)
                }
                Ordering::Greater => {
                    o = old.next();
                    (ok, None, Some(ov))
                }
                Ordering::Equal => {
                    (n, o) = (new.next(), old.next());
                    (nk, Some(nv), Some(ov))
                }
            },
            (Some((nk, nv)), None) => {
                n = new.next();
                (nk, Some(nv), None)
            }
            (None, Some((ok, ov))) => {
                o = old.next();
                (ok, None, Some(ov))
            }
        };
        if new_value == old_value || !protected(key) {
            continue;
        }
        let problem = match (old_value, new_value) {
            (None, Some(v)) => format!("would be added as '{v}'"),
            (Some(_), None) => "would be removed".to_string(),
            (Some(a), Some(b)) => format!("would change from '{a}' to '{b}'"),
            (None, None) => String::new(),
        };
        out.push(Violation {
            field: loc.key(key).human(),
            problem,
            fix: "sparkward's identity labels and annotations are set once at admission and \
                  cannot be edited; submit a new job instead"
                .into(),
        });
    }
    out
}

/// `sparkoperator.k8s.io/` labels added, removed or changed by an update.
pub(super) fn operator_label_changes(
    loc: &Loc,
    new: Option<&BTreeMap<String, String>>,
    old: Option<&BTreeMap<String, String>>,
) -> Vec<Violation> {
    protected_changes(loc, new, old, |k| k.starts_with(OPERATOR_LABEL_PREFIX))
        .into_iter()
        .map(|v| Violation {
            fix: "sparkoperator.k8s.io/ labels are spark-operator's: only it may set or change \
                  them"
                .into(),
            ..v
        })
        .collect()
}

/// `sparkoperator.k8s.io/` labels on an object a tenant creates.
pub(super) fn operator_label_claims(
    loc: &Loc,
    labels: Option<&BTreeMap<String, String>>,
) -> Vec<Violation> {
    labels
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(OPERATOR_LABEL_PREFIX))
        .map(|(k, v)| Violation {
            field: loc.key(k).human(),
            problem: format!("is set to '{v}'"),
            fix: "remove it: sparkoperator.k8s.io/ labels are set by spark-operator only (they \
                  tie pods to their SparkApplication)"
                .into(),
        })
        .collect()
}

/// spark-operator's labels and owners that a tenant could smuggle onto the pods of an
/// application through its spec: `sparkoperator.k8s.io/` keys in the driver and executor
/// labels, the driver Service's labels, the pod templates' labels, Spark properties that set
/// pod or Service labels (`spark.kubernetes.{driver,executor,driver.service}.label.*`), and
/// ownerReferences in the pod templates (the operator passes them through to the pods, where
/// a controller reference would tie a pod to someone else's application). Tenants' labels win
/// over the operator's own when spark-submit assembles them, so none of these may be set by
/// anyone but the operator.
pub(super) fn app_spec_operator_claims(spec_loc: &Loc, spec: &SparkAppSpec) -> Vec<Violation> {
    let mut out = Vec::new();
    for (role, pod) in [("driver", &spec.driver), ("executor", &spec.executor)] {
        let Some(pod) = pod else { continue };
        let loc = spec_loc.key(role);
        out.extend(operator_label_claims(
            &loc.key("labels"),
            pod.labels.as_ref(),
        ));
        out.extend(operator_label_claims(
            &loc.key("serviceLabels"),
            pod.service_labels.as_ref(),
        ));
        if let Some(meta) = pod.template.as_ref().and_then(|t| t.metadata.as_ref()) {
            let tloc = loc.key("template").key("metadata");
            // The view keeps the sparkoperator.k8s.io/ labels only, values as JSON text.
            for (k, v) in &meta.operator_labels {
                out.push(Violation {
                    field: tloc.key("labels").key(k).human(),
                    problem: format!("is set to {v}"),
                    fix: "remove it: sparkoperator.k8s.io/ labels are set by spark-operator only"
                        .into(),
                });
            }
            if meta.owner_references_set {
                out.push(Violation {
                    field: tloc.key("ownerReferences").human(),
                    problem: "is set".into(),
                    fix: "remove it: spark-operator sets the pods' owners (a pod template may \
                          not name owners)"
                        .into(),
                });
            }
        }
    }
    let conf = spec_loc.key("sparkConf");
    for key in spec.spark_conf.iter().flatten().map(|(k, _)| k) {
        let sets_operator_label = [
            "spark.kubernetes.driver.label.",
            "spark.kubernetes.executor.label.",
            "spark.kubernetes.driver.service.label.",
        ]
        .iter()
        .any(|p| {
            key.strip_prefix(p)
                .is_some_and(|label| label.starts_with(OPERATOR_LABEL_PREFIX))
        });
        if sets_operator_label {
            out.push(Violation {
                field: conf.key(key).human(),
                problem: "sets a sparkoperator.k8s.io/ label".into(),
                fix: "remove it: sparkoperator.k8s.io/ labels are set by spark-operator only"
                    .into(),
            });
        }
    }
    out
}

/// Claims in `new` that `old` did not already make (an update may keep what was admitted).
pub(super) fn new_claims(new: Vec<Violation>, old: &[Violation]) -> Vec<Violation> {
    new.into_iter()
        .filter(|n| {
            !old.iter()
                .any(|o| o.field == n.field && o.problem == n.problem)
        })
        .collect()
}

/// Stamp labels the object lacks (the validating webhook requires all of them).
pub(super) fn missing_claims(
    loc: &Loc,
    present: Option<&BTreeMap<String, String>>,
    wanted: &BTreeMap<&'static str, String>,
) -> Vec<Violation> {
    wanted
        .keys()
        .filter(|k| present.is_none_or(|p| !p.contains_key(**k)))
        .map(|k| Violation {
            field: loc.key(k).human(),
            problem: "is missing".into(),
            fix: "sparkward's mutating webhook sets it; check the webhook configurations".into(),
        })
        .collect()
}

/// A new job's object must not arrive with a job id: ids are assigned by sparkward (random, and
/// recognised later only through its stamp), so a job id here is a claim on somebody else's
/// job and its network access. Checked before the token so the message names the real problem.
pub(super) fn foreign_job_claim(meta: &Meta) -> Result<(), Reason> {
    match meta.label(JOB_ID_LABEL) {
        Some(claimed) => Err(Reason::Spoofing(vec![Violation {
            field: Loc::root()
                .key("metadata")
                .key("labels")
                .key(JOB_ID_LABEL)
                .human(),
            problem: format!(
                "claims job '{claimed}', but this object starts a new job and nothing it was \
                 created by belongs to that job"
            ),
            fix: "remove sparkward.io/ labels and annotations: sparkward assigns job ids".into(),
        }])),
        None => Ok(()),
    }
}

pub(super) fn record_job(facts: &mut Facts, job: &JobIdentity) {
    facts.submitter = Some(job.submitter.clone());
    facts.job_id = Some(job.job_id.clone());
    facts.policy = Some(job.policy_name());
}

pub(super) fn not_admitted_here(kind: &str) -> Reason {
    Reason::Lineage(format!(
        "this {kind} was not stamped by sparkward's mutating webhook in this request (it has no \
         {STAMP_ANNOTATION}): check that the MutatingWebhookConfiguration covers this namespace, \
         and remove any sparkward.io/ labels or annotations from the manifest"
    ))
}

pub(super) fn lookup_failed(
    kind: &str,
    namespace: &str,
    name: &str,
    e: crate::admission::LookupError,
) -> Reason {
    Reason::Lookup(format!(
        "could not read {kind} {namespace}/{name} to establish the job identity: {e}; nothing \
         was admitted, retrying is safe"
    ))
}

/// `create`, `delete` or `change`, for messages.
pub(super) fn verb(op: Operation) -> &'static str {
    match op {
        Operation::Create => "create",
        Operation::Delete => "delete",
        Operation::Connect => "connect to",
        Operation::Update => "change",
    }
}
