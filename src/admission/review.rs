//! The admission pipeline: decode, route, establish the job identity (token or lineage), plan
//! the mutation, render and apply the job's policy, and produce one `Outcome` that the server
//! answers with, the audit log records, and `sparkward review` prints.
//!
//! Ordering invariant: a new job's CiliumNetworkPolicy is applied (and the apply confirmed)
//! before the allowed answer is produced; on dry runs it is rendered and not applied. Any
//! failure on the way is a denial, never an allowed answer without a policy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use json_patch::PatchOperation;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::admission::decode::{self, DecodeError, Operation, Request};
use crate::admission::respond::Response;
use crate::admission::{Lookup, Verifier, no_identity};
use crate::config::Config;
use crate::core::cilium::CiliumNetworkPolicy;
use crate::core::decision::{JobIdentity, Reason, Submitter, schedule_stamp, spark_role};
use crate::core::hardening::{Findings, Loc, Violation};
use crate::core::identity::IdentityError;
use crate::core::labels::{
    self, JOB_ID_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, PREFIX, SCHEDULE_ID_ANNOTATION,
    SPARK_APP_NAME_LABEL, SPARK_ROLE_LABEL,
};
use crate::core::mutation::{
    Stamp, conflicting_claims, finish, inspect_app_spec, inspect_pod, plan_metadata,
    plan_spark_pod_labels, scrub_spark_properties, token_present,
};
use crate::core::objects::{
    ConfigMap, Meta, MetaOnly, Pod, ScheduledSparkApplication, SparkApplication,
};
use crate::core::policy::{PolicyError, PolicyInput, render_policy};
use crate::k8s::policy::PolicyStore;
use crate::telemetry::{Metrics, OutcomeLabels};

const SPARK_GROUP: &str = "sparkoperator.k8s.io";
const SPARK_VERSION: &str = "v1beta2";
const CILIUM_GROUP: &str = "cilium.io";

/// Which webhook endpoint is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Mutate,
    Validate,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Mutate => "mutate",
            Mode::Validate => "validate",
        }
    }
}

/// The facts of one review, for the audit line and the response's audit annotations. Never
/// holds the token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub uid: String,
    pub mode: &'static str,
    pub operation: &'static str,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub requester: String,
    pub dry_run: bool,
    pub submitter: Option<Submitter>,
    pub job_id: Option<String>,
    pub policy: Option<String>,
    /// How the identity was established: `token`, `reinvocation`, `operator`, `creator-pod`,
    /// `schedule`.
    pub identity_source: Option<&'static str>,
}

/// An allowed answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allowed {
    pub patch: Vec<PatchOperation>,
    pub warnings: Vec<String>,
}

/// The result of one review.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub facts: Facts,
    pub decision: Result<Allowed, Reason>,
    /// The job policy rendered by this review (applied unless dry run).
    pub policies: Vec<CiliumNetworkPolicy>,
}

impl Outcome {
    pub fn allowed(&self) -> bool {
        self.decision.is_ok()
    }

    /// `ok` or the denial's reason code.
    pub fn reason_code(&self) -> &'static str {
        match &self.decision {
            Ok(_) => "ok",
            Err(r) => r.code(),
        }
    }

    /// The response for the API server.
    pub fn response(&self) -> Response {
        let base = match &self.decision {
            Ok(a) => Response::allow(&self.facts.uid)
                .with_patch(&a.patch)
                .with_warnings(a.warnings.clone()),
            Err(r) => Response::deny(&self.facts.uid, r.status_code(), r.to_string()),
        };
        base.with_audit_annotations(self.audit_annotations())
    }

    /// The audit line of this decision (DESIGN.md, Audit). Never holds the token.
    pub fn audit_record(&self, latency: Duration) -> AuditRecord {
        let f = &self.facts;
        let s = f.submitter.as_ref();
        AuditRecord {
            time: now_rfc3339(),
            uid: f.uid.clone(),
            webhook: f.mode,
            operation: f.operation,
            kind: f.kind.clone(),
            namespace: f.namespace.clone(),
            name: f.name.clone(),
            requester: f.requester.clone(),
            subject: s.map(|s| s.subject.clone()),
            issuer: s.map(|s| s.issuer.clone()),
            jti: s.and_then(|s| s.token_id.clone()),
            scopes: s.map(|s| s.scopes.clone()),
            job_id: f.job_id.clone(),
            policy: f.policy.clone(),
            identity_source: f.identity_source,
            dry_run: f.dry_run,
            allowed: self.allowed(),
            reason: self.reason_code(),
            message: self.decision.as_ref().err().map(ToString::to_string),
            warnings: self
                .decision
                .as_ref()
                .map(|a| a.warnings.clone())
                .unwrap_or_default(),
            latency_ms: latency.as_secs_f64() * 1000.0,
        }
    }

    /// `auditAnnotations`: the API server prefixes each key with the webhook name.
    pub fn audit_annotations(&self) -> BTreeMap<String, String> {
        let f = &self.facts;
        let mut a = BTreeMap::new();
        a.insert(
            "decision".to_string(),
            if self.allowed() { "allowed" } else { "denied" }.to_string(),
        );
        a.insert("reason".to_string(), self.reason_code().to_string());
        if let Some(s) = &f.submitter {
            a.insert("subject".into(), s.subject.clone());
            a.insert("issuer".into(), s.issuer.clone());
            if let Some(jti) = &s.token_id {
                a.insert("token-id".into(), jti.clone());
            }
            a.insert("scopes".into(), s.scopes.join(" "));
        }
        if let Some(id) = &f.job_id {
            a.insert("job-id".into(), id.clone());
        }
        if let Some(p) = &f.policy {
            a.insert("policy".into(), p.clone());
        }
        if let Some(src) = f.identity_source {
            a.insert("identity-source".into(), src.to_string());
        }
        a
    }
}

/// One audit line.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub time: String,
    pub uid: String,
    pub webhook: &'static str,
    pub operation: &'static str,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub requester: String,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub jti: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub job_id: Option<String>,
    pub policy: Option<String>,
    pub identity_source: Option<&'static str>,
    pub dry_run: bool,
    pub allowed: bool,
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub latency_ms: f64,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Everything one review needs. Cheap to clone; the server keeps one per loaded config.
#[derive(Clone)]
pub struct Pipeline {
    pub config: Arc<Config>,
    pub verifier: Arc<dyn Verifier>,
    pub lookup: Arc<dyn Lookup>,
    pub policies: Arc<dyn PolicyStore>,
    /// Stage timings (token verification, policy apply); `None` offline.
    pub metrics: Option<Metrics>,
}

type Decided = Result<Allowed, Reason>;

/// Per-review working state.
struct Ctx<'r> {
    req: &'r Request<'r>,
    facts: Facts,
    policies: Vec<CiliumNetworkPolicy>,
}

impl Pipeline {
    /// Runs one review. `Err` only when the body is unusable and carries no uid (HTTP 400);
    /// everything else, including malformed objects, is an `Outcome` with a denial.
    pub async fn review(&self, mode: Mode, body: &[u8]) -> Result<Outcome, String> {
        let req = match decode::decode(body) {
            Ok(r) => r,
            Err(DecodeError::Unusable(m)) => return Err(m),
            Err(DecodeError::Denied { uid, message }) => {
                return Ok(Outcome {
                    facts: Facts {
                        uid,
                        mode: mode.as_str(),
                        ..Facts::default()
                    },
                    decision: Err(Reason::Malformed(message)),
                    policies: Vec::new(),
                });
            }
        };
        let mut ctx = Ctx {
            facts: Facts {
                uid: req.uid.clone(),
                mode: mode.as_str(),
                operation: req.operation.as_str(),
                kind: req.kind.kind.clone(),
                namespace: req.namespace.clone().unwrap_or_default(),
                name: req.name.clone().unwrap_or_default(),
                requester: req.user_info.username.clone(),
                dry_run: req.is_dry_run(),
                ..Facts::default()
            },
            req: &req,
            policies: Vec::new(),
        };
        let decision = match self.lookup.available() {
            Err(why) => Err(Reason::Unavailable(format!(
                "sparkward cannot decide safely right now: {why}; nothing was admitted, retry \
                 shortly (if it persists, tell the platform team)"
            ))),
            Ok(()) => match mode {
                Mode::Mutate => self.mutate(&mut ctx).await,
                Mode::Validate => self.validate(&mut ctx).await,
            },
        };
        Ok(Outcome {
            facts: ctx.facts,
            decision,
            policies: ctx.policies,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Mutating webhook
    // -----------------------------------------------------------------------------------------

    async fn mutate(&self, ctx: &mut Ctx<'_>) -> Decided {
        let req = ctx.req;
        let kind = &req.kind;
        let sub = req.sub_resource.as_deref().unwrap_or("");
        match (kind.group.as_str(), kind.kind.as_str(), req.operation, sub) {
            (SPARK_GROUP, "SparkApplication", Operation::Create, "") => {
                check_spark_version(req)?;
                let app: SparkApplication = parse_object(req)?;
                self.mutate_app(ctx, app).await
            }
            (SPARK_GROUP, "ScheduledSparkApplication", Operation::Create, "") => {
                check_spark_version(req)?;
                let app: ScheduledSparkApplication = parse_object(req)?;
                self.mutate_schedule(ctx, app).await
            }
            ("", "Pod", Operation::Create, "") => {
                let pod = parse_pod(req)?;
                self.mutate_pod(ctx, pod).await
            }
            ("", "Pod", Operation::Update, "ephemeralcontainers") => {
                let (pod, old): (Pod, Pod) = (parse_object(req)?, parse_old_object(req)?);
                let added = new_ephemeral_names(&pod, &old);
                let findings = inspect_pod(&pod, &self.config.hardening, Some(&added));
                finish(findings, Vec::new())
                    .map(|patch| Allowed {
                        patch,
                        warnings: Vec::new(),
                    })
                    .map_err(Reason::Hardening)
            }
            ("", "ConfigMap", Operation::Create | Operation::Update, "") => {
                let cm: ConfigMap = parse_object(req)?;
                let data = Loc::root().key("data");
                let patch = scrub_spark_properties(
                    cm.data.as_ref().unwrap_or(&BTreeMap::new()),
                    &self.token_annotation(),
                )
                .into_iter()
                .map(|(key, value)| {
                    PatchOperation::Replace(json_patch::ReplaceOperation {
                        path: data.key(&key).pointer(),
                        value: serde_json::Value::String(value),
                    })
                })
                .collect();
                Ok(Allowed {
                    patch,
                    warnings: Vec::new(),
                })
            }
            // Updates and deletes are guarded by the validating webhook; nothing to add.
            (SPARK_GROUP, "SparkApplication" | "ScheduledSparkApplication", _, _)
            | ("", "Pod" | "ConfigMap", _, _)
            | (CILIUM_GROUP, "CiliumNetworkPolicy", _, _) => Ok(Allowed::default()),
            _ => Err(unsupported(req)),
        }
    }

    async fn mutate_app(&self, ctx: &mut Ctx<'_>, app: SparkApplication) -> Decided {
        let req = ctx.req;
        let namespace = require_namespace(req)?;
        let derived = labels::job_id_for_request(&req.uid);
        let (job, new_job) = if app.metadata.label(JOB_ID_LABEL) == Some(derived.as_str()) {
            // Re-invocation of this same request: the identity was verified by our first pass.
            ctx.facts.identity_source = Some("reinvocation");
            let job = JobIdentity::from_admitted(&app.metadata).ok_or_else(|| {
                Reason::Lineage(
                    "the object carries this request's job id but an incomplete identity record"
                        .into(),
                )
            })?;
            (job, false)
        } else {
            foreign_job_claim(&app.metadata, &derived)?;
            let submitter = match self.schedule_parent(ctx, &app.metadata, namespace).await? {
                Some(s) => s,
                None => self.verify_token(ctx, &app.metadata).await?,
            };
            (
                JobIdentity {
                    job_id: derived,
                    submitter,
                },
                true,
            )
        };
        record_job(&mut ctx.facts, &job);

        let stamp = job.stamp(None);
        let spec_stamp = Stamp {
            labels: job.pod_labels(),
            annotations: BTreeMap::new(),
        };
        let mut claims = self.claims(&app.metadata, &stamp);
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
        if !claims.is_empty() {
            return Err(Reason::Spoofing(claims));
        }
        let spec_loc = Loc::root().key("spec");
        let mut ops = plan_metadata(&app.metadata, &stamp, &self.token_annotation());
        ops.extend(plan_spark_pod_labels(
            &spec_loc,
            &app.spec,
            &spec_stamp.labels,
        ));
        let patch = finish(
            inspect_app_spec(&spec_loc, &app.spec, &self.config.hardening),
            ops,
        )
        .map_err(Reason::Hardening)?;
        self.allow_job(ctx, &job, namespace, new_job, patch).await
    }

    /// For a SparkApplication created by spark-operator from a ScheduledSparkApplication: the
    /// schedule's verified submitter. `None` when the application is not such a run.
    async fn schedule_parent(
        &self,
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
        if !self.is_operator(&ctx.req.user_info.username) {
            // Anyone can write an ownerReference; only the operator's runs inherit.
            return Ok(None);
        }
        let parent = self
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
        ctx.facts.identity_source = Some("schedule");
        Ok(Some(submitter))
    }

    async fn mutate_schedule(&self, ctx: &mut Ctx<'_>, app: ScheduledSparkApplication) -> Decided {
        let req = ctx.req;
        require_namespace(req)?;
        let derived = labels::job_id_for_request(&req.uid);
        let submitter = if app.metadata.annotation(SCHEDULE_ID_ANNOTATION) == Some(derived.as_str())
        {
            ctx.facts.identity_source = Some("reinvocation");
            Submitter::from_annotations(&app.metadata).ok_or_else(|| {
                Reason::Lineage(
                    "the object carries this request's schedule id but an incomplete \
                         identity record"
                        .into(),
                )
            })?
        } else {
            self.verify_token(ctx, &app.metadata).await?
        };
        ctx.facts.submitter = Some(submitter.clone());
        let stamp = schedule_stamp(&submitter, &derived);
        let mut claims = self.claims(&app.metadata, &stamp);
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
        let ops = plan_metadata(&app.metadata, &stamp, &self.token_annotation());
        let patch = finish(
            inspect_app_spec(&template_loc, template, &self.config.hardening),
            ops,
        )
        .map_err(Reason::Hardening)?;
        Ok(Allowed {
            patch,
            warnings: Vec::new(),
        })
    }

    async fn mutate_pod(&self, ctx: &mut Ctx<'_>, pod: Pod) -> Decided {
        let namespace = require_namespace(ctx.req)?;
        let (job, new_job) = self.pod_job(ctx, &pod, namespace, Mode::Mutate).await?;
        record_job(&mut ctx.facts, &job);
        let role = spark_role(&pod.metadata);
        let stamp = job.stamp(role);
        let claims = self.claims(&pod.metadata, &stamp);
        if !claims.is_empty() {
            return Err(Reason::Spoofing(claims));
        }
        let ops = plan_metadata(&pod.metadata, &stamp, &self.token_annotation());
        let patch = finish(inspect_pod(&pod, &self.config.hardening, None), ops)
            .map_err(Reason::Hardening)?;
        self.allow_job(ctx, &job, namespace, new_job, patch).await
    }

    /// The job a new pod belongs to, and whether this request starts it.
    ///
    /// Order: (0) a re-invocation of this request; (b) an executor created by a job's pod (a
    /// service-account token bound to a pod of this namespace that belongs to an admitted job);
    /// (a) a driver created by a trusted spark-operator identity for an admitted
    /// SparkApplication; (c) anyone else needs a valid token and starts a new job. (b) is
    /// checked before (a) so that a job pod whose service account is also listed as an operator
    /// identity can never pass its pods off as another application's driver.
    async fn pod_job(
        &self,
        ctx: &mut Ctx<'_>,
        pod: &Pod,
        namespace: &str,
        mode: Mode,
    ) -> Result<(JobIdentity, bool), Reason> {
        let req = ctx.req;
        let derived = labels::job_id_for_request(&req.uid);
        if pod.metadata.label(JOB_ID_LABEL) == Some(derived.as_str()) {
            ctx.facts.identity_source = Some("reinvocation");
            let job = JobIdentity::from_admitted(&pod.metadata).ok_or_else(|| {
                Reason::Lineage(
                    "the pod carries this request's job id but an incomplete identity record"
                        .into(),
                )
            })?;
            return Ok((job, mode == Mode::Validate));
        }
        let role = spark_role(&pod.metadata);
        let user = &req.user_info;
        // (b) created by a pod of a job in this namespace.
        if let (Some((pod_name, pod_uid)), Some((sa_namespace, _))) =
            (user.bound_pod(), user.service_account())
            && sa_namespace == namespace
        {
            let creator = self
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
                    ctx.facts.identity_source = Some("creator-pod");
                    return Ok((job, false));
                }
            }
        }
        // (a) a driver created by spark-operator.
        if self.is_operator(&user.username)
            && role == Some("driver")
            && let Some(app_name) = pod.metadata.label(SPARK_APP_NAME_LABEL)
        {
            let app = self
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
            ctx.facts.identity_source = Some("operator");
            return Ok((job, false));
        }
        // (c) a new job: the pod must carry a valid token. The validating pass runs after the
        // token was removed; a new job's pod has this request's job id (handled above).
        if mode == Mode::Validate {
            return Err(not_admitted_here("Pod"));
        }
        foreign_job_claim(&pod.metadata, &derived)?;
        let submitter = self.verify_token(ctx, &pod.metadata).await?;
        Ok((
            JobIdentity {
                job_id: derived,
                submitter,
            },
            true,
        ))
    }

    async fn verify_token(&self, ctx: &mut Ctx<'_>, meta: &Meta) -> Result<Submitter, Reason> {
        let Some(identity) = &self.config.identity else {
            return Err(no_identity());
        };
        let token = meta
            .annotation(&identity.annotation)
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| Reason::from(IdentityError::missing_token(identity)))?;
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
        ctx.facts.identity_source = Some("token");
        ctx.facts.submitter = Some(submitter.clone());
        Ok(submitter)
    }

    /// The allowed answer for a job's object: a new job's policy is applied first.
    async fn allow_job(
        &self,
        ctx: &mut Ctx<'_>,
        job: &JobIdentity,
        namespace: &str,
        new_job: bool,
        patch: Vec<PatchOperation>,
    ) -> Decided {
        let warnings = if new_job {
            self.apply_policy(ctx, job, namespace).await?
        } else {
            Vec::new()
        };
        Ok(Allowed { patch, warnings })
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
        ctx.policies.push(rendered.policy.clone());
        if !ctx.req.is_dry_run() {
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
            applied.map_err(|e| Reason::PolicyApply {
                code: e.code(),
                message: e.to_string(),
            })?;
        }
        Ok(rendered.warnings)
    }

    // -----------------------------------------------------------------------------------------
    // Validating webhook
    // -----------------------------------------------------------------------------------------

    async fn validate(&self, ctx: &mut Ctx<'_>) -> Decided {
        let req = ctx.req;
        let kind = &req.kind;
        let sub = req.sub_resource.as_deref().unwrap_or("");
        let ok = Ok(Allowed::default());
        match (kind.group.as_str(), kind.kind.as_str(), req.operation, sub) {
            (CILIUM_GROUP, "CiliumNetworkPolicy", _, _) => {
                self.validate_cnp(req).map(|_| Allowed::default())
            }
            (SPARK_GROUP, "SparkApplication", Operation::Create, "") => {
                check_spark_version(req)?;
                let app: SparkApplication = parse_object(req)?;
                self.validate_new_app(ctx, &app)?;
                ok
            }
            (SPARK_GROUP, "ScheduledSparkApplication", Operation::Create, "") => {
                check_spark_version(req)?;
                let app: ScheduledSparkApplication = parse_object(req)?;
                self.validate_new_schedule(ctx, &app)?;
                ok
            }
            (SPARK_GROUP, "SparkApplication", Operation::Update, "") => {
                let (new, old): (SparkApplication, SparkApplication) =
                    (parse_object(req)?, parse_old_object(req)?);
                let mut changed = self.protected_metadata_changes(&new.metadata, &old.metadata);
                for role in ["driver", "executor"] {
                    let pick = |a: &SparkApplication| {
                        let p = if role == "driver" {
                            &a.spec.driver
                        } else {
                            &a.spec.executor
                        };
                        p.as_ref().and_then(|p| p.labels.clone())
                    };
                    changed.extend(protected_changes(
                        &Loc::root().key("spec").key(role).key("labels"),
                        pick(&new).as_ref(),
                        pick(&old).as_ref(),
                        |k| k.starts_with(PREFIX),
                    ));
                }
                if !changed.is_empty() {
                    return Err(Reason::Immutable(changed));
                }
                if JobIdentity::from_admitted(&old.metadata).is_some() {
                    self.require_hardened(inspect_app_spec(
                        &Loc::root().key("spec"),
                        &new.spec,
                        &self.config.hardening,
                    ))?;
                }
                ok
            }
            (SPARK_GROUP, "ScheduledSparkApplication", Operation::Update, "") => {
                let (new, old): (ScheduledSparkApplication, ScheduledSparkApplication) =
                    (parse_object(req)?, parse_old_object(req)?);
                let changed = self.protected_metadata_changes(&new.metadata, &old.metadata);
                if !changed.is_empty() {
                    return Err(Reason::Immutable(changed));
                }
                if let (Some(t), true) = (
                    &new.spec.template,
                    Submitter::from_annotations(&old.metadata).is_some(),
                ) {
                    self.require_hardened(inspect_app_spec(
                        &Loc::root().key("spec").key("template"),
                        t,
                        &self.config.hardening,
                    ))?;
                }
                ok
            }
            ("", "Pod", Operation::Create, "") => {
                let pod = parse_pod(req)?;
                self.validate_new_pod(ctx, &pod).await?;
                ok
            }
            ("", "Pod", Operation::Update, "") => {
                let (new, old): (Pod, Pod) = (parse_object(req)?, parse_old_object(req)?);
                let mut changed = self.protected_metadata_changes(&new.metadata, &old.metadata);
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
                    self.require_hardened(inspect_pod(&new, &self.config.hardening, None))?;
                }
                ok
            }
            ("", "Pod", Operation::Update, "ephemeralcontainers") => {
                let (new, old): (Pod, Pod) = (parse_object(req)?, parse_old_object(req)?);
                let added = new_ephemeral_names(&new, &old);
                self.require_hardened(inspect_pod(&new, &self.config.hardening, Some(&added)))?;
                ok
            }
            ("", "ConfigMap", Operation::Create | Operation::Update, "") => {
                let cm: ConfigMap = parse_object(req)?;
                let leaks = scrub_spark_properties(
                    cm.data.as_ref().unwrap_or(&BTreeMap::new()),
                    &self.token_annotation(),
                );
                if let Some((key, _)) = leaks.first() {
                    return Err(Reason::NotHardened(vec![Violation {
                        field: Loc::root().key("data").key(key).human().to_string(),
                        problem: "holds the submitter token (a spark-submit --conf)".into(),
                        fix: "sparkward's mutating webhook removes it; check that the mutating \
                              webhook configuration covers ConfigMaps in this namespace"
                            .into(),
                    }]));
                }
                ok
            }
            (SPARK_GROUP, "SparkApplication" | "ScheduledSparkApplication", _, _)
            | ("", "Pod" | "ConfigMap", _, _) => ok,
            _ => Err(unsupported(req)),
        }
    }

    fn validate_new_app(&self, ctx: &mut Ctx<'_>, app: &SparkApplication) -> Result<(), Reason> {
        let derived = labels::job_id_for_request(&ctx.req.uid);
        let job = JobIdentity::from_admitted(&app.metadata)
            .filter(|j| j.job_id == derived)
            .ok_or_else(|| not_admitted_here("SparkApplication"))?;
        record_job(&mut ctx.facts, &job);
        self.require_token_removed(&app.metadata)?;
        let mut claims = self.claims(&app.metadata, &job.stamp(None));
        let spec_stamp = Stamp {
            labels: job.pod_labels(),
            annotations: BTreeMap::new(),
        };
        for (role, pod) in [
            ("driver", &app.spec.driver),
            ("executor", &app.spec.executor),
        ] {
            let labels = pod.as_ref().and_then(|p| p.labels.as_ref());
            claims.extend(missing_claims(
                &Loc::root().key("spec").key(role).key("labels"),
                labels,
                &spec_stamp.labels,
            ));
        }
        if !claims.is_empty() {
            return Err(Reason::Spoofing(claims));
        }
        self.require_hardened(inspect_app_spec(
            &Loc::root().key("spec"),
            &app.spec,
            &self.config.hardening,
        ))
    }

    fn validate_new_schedule(
        &self,
        ctx: &mut Ctx<'_>,
        app: &ScheduledSparkApplication,
    ) -> Result<(), Reason> {
        let derived = labels::job_id_for_request(&ctx.req.uid);
        if app.metadata.annotation(SCHEDULE_ID_ANNOTATION) != Some(derived.as_str()) {
            return Err(not_admitted_here("ScheduledSparkApplication"));
        }
        let submitter = Submitter::from_annotations(&app.metadata)
            .ok_or_else(|| not_admitted_here("ScheduledSparkApplication"))?;
        ctx.facts.submitter = Some(submitter.clone());
        self.require_token_removed(&app.metadata)?;
        let claims = self.claims(&app.metadata, &schedule_stamp(&submitter, &derived));
        if !claims.is_empty() {
            return Err(Reason::Spoofing(claims));
        }
        if let Some(t) = &app.spec.template {
            self.require_hardened(inspect_app_spec(
                &Loc::root().key("spec").key("template"),
                t,
                &self.config.hardening,
            ))?;
        }
        Ok(())
    }

    async fn validate_new_pod(&self, ctx: &mut Ctx<'_>, pod: &Pod) -> Result<(), Reason> {
        let namespace = require_namespace(ctx.req)?;
        if pod.metadata.label(JOB_ID_LABEL).is_none() {
            return Err(not_admitted_here("Pod"));
        }
        // The same derivation as the mutating pass: a pod's job comes from its creator.
        let (job, _) = self.pod_job(ctx, pod, namespace, Mode::Validate).await?;
        record_job(&mut ctx.facts, &job);
        self.require_token_removed(&pod.metadata)?;
        let stamp = job.stamp(spark_role(&pod.metadata));
        let mut claims = self.claims(&pod.metadata, &stamp);
        claims.extend(missing_claims(
            &Loc::root().key("metadata").key("labels"),
            pod.metadata.labels.as_ref(),
            &stamp.labels,
        ));
        if !claims.is_empty() {
            return Err(Reason::Spoofing(claims));
        }
        self.require_hardened(inspect_pod(pod, &self.config.hardening, None))
    }

    fn validate_cnp(&self, req: &Request<'_>) -> Result<(), Reason> {
        let managed = |raw: Option<&RawValue>| -> Result<bool, Reason> {
            let Some(raw) = raw else { return Ok(false) };
            let obj: MetaOnly = serde_json::from_str(raw.get()).map_err(|e| {
                Reason::Malformed(format!("object is not a valid CiliumNetworkPolicy: {e}"))
            })?;
            Ok(obj.metadata.label(MANAGED_BY_LABEL) == Some(MANAGED_BY_VALUE))
        };
        if !(managed(req.object())? || managed(req.old_object())?) {
            return Ok(());
        }
        let who = &req.user_info.username;
        if self.config.policy.managers.iter().any(|m| m == who) {
            return Ok(());
        }
        let name = req.name.as_deref().unwrap_or("(unnamed)");
        Err(Reason::NotManager(format!(
            "CiliumNetworkPolicy {name} is managed by sparkward ({MANAGED_BY_LABEL}={MANAGED_BY_VALUE}); \
             {who} may not {} it: job policies follow the job's token scopes, ask the security team \
             to change the scope mapping instead",
            match req.operation {
                Operation::Create => "create",
                Operation::Delete => "delete",
                _ => "change",
            }
        )))
    }

    // -----------------------------------------------------------------------------------------
    // Helpers
    // -----------------------------------------------------------------------------------------

    fn token_annotation(&self) -> String {
        self.config
            .identity
            .as_ref()
            .map_or(labels::TOKEN_ANNOTATION, |i| i.annotation.as_str())
            .to_string()
    }

    fn is_operator(&self, username: &str) -> bool {
        self.config
            .identity
            .as_ref()
            .is_some_and(|i| i.spark_operator.iter().any(|o| o == username))
    }

    fn claims(&self, meta: &Meta, stamp: &Stamp) -> Vec<Violation> {
        conflicting_claims(
            &Loc::root().key("metadata"),
            meta.labels.as_ref(),
            meta.annotations.as_ref(),
            stamp,
            &self.token_annotation(),
        )
    }

    fn require_token_removed(&self, meta: &Meta) -> Result<(), Reason> {
        let ann = self.token_annotation();
        if token_present(meta, &ann) {
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

    fn require_hardened(&self, findings: Findings) -> Result<(), Reason> {
        if !findings.weaker.is_empty() {
            return Err(Reason::Hardening(findings.weaker));
        }
        let missing = findings.missing_as_violations();
        if !missing.is_empty() {
            return Err(Reason::NotHardened(missing));
        }
        Ok(())
    }

    /// Changes to `sparkward.io/` labels and annotations (the token annotation included: a
    /// token may only be given at creation).
    fn protected_metadata_changes(&self, new: &Meta, old: &Meta) -> Vec<Violation> {
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

/// Keys selected by `protected` whose value differs between `old` and `new` (added, removed or
/// changed).
fn protected_changes(
    loc: &Loc,
    new: Option<&BTreeMap<String, String>>,
    old: Option<&BTreeMap<String, String>>,
    protected: impl Fn(&str) -> bool,
) -> Vec<Violation> {
    let empty = BTreeMap::new();
    let (new, old) = (new.unwrap_or(&empty), old.unwrap_or(&empty));
    let keys: std::collections::BTreeSet<&String> = new.keys().chain(old.keys()).collect();
    keys.into_iter()
        .filter(|k| protected(k))
        .filter(|k| new.get(*k) != old.get(*k))
        .map(|k| {
            let problem = match (old.get(k), new.get(k)) {
                (None, Some(v)) => format!("would be added as '{v}'"),
                (Some(_), None) => "would be removed".to_string(),
                (Some(a), Some(b)) => format!("would change from '{a}' to '{b}'"),
                (None, None) => String::new(),
            };
            Violation {
                field: loc.key(k).human().to_string(),
                problem,
                fix: "sparkward's identity labels and annotations are set once at admission and \
                      cannot be edited; submit a new job instead"
                    .into(),
            }
        })
        .collect()
}

/// Stamp labels the object lacks (the validating webhook requires all of them).
fn missing_claims(
    loc: &Loc,
    present: Option<&BTreeMap<String, String>>,
    wanted: &BTreeMap<&'static str, String>,
) -> Vec<Violation> {
    wanted
        .keys()
        .filter(|k| present.is_none_or(|p| !p.contains_key(**k)))
        .map(|k| Violation {
            field: loc.key(k).human().to_string(),
            problem: "is missing".into(),
            fix: "sparkward's mutating webhook sets it; check the webhook configurations".into(),
        })
        .collect()
}

/// A new job's object must not arrive with a job id: ids are assigned by sparkward (derived from
/// the admission request), so a job id here is a claim on somebody else's job and its network
/// access. Checked before the token so the message names the real problem.
fn foreign_job_claim(meta: &Meta, derived: &str) -> Result<(), Reason> {
    match meta.label(JOB_ID_LABEL) {
        Some(claimed) if claimed != derived => Err(Reason::Spoofing(vec![Violation {
            field: Loc::root()
                .key("metadata")
                .key("labels")
                .key(JOB_ID_LABEL)
                .human()
                .to_string(),
            problem: format!(
                "claims job '{claimed}', but this object starts a new job and nothing it was \
                 created by belongs to that job"
            ),
            fix: "remove sparkward.io/ labels and annotations: sparkward assigns job ids".into(),
        }])),
        _ => Ok(()),
    }
}

fn record_job(facts: &mut Facts, job: &JobIdentity) {
    facts.submitter = Some(job.submitter.clone());
    facts.job_id = Some(job.job_id.clone());
    facts.policy = Some(job.policy_name());
}

fn new_ephemeral_names<'p>(new: &'p Pod, old: &Pod) -> Vec<&'p str> {
    new.spec
        .ephemeral_containers
        .iter()
        .map(|c| c.name.as_str())
        .filter(|n| !old.spec.ephemeral_containers.iter().any(|o| o.name == *n))
        .collect()
}

fn not_admitted_here(kind: &str) -> Reason {
    Reason::Lineage(format!(
        "this {kind} was not stamped by sparkward's mutating webhook in this request (its \
         sparkward.io/ identity is missing or belongs to another request): check that the \
         MutatingWebhookConfiguration covers this namespace, and remove any sparkward.io/ labels \
         or annotations from the manifest"
    ))
}

fn lookup_failed(
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

fn unsupported(req: &Request<'_>) -> Reason {
    let k = &req.kind;
    let sub = req
        .sub_resource
        .as_deref()
        .map(|s| format!(" (subresource {s})"))
        .unwrap_or_default();
    Reason::Unsupported(format!(
        "sparkward does not handle {} {}/{} {}{sub}: the webhook configuration routes a kind or \
         operation here that it should not; check its rules",
        req.operation.as_str(),
        if k.group.is_empty() { "core" } else { &k.group },
        k.version,
        k.kind
    ))
}

fn require_namespace<'r>(req: &'r Request<'_>) -> Result<&'r str, Reason> {
    req.namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Reason::Malformed("request.namespace is missing".into()))
}

fn check_spark_version(req: &Request<'_>) -> Result<(), Reason> {
    if req.kind.version != SPARK_VERSION {
        return Err(Reason::Unsupported(format!(
            "{}/{} {} is not supported: sparkward understands {SPARK_GROUP}/{SPARK_VERSION} \
             (set matchPolicy: Equivalent in the webhook configuration)",
            req.kind.group, req.kind.version, req.kind.kind
        )));
    }
    Ok(())
}

fn parse_raw<T: DeserializeOwned>(
    raw: Option<&RawValue>,
    what: &str,
    kind: &str,
) -> Result<T, Reason> {
    let raw = raw.ok_or_else(|| Reason::Malformed(format!("request.{what} is missing")))?;
    serde_json::from_str(raw.get())
        .map_err(|e| Reason::Malformed(format!("request.{what} is not a valid {kind}: {e}")))
}

fn parse_object<T: DeserializeOwned>(req: &Request<'_>) -> Result<T, Reason> {
    parse_raw(req.object(), "object", &req.kind.kind)
}

/// The object of a Pod CREATE: parsed by decode's fast path when it could, else from the raw
/// object (same view, same errors).
fn parse_pod(req: &Request<'_>) -> Result<Pod, Reason> {
    req.take_pod().map_or_else(|| parse_object(req), Ok)
}

fn parse_old_object<T: DeserializeOwned>(req: &Request<'_>) -> Result<T, Reason> {
    parse_raw(req.old_object(), "oldObject", &req.kind.kind)
}
