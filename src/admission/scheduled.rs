//! ScheduledSparkApplication: the submitter's token is verified once, at creation; the schedule
//! records the verified submitter, its scopes and a schedule id (random, stamped), which every
//! run spark-operator creates from it inherits (see `spark_app`). Its template is hardened.

use crate::admission::decode::Operation;
use crate::admission::job::{
    app_spec_operator_claims, new_claims, operator_label_changes, operator_label_claims,
    update_actions,
};
use crate::admission::review::{
    Ctx, Decided, Mode, Pipeline, check_spark_version, parse_object, parse_old_object, pass,
    require_namespace, unsupported,
};
use crate::admission::spark_app::spark_security;
use crate::core::decision::{JobIdentity, Reason, Submitter, schedule_stamp};
use crate::core::hardening::{Findings, Loc, Violation};
use crate::core::images::{app_spec_images, changed_images};
use crate::core::labels::{self, SCHEDULE_ID_ANNOTATION, STAMP_ANNOTATION};
use crate::core::mutation::{Stamp, conflicting_claims, finish, inspect_app_spec, plan_metadata};
use crate::core::objects::{ScheduledSparkApplication, SparkAppSpec};
use crate::core::ownership::{Action, JobObject};
use crate::core::stamp::Source;

const KIND: &str = "ScheduledSparkApplication";

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
            validate_create(p, ctx, &parse_object(req)?).await?;
            p.refuse_stored_tokens(ctx)?;
            pass()
        }
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
            let old: ScheduledSparkApplication = parse_old_object(req)?;
            if let Some(job) = schedule_job(&old) {
                p.require_owner_rights(
                    ctx,
                    JobObject::ScheduledSparkApplication,
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

/// A schedule as a job for the ownership rules: its schedule id and submitter.
fn schedule_job(app: &ScheduledSparkApplication) -> Option<JobIdentity> {
    let id = app
        .metadata
        .annotation(SCHEDULE_ID_ANNOTATION)
        .filter(|id| labels::is_job_id(id))?;
    Some(JobIdentity {
        job_id: id.to_string(),
        submitter: Submitter::from_annotations(&app.metadata)?,
        security: None,
    })
}

async fn mutate_create(p: &Pipeline, ctx: &mut Ctx<'_>, app: ScheduledSparkApplication) -> Decided {
    let namespace = require_namespace(ctx.req)?;
    let reinvoked = p.open_stamp(ctx, &app.metadata, KIND)?.is_some();
    let mut source = Source::Token;
    let (submitter, schedule_id) = if reinvoked {
        ctx.facts.identity_source = Some("reinvocation");
        let submitter = Submitter::from_annotations(&app.metadata);
        let id = app
            .metadata
            .annotation(SCHEDULE_ID_ANNOTATION)
            .filter(|id| labels::is_job_id(id));
        match (submitter, id) {
            (Some(s), Some(id)) => (s, id.to_string()),
            _ => {
                return Err(Reason::Lineage(
                    "the object carries a stamp but an incomplete identity record".into(),
                ));
            }
        }
    } else {
        let (submitter, from) = p.verify_token(ctx, &app.metadata).await?;
        source = from;
        (submitter, p.new_job_id(ctx, "schedule-id")?)
    };
    ctx.facts.submitter = Some(submitter.clone());
    let mut stamp = schedule_stamp(&submitter, &schedule_id);
    match app.metadata.annotation(STAMP_ANNOTATION) {
        Some(existing) if reinvoked => {
            stamp
                .annotations
                .insert(STAMP_ANNOTATION, existing.to_string());
        }
        _ => p.seal(ctx, &app.metadata, &mut stamp, source)?,
    }
    let mut claims = p.admission_claims(&app.metadata, &stamp);
    let template_loc = Loc::root().key("spec").key("template");
    let Some(template) = &app.spec.template else {
        return Err(Reason::Malformed(
            "spec.template is missing: a ScheduledSparkApplication needs a SparkApplication \
             spec template"
                .into(),
        ));
    };
    for (role, pod) in [
        ("driver", &template.driver),
        ("executor", &template.executor),
    ] {
        if let Some(pod) = pod {
            claims.extend(conflicting_claims(
                &template_loc.key(role),
                pod.labels.as_ref(),
                pod.annotations.as_ref(),
                &Stamp::default(),
                "",
            ));
        }
    }
    // The operator copies a schedule's labels onto every run it creates, as the operator.
    claims.extend(operator_label_claims(
        &Loc::root().key("metadata").key("labels"),
        app.metadata.labels.as_ref(),
    ));
    claims.extend(template_operator_labels(Some(template)));
    if !claims.is_empty() {
        return Err(Reason::Spoofing(claims));
    }
    p.require_approved_images(|| app_spec_images(&template_loc, template))?;
    let mut ops = plan_metadata(&app.metadata, &stamp, p.token_annotation());
    ops.extend(p.scrub_token_copies(ctx, &app.metadata)?);
    let mut findings = inspect_app_spec(&template_loc, template, &p.config.hardening);
    // The template gets the Spark security of the namespace's profile too; each run is
    // checked again (and gets its own RPC Secret) when spark-operator creates it.
    let as_job = JobIdentity {
        job_id: schedule_id.clone(),
        submitter: submitter.clone(),
        security: Some(p.job_security(namespace).await?),
    };
    spark_security(p, &as_job, &template_loc, template, &mut findings)?;
    let patch = finish(findings, ops).map_err(Reason::Hardening)?;
    Ok(crate::admission::review::Allowed {
        patch,
        warnings: Vec::new(),
    })
}

async fn validate_create(
    p: &Pipeline,
    ctx: &mut Ctx<'_>,
    app: &ScheduledSparkApplication,
) -> Result<(), Reason> {
    p.require_stamp(ctx, &app.metadata, KIND)?;
    let not_admitted = || crate::admission::job::not_admitted_here(KIND);
    let schedule_id = app
        .metadata
        .annotation(SCHEDULE_ID_ANNOTATION)
        .filter(|id| labels::is_job_id(id))
        .ok_or_else(not_admitted)?;
    let submitter = Submitter::from_annotations(&app.metadata).ok_or_else(not_admitted)?;
    ctx.facts.submitter = Some(submitter.clone());
    p.require_token_removed(&app.metadata)?;
    let mut stamp = schedule_stamp(&submitter, schedule_id);
    if let Some(s) = app.metadata.annotation(STAMP_ANNOTATION) {
        stamp.annotations.insert(STAMP_ANNOTATION, s.to_string());
    }
    let claims = p.claims(&app.metadata, &stamp);
    if !claims.is_empty() {
        return Err(Reason::Spoofing(claims));
    }
    if let Some(t) = &app.spec.template {
        let template_loc = Loc::root().key("spec").key("template");
        p.require_approved_images(|| app_spec_images(&template_loc, t))?;
        let mut findings = inspect_app_spec(&template_loc, t, &p.config.hardening);
        // The final template, after every mutating webhook (sparkward's is not re-invoked
        // for schedules): a later webhook must not take back the Spark security either.
        let job = template_job(p, ctx, submitter, schedule_id).await?;
        spark_security(p, &job, &template_loc, t, &mut findings)?;
        p.require_hardened(findings)?;
    }
    Ok(())
}

/// A schedule's template as a job for the Spark security checks: the schedule's submitter
/// (the UI ACLs name it) under the profile its namespace selects now, as each run will get.
async fn template_job(
    p: &Pipeline,
    ctx: &Ctx<'_>,
    submitter: Submitter,
    schedule_id: &str,
) -> Result<JobIdentity, Reason> {
    let namespace = require_namespace(ctx.req)?;
    Ok(JobIdentity {
        job_id: schedule_id.to_string(),
        submitter,
        security: Some(p.job_security(namespace).await?),
    })
}

/// An UPDATE (`sub`: none or `status`): what sparkward set stays, spark-operator's labels
/// stay the operator's (the operator copies a schedule's labels onto every run), the requester
/// must have the rights the change needs, and the template stays hardened.
async fn validate_update(p: &Pipeline, ctx: &mut Ctx<'_>, sub: &str) -> Result<(), Reason> {
    let req = ctx.req;
    let (new, old): (ScheduledSparkApplication, ScheduledSparkApplication) =
        (parse_object(req)?, parse_old_object(req)?);
    let mut changed = p.protected_metadata_changes(&new.metadata, &old.metadata);
    if !p.is_operator(&req.user_info.username) {
        let labels = Loc::root().key("metadata").key("labels");
        changed.extend(operator_label_changes(
            &labels,
            new.metadata.labels.as_ref(),
            old.metadata.labels.as_ref(),
        ));
        changed.extend(new_claims(
            template_operator_labels(new.spec.template.as_ref()),
            &template_operator_labels(old.spec.template.as_ref()),
        ));
    }
    if !changed.is_empty() {
        return Err(Reason::Immutable(changed));
    }
    // Images an update adds or changes in the template must be approved.
    let template_loc = Loc::root().key("spec").key("template");
    let images_of = |s: &ScheduledSparkApplication| {
        s.spec
            .template
            .as_ref()
            .map(|t| app_spec_images(&template_loc, t))
            .unwrap_or_default()
    };
    let new_images = || changed_images(images_of(&new), &images_of(&old));
    let Some(job) = schedule_job(&old) else {
        return p.require_approved_images(new_images);
    };
    let actions = update_actions(req)?;
    p.require_owner_rights(
        ctx,
        JobObject::ScheduledSparkApplication,
        &job,
        None,
        &actions,
    )
    .await?;
    if sub != "status" {
        p.require_approved_images(new_images)?;
    }
    match (&new.spec.template, sub) {
        (Some(t), "") => {
            let template_loc = Loc::root().key("spec").key("template");
            let mut findings = inspect_app_spec(&template_loc, t, &p.config.hardening);
            // Weaker Spark settings are denied here, where the user sees it, not only when
            // spark-operator creates a run. Missing ones are not: every run gets them added
            // (and schedules from before profiles existed stay editable).
            let mut spark = Findings::default();
            let job = template_job(p, ctx, job.submitter, &job.job_id).await?;
            spark_security(p, &job, &template_loc, t, &mut spark)?;
            findings.weaker.extend(spark.weaker);
            p.require_hardened(findings)
        }
        _ => Ok(()),
    }
}

/// spark-operator's labels and owners in a schedule's template (see
/// `app_spec_operator_claims`): every run is created from it by the operator itself.
fn template_operator_labels(template: Option<&SparkAppSpec>) -> Vec<Violation> {
    template.map_or_else(Vec::new, |t| {
        app_spec_operator_claims(&Loc::root().key("spec").key("template"), t)
    })
}
