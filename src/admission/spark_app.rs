//! SparkApplication (sparkoperator.k8s.io/v1beta2): a new one becomes a job (identity from the
//! submitter's token, or from its ScheduledSparkApplication when spark-operator creates a
//! scheduled run), is stamped, labelled down to its driver and executor specs, hardened, and
//! gets its policy before the answer. Updates may not touch what sparkward set.

use std::collections::BTreeMap;

use crate::admission::decode::Operation;
use crate::admission::job::{
    app_spec_operator_claims, foreign_job_claim, lookup_failed, missing_claims, new_claims,
    not_admitted_here, operator_label_changes, operator_label_claims, protected_changes,
    record_job, update_actions,
};
use crate::admission::review::{
    Ctx, Decided, Mode, Pipeline, check_spark_version, parse_object, parse_old_object, pass,
    require_namespace, unsupported,
};
use crate::core::decision::{JobIdentity, Reason, Submitter};
use crate::core::hardening::{Findings, Loc};
use crate::core::images::{app_spec_images, changed_images};
use crate::core::labels::{self, PREFIX, SCHEDULE_ID_ANNOTATION};
use crate::core::mutation::{
    Stamp, conflicting_claims, finish, inspect_app_spec, plan_metadata, plan_spark_pod_labels,
};
use crate::core::objects::{Meta, SparkAppSpec, SparkApplication};
use crate::core::ownership::{Action, JobObject};
use crate::core::spark::{enforced_properties, inspect_spark_conf};
use crate::core::stamp::Source;

const KIND: &str = "SparkApplication";

pub(super) async fn review(p: &Pipeline, ctx: &mut Ctx<'_>) -> Decided {
    let req = ctx.req;
    let sub = req.sub_resource.as_deref().unwrap_or("");
    match (ctx.mode, req.operation, sub) {
        (Mode::Mutate, Operation::Create, "") => {
            check_spark_version(req)?;
            mutate_create(p, ctx, parse_object(req)?).await
        }
        (Mode::Validate, Operation::Create, "") => {
            check_spark_version(req)?;
            validate_create(p, ctx, &parse_object(req)?)?;
            p.refuse_stored_tokens(ctx)?;
            pass()
        }
        // Updates, status writes and deletes are guarded by the validating webhook.
        (Mode::Mutate, Operation::Update, "" | "status")
        | (Mode::Mutate, Operation::Delete, "") => pass(),
        (Mode::Validate, Operation::Update, "" | "status") => {
            validate_update(p, ctx, sub).await?;
            if sub.is_empty() {
                p.refuse_stored_tokens(ctx)?;
            }
            pass()
        }
        (Mode::Validate, Operation::Delete, "") => {
            let old: SparkApplication = parse_old_object(req)?;
            if let Some(job) = JobIdentity::from_admitted(&old.metadata) {
                p.require_owner_rights(
                    ctx,
                    JobObject::SparkApplication,
                    &job,
                    None,
                    &[Action::Delete],
                )
                .await?;
            }
            pass()
        }
        _ => Err(unsupported(req)),
    }
}

async fn mutate_create(p: &Pipeline, ctx: &mut Ctx<'_>, app: SparkApplication) -> Decided {
    let namespace = require_namespace(ctx.req)?;
    let (job, new_job, source) = if let Some(opened) = p.open_stamp(ctx, &app.metadata, KIND)? {
        // A re-invocation of this same request: the identity was verified by our first pass.
        ctx.facts.identity_source = Some("reinvocation");
        let job = JobIdentity::from_admitted(&app.metadata).ok_or_else(|| {
            Reason::Lineage("the object carries a stamp but an incomplete identity record".into())
        })?;
        (job, false, opened.source)
    } else {
        foreign_job_claim(&app.metadata)?;
        let (submitter, source) = match schedule_parent(p, ctx, &app.metadata, namespace).await? {
            Some(s) => (s, Source::Schedule),
            None => p.verify_token(ctx, &app.metadata).await?,
        };
        let job = JobIdentity {
            job_id: p.new_job_id(ctx, "job-id")?,
            submitter,
            security: Some(p.job_security(namespace).await?),
        };
        (job, true, source)
    };
    record_job(&mut ctx.facts, &job);

    let mut stamp = job.stamp(None);
    if new_job {
        p.seal(ctx, &app.metadata, &mut stamp, source)?;
    } else if let Some(existing) = app.metadata.annotation(labels::STAMP_ANNOTATION) {
        stamp
            .annotations
            .insert(labels::STAMP_ANNOTATION, existing.to_string());
    }
    let spec_stamp = Stamp {
        labels: job.pod_labels(),
        annotations: BTreeMap::new(),
    };
    let mut claims = p.admission_claims(&app.metadata, &stamp);
    let operator = p.is_operator(&ctx.req.user_info.username);
    if !operator {
        claims.extend(operator_label_claims(
            &Loc::root().key("metadata").key("labels"),
            app.metadata.labels.as_ref(),
        ));
    }
    for (role, pod) in [
        ("driver", &app.spec.driver),
        ("executor", &app.spec.executor),
    ] {
        let Some(pod) = pod else {
            return Err(Reason::Malformed(format!(
                "spec.{role} is missing: a SparkApplication needs spec.driver and spec.executor"
            )));
        };
        claims.extend(conflicting_claims(
            &Loc::root().key("spec").key(role),
            pod.labels.as_ref(),
            pod.annotations.as_ref(),
            &spec_stamp,
            // No exemption for the token here: copied onto pods from the spec, it would be
            // stored with the SparkApplication and on every pod.
            "",
        ));
    }
    if !operator {
        claims.extend(app_spec_operator_claims(
            &Loc::root().key("spec"),
            &app.spec,
        ));
    }
    if !claims.is_empty() {
        return Err(Reason::Spoofing(claims));
    }
    let spec_loc = Loc::root().key("spec");
    // Before the policy and the RPC Secret are made: a denied image leaves nothing behind.
    p.require_approved_images(|| app_spec_images(&spec_loc, &app.spec))?;
    let mut ops = plan_metadata(&app.metadata, &stamp, p.token_annotation());
    ops.extend(p.scrub_token_copies(ctx, &app.metadata)?);
    ops.extend(plan_spark_pod_labels(
        &spec_loc,
        &app.spec,
        &spec_stamp.labels,
    ));
    let mut findings = inspect_app_spec(&spec_loc, &app.spec, &p.config.hardening);
    spark_security(p, &job, &spec_loc, &app.spec, &mut findings)?;
    let patch = finish(findings, ops).map_err(Reason::Hardening)?;
    p.allow_job(ctx, &job, namespace, new_job, patch).await
}

/// The Spark properties the job's profile enforces, in the application's `sparkConf`.
pub(super) fn spark_security(
    p: &Pipeline,
    job: &JobIdentity,
    spec_loc: &Loc,
    spec: &SparkAppSpec,
    findings: &mut Findings,
) -> Result<(), Reason> {
    if let (Some(profile), Some(security)) = (p.profile_of(job)?, &job.security) {
        let enforced = enforced_properties(profile, job);
        inspect_spark_conf(
            spec_loc,
            spec.spark_conf.as_ref(),
            &enforced,
            &security.profile,
            findings,
        );
    }
    Ok(())
}

/// For a SparkApplication created by spark-operator from a ScheduledSparkApplication: the
/// schedule's verified submitter. `None` when the application is not such a run.
async fn schedule_parent(
    p: &Pipeline,
    ctx: &mut Ctx<'_>,
    meta: &Meta,
    namespace: &str,
) -> Result<Option<Submitter>, Reason> {
    let Some(owner) = meta
        .owner_references
        .iter()
        .find(|o| o.kind == "ScheduledSparkApplication")
    else {
        return Ok(None);
    };
    if !p.is_operator(&ctx.req.user_info.username) {
        // Anyone can write an ownerReference; only the operator's runs inherit.
        return Ok(None);
    }
    let parent = p
        .lookup
        .scheduled_spark_application(namespace, &owner.name)
        .await
        .map_err(|e| lookup_failed("ScheduledSparkApplication", namespace, &owner.name, e))?
        .ok_or_else(|| {
            Reason::Lineage(format!(
                "this SparkApplication is a run of ScheduledSparkApplication {namespace}/{}, \
                 which does not exist",
                owner.name
            ))
        })?;
    if parent.uid.as_deref() != Some(owner.uid.as_str()) {
        return Err(Reason::Lineage(format!(
            "the ownerReference names ScheduledSparkApplication {namespace}/{} with uid {}, \
             but that object has a different uid",
            owner.name, owner.uid
        )));
    }
    let admitted = parent
        .annotation(SCHEDULE_ID_ANNOTATION)
        .is_some_and(labels::is_job_id);
    let submitter = Submitter::from_annotations(&parent).filter(|_| admitted);
    let Some(submitter) = submitter else {
        return Err(Reason::Lineage(format!(
            "ScheduledSparkApplication {namespace}/{} was not admitted by sparkward (it has \
             no verified submitter); recreate it with a submitter token",
            owner.name
        )));
    };
    ctx.facts.identity_source = Some(Source::Schedule.as_str());
    Ok(Some(submitter))
}

fn validate_create(p: &Pipeline, ctx: &mut Ctx<'_>, app: &SparkApplication) -> Result<(), Reason> {
    p.require_stamp(ctx, &app.metadata, KIND)?;
    let job = JobIdentity::from_admitted(&app.metadata).ok_or_else(|| not_admitted_here(KIND))?;
    record_job(&mut ctx.facts, &job);
    p.require_token_removed(&app.metadata)?;
    let mut stamp = job.stamp(None);
    if let Some(s) = app.metadata.annotation(labels::STAMP_ANNOTATION) {
        stamp
            .annotations
            .insert(labels::STAMP_ANNOTATION, s.to_string());
    }
    let mut claims = p.claims(&app.metadata, &stamp);
    let spec_labels = job.pod_labels();
    for (role, pod) in [
        ("driver", &app.spec.driver),
        ("executor", &app.spec.executor),
    ] {
        let loc = Loc::root().key("spec").key(role).key("labels");
        let labels = pod.as_ref().and_then(|p| p.labels.as_ref());
        claims.extend(missing_claims(&loc, labels, &spec_labels));
        // Present but different (another webhook rewrote them after sparkward).
        claims.extend(conflicting_claims(
            &Loc::root().key("spec").key(role),
            labels,
            None,
            &Stamp {
                labels: spec_labels.clone(),
                annotations: BTreeMap::new(),
            },
            "",
        ));
    }
    if !claims.is_empty() {
        return Err(Reason::Spoofing(claims));
    }
    let spec_loc = Loc::root().key("spec");
    p.require_approved_images(|| app_spec_images(&spec_loc, &app.spec))?;
    let mut findings = inspect_app_spec(&spec_loc, &app.spec, &p.config.hardening);
    spark_security(p, &job, &spec_loc, &app.spec, &mut findings)?;
    p.require_hardened(findings)
}

/// An UPDATE (`sub`: none or `status`): what sparkward set stays, spark-operator's labels
/// stay the operator's, the requester must have the rights the change needs, and the spec
/// stays hardened.
async fn validate_update(p: &Pipeline, ctx: &mut Ctx<'_>, sub: &str) -> Result<(), Reason> {
    let req = ctx.req;
    let (new, old): (SparkApplication, SparkApplication) =
        (parse_object(req)?, parse_old_object(req)?);
    let operator = p.is_operator(&req.user_info.username);
    let mut changed = p.protected_metadata_changes(&new.metadata, &old.metadata);
    if !operator {
        changed.extend(operator_label_changes(
            &Loc::root().key("metadata").key("labels"),
            new.metadata.labels.as_ref(),
            old.metadata.labels.as_ref(),
        ));
    }
    if !operator {
        let spec = Loc::root().key("spec");
        changed.extend(new_claims(
            app_spec_operator_claims(&spec, &new.spec),
            &app_spec_operator_claims(&spec, &old.spec),
        ));
    }
    for role in ["driver", "executor"] {
        let pick = |a: &SparkApplication| {
            let pod = if role == "driver" {
                &a.spec.driver
            } else {
                &a.spec.executor
            };
            pod.as_ref().and_then(|p| p.labels.clone())
        };
        let loc = Loc::root().key("spec").key(role).key("labels");
        let (new_labels, old_labels) = (pick(&new), pick(&old));
        changed.extend(protected_changes(
            &loc,
            new_labels.as_ref(),
            old_labels.as_ref(),
            |k| k.starts_with(PREFIX),
        ));
    }
    if !changed.is_empty() {
        return Err(Reason::Immutable(changed));
    }
    // Images an update adds or changes must be approved; those admitted earlier stay.
    let spec_loc = Loc::root().key("spec");
    let new_images = || {
        changed_images(
            app_spec_images(&spec_loc, &new.spec),
            &app_spec_images(&spec_loc, &old.spec),
        )
    };
    let Some(job) = JobIdentity::from_admitted(&old.metadata) else {
        return p.require_approved_images(new_images);
    };
    let actions = update_actions(req)?;
    p.require_owner_rights(ctx, JobObject::SparkApplication, &job, None, &actions)
        .await?;
    if sub == "status" {
        return Ok(());
    }
    p.require_approved_images(new_images)?;
    let mut findings = inspect_app_spec(&spec_loc, &new.spec, &p.config.hardening);
    // An update may not take back the job's Spark security: spark-operator resubmits an
    // application whose spec changed.
    spark_security(p, &job, &spec_loc, &new.spec, &mut findings)?;
    p.require_hardened(findings)
}
