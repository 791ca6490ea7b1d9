//! Pods: a new pod's job comes from whoever creates it, never from labels it carries (see
//! `pod_job`); it is stamped, labelled and hardened, and a pod that starts a new job (spark-submit
//! in cluster mode, kubectl) gets its own policy first. Updates may not touch what sparkward set;
//! ephemeral containers added later are hardened like the rest.

use serde_json::value::RawValue;

use crate::admission::decode::{Operation, PodParts, PodUpdate, SpecNodeName, decode};
use crate::admission::job::{
    foreign_job_claim, lookup_failed, missing_claims, not_admitted_here, operator_label_changes,
    operator_label_claims, protected_changes, record_job, update_actions, update_actions_of,
};
use crate::admission::review::{
    Ctx, Decided, Mode, Pipeline, parse_object, parse_old_object, parse_pod, pass, patched,
    require_namespace, unsupported,
};
use crate::core::decision::{JobIdentity, Reason, spark_role};
use crate::core::hardening::{Findings, Loc, Violation};
use crate::core::images::{changed_images, pod_images, pod_spec_images};
use crate::core::labels::{
    JOB_ID_LABEL, OPERATOR_LABEL_PREFIX, SPARK_APP_NAME_LABEL, SPARK_ROLE_LABEL, STAMP_ANNOTATION,
};
use crate::core::mutation::{
    finish, inspect_pod, inspect_pod_metadata, inspect_pod_parts, plan_metadata,
};
use crate::core::objects::{Meta, ObjectOnly, Pod, PodSpec};
use crate::core::ownership::{Action, JobObject};
use crate::core::spark::{auth_secret_in_env, inspect_rpc_mount};
use crate::core::stamp::Source;

const KIND: &str = "Pod";

/// What a DELETE reads of the pod it removes: its metadata and its node, nothing of its
/// containers, so that a pod stored before one of the list limits of `core::objects` (admitted
/// before sparkward, or before this version) can still be deleted by its submitter, the
/// garbage collector or the namespace controller.
#[derive(serde::Deserialize)]
struct DeletedPod {
    #[serde(deserialize_with = "crate::core::objects::map_only")]
    metadata: Meta,
    #[serde(deserialize_with = "crate::core::objects::map_only")]
    spec: SpecNodeName,
}

pub(super) async fn review(p: &Pipeline, ctx: &mut Ctx<'_>) -> Decided {
    let req = ctx.req;
    let sub = req.sub_resource.as_deref().unwrap_or("");
    match (ctx.mode, req.operation, sub) {
        (Mode::Mutate, Operation::Create, "") => {
            let pod = parse_pod(req)?;
            mutate_create(p, ctx, pod).await
        }
        (Mode::Validate, Operation::Create, "") => {
            let pod = parse_pod(req)?;
            validate_create(p, ctx, &pod).await?;
            p.refuse_stored_tokens(ctx)?;
            pass()
        }
        // A debug container added to a running pod is hardened like the others.
        (Mode::Mutate, Operation::Update, "ephemeralcontainers") => {
            let (pod, old): (Pod, Pod) = (parse_object(req)?, parse_old_object(req)?);
            p.require_approved_images(|| changed_images(pod_images(&pod), &pod_images(&old)))?;
            let added = new_ephemeral_names(&pod.spec, &old.spec);
            let findings = inspect_pod(&pod, &p.config.hardening, Some(&added));
            patched(finish(findings, Vec::new()).map_err(Reason::Hardening)?)
        }
        // Updates, status writes and debug containers are guarded by the validating webhook.
        (Mode::Mutate, Operation::Update, "" | "status" | "resize") => pass(),
        // `resize` changes containers' resources in place: a spec change like any other.
        (Mode::Validate, Operation::Update, "" | "status" | "ephemeralcontainers" | "resize") => {
            // Boxed: these states (5 KB) would otherwise size every pod review's future,
            // which the router boxes and so copies.
            match req.pod_update.as_deref() {
                Some(parts) => Box::pin(validate_update_parts(p, ctx, sub, parts)).await?,
                None => Box::pin(validate_update(p, ctx, sub)).await?,
            }
            if sub != "status" {
                p.refuse_stored_tokens(ctx)?;
            }
            pass()
        }
        (Mode::Mutate, Operation::Delete, "") => pass(),
        (Mode::Validate, Operation::Delete, "") => {
            let old: DeletedPod = parse_old_object(req)?;
            if let Some(job) = JobIdentity::from_admitted(&old.metadata) {
                let object = job_object(&old.metadata);
                p.require_owner_rights(
                    ctx,
                    object,
                    &job,
                    old.spec.node_name.as_deref(),
                    &[Action::Delete],
                )
                .await?;
            }
            pass()
        }
        _ => Err(unsupported(req)),
    }
}

fn job_object(meta: &Meta) -> JobObject {
    JobObject::Pod {
        executor: spark_role(meta) == Some("executor"),
        app_controlled: meta
            .owner_references
            .iter()
            .any(|o| o.controller == Some(true) && o.kind == "SparkApplication"),
    }
}

/// An UPDATE of a pod (`sub`: none, `status` or `ephemeralcontainers`): what sparkward set
/// stays, spark-operator's labels stay the operator's, the requester must have the rights the
/// change needs, and the pod stays hardened. The plain path: both objects parsed into the
/// typed view, the actions from `update_actions`.
async fn validate_update(p: &Pipeline, ctx: &mut Ctx<'_>, sub: &str) -> Result<(), Reason> {
    let req = ctx.req;
    let (new, old): (Pod, Pod) = (parse_object(req)?, parse_old_object(req)?);
    let view = UpdateView {
        new_meta: &new.metadata,
        old_meta: &old.metadata,
        new_spec: Some(&new.spec),
        old_spec: Some(&old.spec),
        old_node: old.spec.node_name.as_deref(),
        spec_kept: false,
    };
    let job = JobIdentity::from_admitted(&old.metadata);
    check_update(p, ctx, sub, view, job, || update_actions(req)).await
}

/// `validate_update` on the objects decode read into parts (`PodParts`): the same checks in
/// the same order on the same fields, with the typed spec parsed only where it is read: the
/// new pod's unless this is a `status` write, the old pod's `nodeName`, and both in full
/// where an image rule checks them (every read happens here, before any check). Anything it
/// cannot read (a spec that does not parse; the old spec of a `status` write, which decode
/// read for `nodeName` alone, when an image rule needs it) sends the review down the plain
/// path on a plain decode of the same body, so its answer and message are the plain path's.
///
/// The one difference from the plain path, accepted: a part of the spec that is not read is not
/// type-checked. In a `status` write that is the new pod's spec; in every UPDATE, the old pod's
/// spec but `nodeName` (without an image rule), and its `nodeName` too unless a node asks. The
/// plain path refused such an UPDATE as malformed (`request.object is not a valid Pod`); the
/// API server stores only valid pods, so it sends none.
async fn validate_update_parts(
    p: &Pipeline,
    ctx: &mut Ctx<'_>,
    sub: &str,
    parts: &PodUpdate<'_>,
) -> Result<(), Reason> {
    let PodUpdate { new, old } = parts;
    let job = JobIdentity::from_admitted(&old.meta);
    // What `check_update` reads: hardening reads the new spec of a job's pod (not in a status
    // write); an image rule reads both, in a status write only for a pod of no job. A pod of
    // no job without an image rule has neither read.
    // A spec the UPDATE leaves as it was (the same text: the API server encodes both pods
    // alike) is not read at all: there is nothing new in it to harden or approve, and a pod
    // stored beyond the list limits keeps its metadata updates (the garbage collector removing
    // a finalizer), whether or not it belongs to a job.
    let images = p.config.hardening.images.is_active();
    let status = sub == "status";
    let spec_kept = !status
        && new
            .spec
            .zip(old.spec)
            .is_some_and(|(n, o)| n.get() == o.get());
    let read_old = images && !spec_kept && (!status || job.is_none());
    let read_new = (!status && job.is_some() && !spec_kept) || read_old;
    // The old pod's `nodeName` is read only for a node's request: it names the kubelet that
    // may act on the pod (`ownership::roles`), and no other requester's rights depend on it.
    let read_node = ctx.req.user_info.username.starts_with("system:node:");
    let read = match sub {
        // Reads the whole of both specs: the plain path (decode makes no parts for it).
        "ephemeralcontainers" => None,
        _ => read_specs(new, old, read_new, read_old, read_node),
    };
    let Some(read) = read else {
        return validate_update_on_plain_decode(p, ctx, sub).await;
    };
    let view = UpdateView {
        new_meta: &new.meta,
        old_meta: &old.meta,
        new_spec: read.new.as_ref(),
        old_spec: read.old.as_ref(),
        old_node: read.old_node.as_deref(),
        spec_kept,
    };
    check_update(p, ctx, sub, view, job, || {
        Ok(update_actions_of(sub, new, old))
    })
    .await
}

/// The typed specs an UPDATE reads, parsed from the raw specs of its parts.
struct ReadSpecs {
    new: Option<PodSpec>,
    old: Option<PodSpec>,
    old_node: Option<String>,
}

/// The specs `validate_update_parts` asks for and the old pod's `nodeName` (where `read_node`,
/// or where it comes without another read); `None` when one of them cannot be read here.
fn read_specs(
    new: &PodParts<'_>,
    old: &PodParts<'_>,
    read_new: bool,
    read_old: bool,
    read_node: bool,
) -> Option<ReadSpecs> {
    // `ObjectOnly`: the typed `Pod` reads its spec only from a JSON object, so do these.
    let typed = |raw: Option<&RawValue>| {
        serde_json::from_str::<ObjectOnly<PodSpec>>(raw?.get())
            .ok()
            .map(|s| s.0)
    };
    let new_spec = if read_new {
        Some(typed(new.spec)?)
    } else {
        None
    };
    let old_spec = if read_old {
        Some(typed(old.spec)?)
    } else {
        None
    };
    let old_node = match (&old.spec_node_name, &old_spec, &new_spec) {
        // Read by decode (a status write).
        (Some(node), _, _) => node.clone(),
        (None, Some(old_spec), _) => old_spec.node_name.clone(),
        // The old spec is the new one's text, which parsed: the same nodeName, without
        // reading the old spec again (an UPDATE that leaves the spec alone).
        (None, None, Some(new_spec))
            if new
                .spec
                .zip(old.spec)
                .is_some_and(|(n, o)| n.get() == o.get()) =>
        {
            new_spec.node_name.clone()
        }
        (None, None, _) if !read_node => None,
        (None, None, _) => {
            serde_json::from_str::<ObjectOnly<SpecNodeName>>(old.spec?.get())
                .ok()?
                .0
                .node_name
        }
    };
    Some(ReadSpecs {
        new: new_spec,
        old: old_spec,
        old_node,
    })
}

/// `validate_update` on a plain decode of this review's body (the objects kept raw), with this
/// review's facts.
async fn validate_update_on_plain_decode(
    p: &Pipeline,
    ctx: &mut Ctx<'_>,
    sub: &str,
) -> Result<(), Reason> {
    // `decode` is the mutating webhook's: it reads no parts.
    let req = decode(ctx.req.body).map_err(|e| Reason::Malformed(e.to_string()))?;
    let mut plain = Ctx {
        req: &req,
        mode: ctx.mode,
        facts: std::mem::take(&mut ctx.facts),
        policies: Vec::new(),
        secrets: Vec::new(),
    };
    let checked = validate_update(p, &mut plain, sub).await;
    ctx.facts = plain.facts;
    ctx.policies.append(&mut plain.policies);
    ctx.secrets.append(&mut plain.secrets);
    checked
}

/// The new and old pod of an UPDATE as `check_update` reads them. A spec is `None` where the
/// caller did not read it (see `validate_update_parts`).
struct UpdateView<'v> {
    new_meta: &'v Meta,
    old_meta: &'v Meta,
    new_spec: Option<&'v PodSpec>,
    old_spec: Option<&'v PodSpec>,
    old_node: Option<&'v str>,
    /// The new spec is the old one's text (not read: see `validate_update_parts`). `false`
    /// where both were read, which tells the same from the actions.
    spec_kept: bool,
}

/// The checks of a pod UPDATE, shared by both paths. `job`: the old pod's job, if it has one
/// (`JobIdentity::from_admitted`); `actions` computes what the UPDATE does (asked only then).
async fn check_update(
    p: &Pipeline,
    ctx: &mut Ctx<'_>,
    sub: &str,
    view: UpdateView<'_>,
    job: Option<JobIdentity>,
    actions: impl FnOnce() -> Result<Vec<Action>, Reason>,
) -> Result<(), Reason> {
    let req = ctx.req;
    let (new, old) = (view.new_meta, view.old_meta);
    let labels = Loc::root().key("metadata").key("labels");
    let mut changed = p.protected_metadata_changes(new, old);
    changed.extend(protected_changes(
        &labels,
        new.labels.as_ref(),
        old.labels.as_ref(),
        |k| k == SPARK_ROLE_LABEL && old.label(JOB_ID_LABEL).is_some(),
    ));
    if !p.is_operator(&req.user_info.username) {
        changed.extend(operator_label_changes(
            &labels,
            new.labels.as_ref(),
            old.labels.as_ref(),
        ));
    }
    if !changed.is_empty() {
        return Err(Reason::Immutable(changed));
    }
    // An image swap (`kubectl set image`) or a debug container is checked for the images it
    // adds; images admitted earlier stay (a pod from before the rules keeps its updates).
    let specs = view.new_spec.zip(view.old_spec);
    let Some(job) = job else {
        return if view.spec_kept {
            Ok(())
        } else {
            require_added_images(p, specs)
        };
    };
    let actions = actions()?;
    p.require_owner_rights(ctx, job_object(old), &job, view.old_node, &actions)
        .await?;
    // A spec that is the same JSON as before holds nothing that was not hardened and approved
    // when the pod was admitted; the metadata may have changed.
    let spec_changed = actions.contains(&Action::Spec);
    let hardening = &p.config.hardening;
    match (sub, view.new_spec) {
        ("status", _) => Ok(()),
        ("ephemeralcontainers", Some(new_spec)) => {
            require_added_images(p, specs)?;
            let Some(old_spec) = view.old_spec else {
                return Err(spec_not_read());
            };
            let added = new_ephemeral_names(new_spec, old_spec);
            p.require_hardened(inspect_pod_parts(new, new_spec, hardening, Some(&added)))
        }
        ("ephemeralcontainers", None) => Err(spec_not_read()),
        // The spec as it was: only what the metadata can weaken is checked.
        _ if !spec_changed => p.require_hardened(inspect_pod_metadata(new)),
        (_, Some(new_spec)) => {
            require_added_images(p, specs)?;
            p.require_hardened(inspect_pod_parts(new, new_spec, hardening, None))
        }
        (_, None) => Err(spec_not_read()),
    }
}

/// The images an UPDATE adds must be approved (when an image rule is configured, both specs
/// have been read: see `validate_update_parts`).
fn require_added_images(p: &Pipeline, specs: Option<(&PodSpec, &PodSpec)>) -> Result<(), Reason> {
    if !p.config.hardening.images.is_active() {
        return Ok(());
    }
    let Some((new, old)) = specs else {
        return Err(spec_not_read());
    };
    p.require_approved_images(|| changed_images(pod_spec_images(new), &pod_spec_images(old)))
}

/// Not reached (every caller reads the specs it checks); should it be, the UPDATE is denied.
fn spec_not_read() -> Reason {
    Reason::Malformed(
        "the pod's spec was not read for this check: sparkward refuses the update".into(),
    )
}

async fn mutate_create(p: &Pipeline, ctx: &mut Ctx<'_>, pod: Pod) -> Decided {
    let namespace = require_namespace(ctx.req)?;
    let PodJob {
        job,
        new_job,
        source,
        creator,
    } = pod_job(p, ctx, &pod, namespace).await?;
    record_job(&mut ctx.facts, &job);
    let mut stamp = job.stamp(spark_role(&pod.metadata));
    match (source, pod.metadata.annotation(STAMP_ANNOTATION)) {
        (None, Some(existing)) => {
            stamp
                .annotations
                .insert(STAMP_ANNOTATION, existing.to_string());
        }
        (Some(source), _) => p.seal(ctx, &pod.metadata, &mut stamp, source)?,
        (None, None) => return Err(not_admitted_here(KIND)),
    }
    let mut claims = p.admission_claims(&pod.metadata, &stamp);
    claims.extend(pod_operator_labels(&pod, source, creator.as_ref()));
    if !claims.is_empty() {
        return Err(Reason::Spoofing(claims));
    }
    p.require_approved_images(|| pod_images(&pod))?;
    let mut ops = plan_metadata(&pod.metadata, &stamp, p.token_annotation());
    ops.extend(p.scrub_token_copies(ctx, &pod.metadata)?);
    let mut findings = inspect_pod(&pod, &p.config.hardening, None);
    spark_pod_security(&job, &pod, &mut findings);
    let patch = finish(findings, ops).map_err(Reason::Hardening)?;
    p.allow_job(ctx, &job, namespace, new_job, patch).await
}

/// A job with its own RPC secret: its Spark pods mount it, and no pod of it carries the
/// secret in clear (`_SPARK_AUTH_SECRET`, which Spark sets only when it generated the secret
/// itself because the secret file property did not reach the driver).
fn spark_pod_security(job: &JobIdentity, pod: &Pod, findings: &mut Findings) {
    let Some(secret) = job.rpc_secret() else {
        return;
    };
    findings.weaker.extend(auth_secret_in_env(pod));
    if spark_role(&pod.metadata).is_some() {
        inspect_rpc_mount(pod, &secret, findings);
    }
}

/// The job a new pod belongs to, whether this request starts it, and where the identity comes
/// from (`None`: a re-invocation of this request, already stamped).
///
/// Order: (0) a re-invocation of this request (a stamp sparkward made in it); (b) an executor
/// created by a job's pod (a service-account token bound to a pod of this namespace that
/// belongs to an admitted job); (a) a driver created by a trusted spark-operator identity for
/// an admitted SparkApplication; (c) anyone else needs a valid token and starts a new job. (b)
/// is checked before (a) so that a job pod whose service account is also listed as an operator
/// identity can never pass its pods off as another application's driver.
async fn pod_job(
    p: &Pipeline,
    ctx: &mut Ctx<'_>,
    pod: &Pod,
    namespace: &str,
) -> Result<PodJob, Reason> {
    if p.open_stamp(ctx, &pod.metadata, KIND)?.is_some() {
        ctx.facts.identity_source = Some("reinvocation");
        let job = JobIdentity::from_admitted(&pod.metadata).ok_or_else(|| {
            Reason::Lineage("the pod carries a stamp but an incomplete identity record".into())
        })?;
        return Ok(PodJob {
            job,
            new_job: false,
            source: None,
            creator: None,
        });
    }
    let req = ctx.req;
    let role = spark_role(&pod.metadata);
    let user = &req.user_info;
    // (b) created by a pod of a job in this namespace.
    if let (Some((pod_name, pod_uid)), Some((sa_namespace, _))) =
        (user.bound_pod(), user.service_account())
        && sa_namespace == namespace
    {
        let creator = p
            .lookup
            .pod(namespace, pod_name)
            .await
            .map_err(|e| lookup_failed("Pod", namespace, pod_name, e))?;
        if let Some(creator) = creator.map(|c| c.meta) {
            if pod_uid.is_some_and(|uid| creator.uid.as_deref() != Some(uid)) {
                return Err(Reason::Lineage(format!(
                    "the requester's token is bound to pod {namespace}/{pod_name} with a \
                     different uid than the pod of that name now: the token is stale"
                )));
            }
            if let Some(job) = JobIdentity::from_admitted(&creator) {
                if role == Some("driver") {
                    return Err(Reason::Lineage(format!(
                        "pod {namespace}/{pod_name} of job {} may only create executor \
                         pods, but this pod is labelled spark-role=driver",
                        job.job_id
                    )));
                }
                ctx.facts.identity_source = Some(Source::CreatorPod.as_str());
                return Ok(PodJob {
                    job,
                    new_job: false,
                    source: Some(Source::CreatorPod),
                    creator: Some(creator),
                });
            }
        }
    }
    // (a) a driver created by spark-operator.
    if p.is_operator(&user.username)
        && role == Some("driver")
        && let Some(app_name) = pod.metadata.label(SPARK_APP_NAME_LABEL)
    {
        let app = p
            .lookup
            .spark_application(namespace, app_name)
            .await
            .map_err(|e| lookup_failed("SparkApplication", namespace, app_name, e))?
            .ok_or_else(|| {
                Reason::Lineage(format!(
                    "driver pod names SparkApplication {namespace}/{app_name} \
                     ({SPARK_APP_NAME_LABEL}), which does not exist"
                ))
            })?;
        let job = JobIdentity::from_admitted(&app).ok_or_else(|| {
            Reason::Lineage(format!(
                "driver pod names SparkApplication {namespace}/{app_name}, which sparkward \
                 never admitted (it has no job identity); resubmit the application"
            ))
        })?;
        if let Some(owner) = pod
            .metadata
            .owner_references
            .iter()
            .find(|o| o.kind == "SparkApplication")
            && (owner.name != app_name || app.uid.as_deref() != Some(owner.uid.as_str()))
        {
            return Err(Reason::Lineage(format!(
                "driver pod is owned by SparkApplication {} (uid {}) but names {app_name}",
                owner.name, owner.uid
            )));
        }
        ctx.facts.identity_source = Some(Source::Operator.as_str());
        return Ok(PodJob {
            job,
            new_job: false,
            source: Some(Source::Operator),
            creator: None,
        });
    }
    // (c) a new job: the pod must carry a valid token.
    foreign_job_claim(&pod.metadata)?;
    let (submitter, source) = p.verify_token(ctx, &pod.metadata).await?;
    Ok(PodJob {
        job: JobIdentity {
            job_id: p.new_job_id(ctx, "job-id")?,
            submitter,
            security: Some(p.job_security(namespace).await?),
        },
        new_job: true,
        source: Some(source),
        creator: None,
    })
}

/// Where a new pod's job comes from.
struct PodJob {
    job: JobIdentity,
    /// This request starts the job (its policy is applied before the answer).
    new_job: bool,
    /// `None`: a re-invocation of this request, already stamped.
    source: Option<Source>,
    /// The job pod that created this one (executor lineage).
    creator: Option<Meta>,
}

/// `sparkoperator.k8s.io/` labels on a new pod: spark-operator's own drivers may carry them,
/// executors only with the values their driver carries (Spark copies them from the operator's
/// executor label settings), anybody else's pods not at all.
fn pod_operator_labels(
    pod: &Pod,
    source: Option<Source>,
    creator: Option<&Meta>,
) -> Vec<Violation> {
    let loc = Loc::root().key("metadata").key("labels");
    let claims = operator_label_claims(&loc, pod.metadata.labels.as_ref());
    match (source, creator) {
        (Some(Source::Operator) | None, _) => Vec::new(),
        (Some(Source::CreatorPod), Some(creator)) => claims
            .into_iter()
            .zip(
                pod.metadata
                    .labels
                    .iter()
                    .flatten()
                    .filter(|(k, _)| k.starts_with(OPERATOR_LABEL_PREFIX)),
            )
            .filter(|(_, (k, v))| creator.label(k) != Some(v.as_str()))
            .map(|(c, _)| Violation {
                fix: "an executor carries only the sparkoperator.k8s.io/ labels of its driver"
                    .into(),
                ..c
            })
            .collect(),
        _ => claims,
    }
}

async fn validate_create(p: &Pipeline, ctx: &mut Ctx<'_>, pod: &Pod) -> Result<(), Reason> {
    if pod.metadata.label(JOB_ID_LABEL).is_none() {
        return Err(not_admitted_here(KIND));
    }
    // The stamp proves that sparkward's mutating call derived this identity for this pod and
    // requester in this request (lineage included).
    let opened = p.require_stamp(ctx, &pod.metadata, KIND)?;
    if opened.source == Source::Operator {
        require_app_controller(p, ctx, pod).await?;
    }
    let job = JobIdentity::from_admitted(&pod.metadata).ok_or_else(|| not_admitted_here(KIND))?;
    record_job(&mut ctx.facts, &job);
    p.require_token_removed(&pod.metadata)?;
    let mut stamp = job.stamp(spark_role(&pod.metadata));
    if let Some(s) = pod.metadata.annotation(STAMP_ANNOTATION) {
        stamp.annotations.insert(STAMP_ANNOTATION, s.to_string());
    }
    let mut claims = p.claims(&pod.metadata, &stamp);
    claims.extend(missing_claims(
        &Loc::root().key("metadata").key("labels"),
        pod.metadata.labels.as_ref(),
        &stamp.labels,
    ));
    if !claims.is_empty() {
        return Err(Reason::Spoofing(claims));
    }
    p.require_approved_images(|| pod_images(pod))?;
    let mut findings = inspect_pod(pod, &p.config.hardening, None);
    spark_pod_security(&job, pod, &mut findings);
    p.require_hardened(findings)
}

/// A driver that inherits a SparkApplication's job must, as finally stored, be controlled by
/// that application: exactly one controller ownerReference, to the SparkApplication its
/// `sparkoperator.k8s.io/app-name` label names, with that application's uid. spark-operator
/// sets it (since v2.4 through the driver pod template it writes, before that through its pod
/// webhook, which may run after sparkward's mutating webhook: hence the check here, on the
/// final object). A label alone can be put on a pod; the controller reference of a live
/// application cannot be faked alongside the operator's own (the API server refuses two).
async fn require_app_controller(p: &Pipeline, ctx: &Ctx<'_>, pod: &Pod) -> Result<(), Reason> {
    let namespace = require_namespace(ctx.req)?;
    let app_name = pod.metadata.label(SPARK_APP_NAME_LABEL).unwrap_or("");
    let controllers: Vec<_> = pod
        .metadata
        .owner_references
        .iter()
        .filter(|o| o.controller == Some(true))
        .collect();
    let app = p
        .lookup
        .spark_application(namespace, app_name)
        .await
        .map_err(|e| lookup_failed("SparkApplication", namespace, app_name, e))?;
    let fix = "spark-operator sets it (v2.4 and later through the driver pod template; earlier \
               versions only through their pod webhook, which must then be enabled)";
    let Some(app) = app else {
        return Err(Reason::Lineage(format!(
            "driver pod names SparkApplication {namespace}/{app_name} \
             ({SPARK_APP_NAME_LABEL}), which does not exist"
        )));
    };
    match controllers.as_slice() {
        [owner]
            if owner.kind == "SparkApplication"
                && owner.name == app_name
                && app.uid.as_deref() == Some(owner.uid.as_str()) =>
        {
            Ok(())
        }
        [] => Err(Reason::Lineage(format!(
            "driver pod of SparkApplication {namespace}/{app_name} has no controller \
             ownerReference to it: {fix}"
        ))),
        owners => Err(Reason::Lineage(format!(
            "driver pod names SparkApplication {namespace}/{app_name} ({SPARK_APP_NAME_LABEL}) but \
             is controlled by {}: only the application's own driver inherits its job",
            owners
                .iter()
                .map(|o| format!("{} {} (uid {})", o.kind, o.name, o.uid))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn new_ephemeral_names<'p>(new: &'p PodSpec, old: &PodSpec) -> Vec<&'p str> {
    new.ephemeral_containers
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| !old.ephemeral_containers.iter().any(|o| o.name == *n))
        .collect()
}
