//! ScheduledSparkApplication: the submitter's token is verified once, at creation; the schedule
//! records the verified submitter, its scopes and a schedule id (random, stamped), which every
//! run spark-operator creates from it inherits (see `spark_app`). Its template is hardened.

use crate::admission::decode::Operation;
use crate::admission::review::{
    Ctx, Decided, Mode, Pipeline, check_spark_version, parse_object, parse_old_object, pass,
    require_namespace, unsupported,
};
use crate::core::decision::{Reason, Submitter, schedule_stamp};
use crate::core::hardening::Loc;
use crate::core::labels::{self, SCHEDULE_ID_ANNOTATION, STAMP_ANNOTATION};
use crate::core::mutation::{Stamp, conflicting_claims, finish, inspect_app_spec, plan_metadata};
use crate::core::objects::ScheduledSparkApplication;
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
            validate_create(p, ctx, &parse_object(req)?)?;
            p.refuse_stored_tokens(ctx)?;
            pass()
        }
        (Mode::Validate, Operation::Update, "") => {
            validate_update(p, &parse_object(req)?, &parse_old_object(req)?)?;
            p.refuse_stored_tokens(ctx)?;
            pass()
        }
        (Mode::Mutate, Operation::Update, "") => pass(),
        (_, Operation::Delete, "") => pass(),
        _ => Err(unsupported(req)),
    }
}

async fn mutate_create(p: &Pipeline, ctx: &mut Ctx<'_>, app: ScheduledSparkApplication) -> Decided {
    require_namespace(ctx.req)?;
    let reinvoked = p.open_stamp(ctx, &app.metadata, KIND)?.is_some();
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
        let submitter = p.verify_token(ctx, &app.metadata).await?;
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
        _ => p.seal(ctx, &app.metadata, &mut stamp, Source::Token)?,
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
    if !claims.is_empty() {
        return Err(Reason::Spoofing(claims));
    }
    let mut ops = plan_metadata(&app.metadata, &stamp, p.token_annotation());
    ops.extend(p.scrub_token_copies(ctx, &app.metadata)?);
    let patch = finish(
        inspect_app_spec(&template_loc, template, &p.config.hardening),
        ops,
    )
    .map_err(Reason::Hardening)?;
    Ok(crate::admission::review::Allowed {
        patch,
        warnings: Vec::new(),
    })
}

fn validate_create(
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
        p.require_hardened(inspect_app_spec(
            &Loc::root().key("spec").key("template"),
            t,
            &p.config.hardening,
        ))?;
    }
    Ok(())
}

fn validate_update(
    p: &Pipeline,
    new: &ScheduledSparkApplication,
    old: &ScheduledSparkApplication,
) -> Result<(), Reason> {
    let changed = p.protected_metadata_changes(&new.metadata, &old.metadata);
    if !changed.is_empty() {
        return Err(Reason::Immutable(changed));
    }
    if let (Some(t), true) = (
        &new.spec.template,
        Submitter::from_annotations(&old.metadata).is_some(),
    ) {
        p.require_hardened(inspect_app_spec(
            &Loc::root().key("spec").key("template"),
            t,
            &p.config.hardening,
        ))?;
    }
    Ok(())
}
