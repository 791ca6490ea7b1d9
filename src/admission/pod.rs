//! Pods: a new pod's job comes from whoever creates it, never from labels it carries (see
//! `pod_job`); it is stamped, labelled and hardened, and a pod that starts a new job (spark-submit
//! in cluster mode, kubectl) gets its own policy first. Updates may not touch what sparkward set;
//! ephemeral containers added later are hardened like the rest.

use crate::admission::decode::Operation;
use crate::admission::job::{
    OPERATOR_LABEL_PREFIX, foreign_job_claim, lookup_failed, missing_claims, not_admitted_here,
    operator_label_changes, operator_label_claims, protected_changes, record_job, update_actions,
};
use crate::admission::review::{
    Ctx, Decided, Mode, Pipeline, parse_object, parse_old_object, parse_pod, pass, patched,
    require_namespace, unsupported,
};
use crate::core::decision::{JobIdentity, Reason, spark_role};
use crate::core::hardening::{Findings, Loc, Violation};
use crate::core::images::{changed_images, pod_images};
use crate::core::labels::{JOB_ID_LABEL, SPARK_APP_NAME_LABEL, SPARK_ROLE_LABEL, STAMP_ANNOTATION};
use crate::core::mutation::{finish, inspect_pod, plan_metadata};
use crate::core::objects::{Meta, Pod};
use crate::core::ownership::{Action, JobObject};
use crate::core::spark::{auth_secret_in_env, inspect_rpc_mount};
use crate::core::stamp::Source;

const KIND: &str = "Pod";

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
            let added = new_ephemeral_names(&pod, &old);
            let findings = inspect_pod(&pod, &p.config.hardening, Some(&added));
            patched(finish(findings, Vec::new()).map_err(Reason::Hardening)?)
        }
        // Updates, status writes and debug containers are guarded by the validating webhook.
        (Mode::Mutate, Operation::Update, "" | "status" | "resize") => pass(),
        // `resize` changes containers' resources in place: a spec change like any other.
        (Mode::Validate, Operation::Update, "" | "status" | "ephemeralcontainers" | "resize") => {
            validate_update(p, ctx, sub).await?;
            if sub != "status" {
                p.refuse_stored_tokens(ctx)?;
            }
            pass()
        }
        (Mode::Mutate, Operation::Delete, "") => pass(),
        (Mode::Validate, Operation::Delete, "") => {
            let old: Pod = parse_old_object(req)?;
            if let Some(job) = JobIdentity::from_admitted(&old.metadata) {
                let object = job_object(&old);
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

fn job_object(pod: &Pod) -> JobObject {
    JobObject::Pod {
        executor: spark_role(&pod.metadata) == Some("executor"),
        app_controlled: pod
            .metadata
            .owner_references
            .iter()
            .any(|o| o.controller == Some(true) && o.kind == "SparkApplication"),
    }
}

/// An UPDATE of a pod (`sub`: none, `status` or `ephemeralcontainers`): what sparkward set
/// stays, spark-operator's labels stay the operator's, the requester must have the rights the
/// change needs, and the pod stays hardened.
async fn validate_update(p: &Pipeline, ctx: &mut Ctx<'_>, sub: &str) -> Result<(), Reason> {
    let req = ctx.req;
    let (new, old): (Pod, Pod) = (parse_object(req)?, parse_old_object(req)?);
    let mut changed = p.protected_metadata_changes(&new.metadata, &old.metadata);
    changed.extend(protected_changes(
        &Loc::root().key("metadata").key("labels"),
        new.metadata.labels.as_ref(),
        old.metadata.labels.as_ref(),
        |k| k == SPARK_ROLE_LABEL && old.metadata.label(JOB_ID_LABEL).is_some(),
    ));
    if !p.is_operator(&req.user_info.username) {
        changed.extend(operator_label_changes(
            &Loc::root().key("metadata").key("labels"),
            new.metadata.labels.as_ref(),
            old.metadata.labels.as_ref(),
        ));
    }
    if !changed.is_empty() {
        return Err(Reason::Immutable(changed));
    }
    // An image swap (`kubectl set image`) or a debug container is checked for the images it
    // adds; images admitted earlier stay (a pod from before the rules keeps its updates).
    let new_images = || changed_images(pod_images(&new), &pod_images(&old));
    let Some(job) = JobIdentity::from_admitted(&old.metadata) else {
        return p.require_approved_images(new_images);
    };
    let actions = update_actions(req)?;
    p.require_owner_rights(
        ctx,
        job_object(&old),
        &job,
        old.spec.node_name.as_deref(),
        &actions,
    )
    .await?;
    if sub != "status" {
        p.require_approved_images(new_images)?;
    }
    match sub {
        "status" => Ok(()),
        "ephemeralcontainers" => {
            let added = new_ephemeral_names(&new, &old);
            p.require_hardened(inspect_pod(&new, &p.config.hardening, Some(&added)))
        }
        _ => p.require_hardened(inspect_pod(&new, &p.config.hardening, None)),
    }
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

fn new_ephemeral_names<'p>(new: &'p Pod, old: &Pod) -> Vec<&'p str> {
    new.spec
        .ephemeral_containers
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| !old.spec.ephemeral_containers.iter().any(|o| o.name == *n))
        .collect()
}
