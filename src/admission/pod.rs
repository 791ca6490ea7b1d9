//! Pods: a new pod's job comes from whoever creates it, never from labels it carries (see
//! `pod_job`); it is stamped, labelled and hardened, and a pod that starts a new job (spark-submit
//! in cluster mode, kubectl) gets its own policy first. Updates may not touch what sparkward set;
//! ephemeral containers added later are hardened like the rest.

use crate::admission::decode::Operation;
use crate::admission::job::{
    foreign_job_claim, lookup_failed, missing_claims, not_admitted_here, protected_changes,
    record_job,
};
use crate::admission::review::{
    Ctx, Decided, Mode, Pipeline, parse_object, parse_old_object, parse_pod, pass, patched,
    require_namespace, unsupported,
};
use crate::core::decision::{JobIdentity, Reason, spark_role};
use crate::core::hardening::Loc;
use crate::core::labels::{JOB_ID_LABEL, SPARK_APP_NAME_LABEL, SPARK_ROLE_LABEL, STAMP_ANNOTATION};
use crate::core::mutation::{finish, inspect_pod, plan_metadata};
use crate::core::objects::Pod;
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
            validate_create(p, ctx, &pod)?;
            p.refuse_stored_tokens(ctx)?;
            pass()
        }
        (_, Operation::Update, "ephemeralcontainers") => {
            let (pod, old): (Pod, Pod) = (parse_object(req)?, parse_old_object(req)?);
            let added = new_ephemeral_names(&pod, &old);
            let findings = inspect_pod(&pod, &p.config.hardening, Some(&added));
            match ctx.mode {
                Mode::Mutate => patched(finish(findings, Vec::new()).map_err(Reason::Hardening)?),
                Mode::Validate => {
                    p.require_hardened(findings)?;
                    p.refuse_stored_tokens(ctx)?;
                    pass()
                }
            }
        }
        (Mode::Validate, Operation::Update, "") => {
            validate_update(p, &parse_object(req)?, &parse_old_object(req)?)?;
            p.refuse_stored_tokens(ctx)?;
            pass()
        }
        // Updates are guarded by the validating webhook; nothing to add.
        (Mode::Mutate, Operation::Update, "") => pass(),
        // Status writes (the operator, the kubelet) may carry metadata: what sparkward set
        // stays as it is.
        (Mode::Validate, Operation::Update, "status") => {
            let (new, old): (Pod, Pod) = (parse_object(req)?, parse_old_object(req)?);
            let changed = p.protected_metadata_changes(&new.metadata, &old.metadata);
            if !changed.is_empty() {
                return Err(Reason::Immutable(changed));
            }
            pass()
        }
        (Mode::Mutate, Operation::Update, "status") => pass(),
        (_, Operation::Delete, "") => pass(),
        _ => Err(unsupported(req)),
    }
}

async fn mutate_create(p: &Pipeline, ctx: &mut Ctx<'_>, pod: Pod) -> Decided {
    let namespace = require_namespace(ctx.req)?;
    let (job, new_job, source) = pod_job(p, ctx, &pod, namespace).await?;
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
    let claims = p.admission_claims(&pod.metadata, &stamp);
    if !claims.is_empty() {
        return Err(Reason::Spoofing(claims));
    }
    let mut ops = plan_metadata(&pod.metadata, &stamp, p.token_annotation());
    ops.extend(p.scrub_token_copies(ctx, &pod.metadata)?);
    let patch =
        finish(inspect_pod(&pod, &p.config.hardening, None), ops).map_err(Reason::Hardening)?;
    p.allow_job(ctx, &job, namespace, new_job, patch).await
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
) -> Result<(JobIdentity, bool, Option<Source>), Reason> {
    if p.open_stamp(ctx, &pod.metadata, KIND)?.is_some() {
        ctx.facts.identity_source = Some("reinvocation");
        let job = JobIdentity::from_admitted(&pod.metadata).ok_or_else(|| {
            Reason::Lineage("the pod carries a stamp but an incomplete identity record".into())
        })?;
        return Ok((job, false, None));
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
        if let Some(creator) = creator {
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
                return Ok((job, false, Some(Source::CreatorPod)));
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
        return Ok((job, false, Some(Source::Operator)));
    }
    // (c) a new job: the pod must carry a valid token.
    foreign_job_claim(&pod.metadata)?;
    let submitter = p.verify_token(ctx, &pod.metadata).await?;
    Ok((
        JobIdentity {
            job_id: p.new_job_id(ctx, "job-id")?,
            submitter,
        },
        true,
        Some(Source::Token),
    ))
}

fn validate_create(p: &Pipeline, ctx: &mut Ctx<'_>, pod: &Pod) -> Result<(), Reason> {
    if pod.metadata.label(JOB_ID_LABEL).is_none() {
        return Err(not_admitted_here(KIND));
    }
    // The stamp proves that sparkward's mutating call derived this identity for this pod and
    // requester in this request (lineage included); nothing is looked up again.
    p.require_stamp(ctx, &pod.metadata, KIND)?;
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
    p.require_hardened(inspect_pod(pod, &p.config.hardening, None))
}

fn validate_update(p: &Pipeline, new: &Pod, old: &Pod) -> Result<(), Reason> {
    let mut changed = p.protected_metadata_changes(&new.metadata, &old.metadata);
    changed.extend(protected_changes(
        &Loc::root().key("metadata").key("labels"),
        new.metadata.labels.as_ref(),
        old.metadata.labels.as_ref(),
        |k| k == SPARK_ROLE_LABEL && old.metadata.label(JOB_ID_LABEL).is_some(),
    ));
    if !changed.is_empty() {
        return Err(Reason::Immutable(changed));
    }
    if JobIdentity::from_admitted(&old.metadata).is_some() {
        p.require_hardened(inspect_pod(new, &p.config.hardening, None))?;
    }
    Ok(())
}

fn new_ephemeral_names<'p>(new: &'p Pod, old: &Pod) -> Vec<&'p str> {
    new.spec
        .ephemeral_containers
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| !old.spec.ephemeral_containers.iter().any(|o| o.name == *n))
        .collect()
}
