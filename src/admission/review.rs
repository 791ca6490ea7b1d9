//! The admission router: decode, route by kind to the handler of that kind, and produce one
//! `Outcome` that the server answers with, the audit log records, and `sparkward review` prints.
//!
//! Each admitted kind has its own module (`spark_app`, `scheduled`, `pod`, `configmap`,
//! `network_policy`, ...); what they share (identity, stamps, the policy apply, claim checks)
//! is in `job`. Adding a kind is a new module plus one line in `Pipeline::route`. A kind,
//! operation or subresource that no handler recognises is a denial, never a pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use json_patch::PatchOperation;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::admission::decode::{self, DecodeError, Request};
use crate::admission::respond::{Response, write_seq, write_str};
use crate::admission::store::{PolicyStore, SecretStore};
use crate::admission::{
    Keyring, Lookup, Verifier, configmap, connect, eviction, network_policy, pod, scheduled,
    secret, spark_app, token_request,
};
use crate::config::Config;
use crate::core::cilium::CiliumNetworkPolicy;
use crate::core::decision::{Reason, Submitter};
use crate::core::labels::is_label_value;
use crate::core::objects::{ObjectOnly, Pod};
use crate::core::spark::RpcSecret;
use crate::telemetry::Metrics;

pub(super) const SPARK_GROUP: &str = "sparkoperator.k8s.io";
const SPARK_VERSION: &str = "v1beta2";
pub(super) const CILIUM_GROUP: &str = "cilium.io";

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
    /// The job's RPC Secret made by this review (created unless dry run).
    pub secrets: Vec<RpcSecret>,
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

    /// The audit line of this decision (DESIGN.md, Audit). Never holds the token. Borrows the
    /// facts: it is serialised once, straight away.
    pub fn audit_record(&self, latency: Duration) -> AuditRecord<'_> {
        let f = &self.facts;
        let s = f.submitter.as_ref();
        AuditRecord {
            time: now_rfc3339(),
            uid: &f.uid,
            webhook: f.mode,
            operation: f.operation,
            kind: &f.kind,
            namespace: &f.namespace,
            name: &f.name,
            requester: &f.requester,
            subject: s.map(|s| s.subject.as_str()),
            issuer: s.map(|s| s.issuer.as_str()),
            jti: s.and_then(|s| s.token_id.as_deref()),
            scopes: s.map(|s| s.scopes.as_slice()),
            job_id: f.job_id.as_deref(),
            policy: f.policy.as_deref(),
            identity_source: f.identity_source,
            dry_run: f.dry_run,
            allowed: self.allowed(),
            reason: self.reason_code(),
            message: self.decision.as_ref().err().map(ToString::to_string),
            warnings: self
                .decision
                .as_ref()
                .map(|a| a.warnings.as_slice())
                .unwrap_or_default(),
            latency_ms: latency.as_secs_f64() * 1000.0,
        }
    }

    /// `auditAnnotations`: the API server prefixes each key with the webhook name.
    pub fn audit_annotations(&self) -> BTreeMap<&'static str, String> {
        let f = &self.facts;
        let mut a = BTreeMap::new();
        a.insert(
            "decision",
            if self.allowed() { "allowed" } else { "denied" }.to_string(),
        );
        a.insert("reason", self.reason_code().to_string());
        if let Some(s) = &f.submitter {
            a.insert("subject", s.subject.clone());
            a.insert("issuer", s.issuer.clone());
            if let Some(jti) = &s.token_id {
                a.insert("token-id", jti.clone());
            }
            a.insert("scopes", s.scopes.join(" "));
        }
        if let Some(id) = &f.job_id {
            a.insert("job-id", id.clone());
        }
        if let Some(p) = &f.policy {
            a.insert("policy", p.clone());
        }
        if let Some(src) = f.identity_source {
            a.insert("identity-source", src.to_string());
        }
        a
    }
}

/// One audit line.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord<'a> {
    pub time: String,
    pub uid: &'a str,
    pub webhook: &'static str,
    pub operation: &'static str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub requester: &'a str,
    pub subject: Option<&'a str>,
    pub issuer: Option<&'a str>,
    pub jti: Option<&'a str>,
    pub scopes: Option<&'a [String]>,
    pub job_id: Option<&'a str>,
    pub policy: Option<&'a str>,
    pub identity_source: Option<&'static str>,
    pub dry_run: bool,
    pub allowed: bool,
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub warnings: &'a [String],
    pub latency_ms: f64,
}

impl AuditRecord<'_> {
    /// The line's JSON text: what serde writes for the record (compared in a test), with the
    /// strings copied whole when they need no escape, as the answer's are (`respond::write_str`).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(640);
        let o = &mut out;
        let opt = |o: &mut Vec<u8>, v: Option<&str>| match v {
            Some(v) => write_str(o, v),
            None => {
                o.extend_from_slice(b"null");
                Ok(())
            }
        };
        let list = |o: &mut Vec<u8>, items: &[String]| write_seq(o, items, |o, s| write_str(o, s));
        o.extend_from_slice(b"{\"time\":");
        write_str(o, &self.time)?;
        for (key, value) in [
            (&b",\"uid\":"[..], self.uid),
            (b",\"webhook\":", self.webhook),
            (b",\"operation\":", self.operation),
            (b",\"kind\":", self.kind),
            (b",\"namespace\":", self.namespace),
            (b",\"name\":", self.name),
            (b",\"requester\":", self.requester),
        ] {
            o.extend_from_slice(key);
            write_str(o, value)?;
        }
        for (key, value) in [
            (&b",\"subject\":"[..], self.subject),
            (b",\"issuer\":", self.issuer),
            (b",\"jti\":", self.jti),
        ] {
            o.extend_from_slice(key);
            opt(o, value)?;
        }
        o.extend_from_slice(b",\"scopes\":");
        match self.scopes {
            Some(scopes) => list(o, scopes)?,
            None => o.extend_from_slice(b"null"),
        }
        for (key, value) in [
            (&b",\"jobId\":"[..], self.job_id),
            (b",\"policy\":", self.policy),
            (b",\"identitySource\":", self.identity_source),
        ] {
            o.extend_from_slice(key);
            opt(o, value)?;
        }
        o.extend_from_slice(if self.dry_run {
            b",\"dryRun\":true"
        } else {
            b",\"dryRun\":false"
        });
        o.extend_from_slice(if self.allowed {
            b",\"allowed\":true"
        } else {
            b",\"allowed\":false"
        });
        o.extend_from_slice(b",\"reason\":");
        write_str(o, self.reason)?;
        if let Some(message) = &self.message {
            o.extend_from_slice(b",\"message\":");
            write_str(o, message)?;
        }
        if !self.warnings.is_empty() {
            o.extend_from_slice(b",\"warnings\":");
            list(o, self.warnings)?;
        }
        o.extend_from_slice(b",\"latencyMs\":");
        serde_json::to_writer(&mut *o, &self.latency_ms)?;
        o.push(b'}');
        Ok(out)
    }
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
    /// Where new jobs' RPC Secrets are created.
    pub secrets: Arc<dyn SecretStore>,
    /// The keys admission stamps are made and checked with (shared by all replicas).
    pub stamp_keys: Keyring,
    /// Stage timings (token verification, policy apply); `None` offline.
    pub metrics: Option<Metrics>,
}

pub(super) type Decided = Result<Allowed, Reason>;

/// Per-review working state.
pub(super) struct Ctx<'r> {
    pub(super) req: &'r Request<'r>,
    pub(super) mode: Mode,
    pub(super) facts: Facts,
    pub(super) policies: Vec<CiliumNetworkPolicy>,
    pub(super) secrets: Vec<RpcSecret>,
}

impl Pipeline {
    /// Runs one review. `Err` only when the body is unusable and carries no uid (HTTP 400);
    /// everything else, including malformed objects, is an `Outcome` with a denial.
    pub async fn review(&self, mode: Mode, body: &[u8]) -> Result<Outcome, String> {
        let req = match decode::decode_for(body, mode) {
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
                    secrets: Vec::new(),
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
            mode,
            policies: Vec::new(),
            secrets: Vec::new(),
        };
        let decision = match self.lookup.available() {
            Err(why) => Err(Reason::Unavailable(format!(
                "sparkward cannot decide safely right now: {why}; nothing was admitted, retry \
                 shortly (if it persists, tell the platform team)"
            ))),
            Ok(()) => self.route(&mut ctx).await,
        };
        Ok(Outcome {
            facts: ctx.facts,
            decision,
            policies: ctx.policies,
            secrets: ctx.secrets,
        })
    }

    /// One line per admitted kind; each handler routes operations and subresources itself.
    /// Each handler's future is boxed: the review's future is then a few hundred bytes rather
    /// than the largest handler's state (12 KB), which any layer above it that moves it (the
    /// deadline, the HTTP service, hyper's dispatcher) would copy whole.
    /// Subresources whose review carries another kind than their resource's (connect options,
    /// TokenRequest, Binding, Eviction) are routed by resource first.
    async fn route(&self, ctx: &mut Ctx<'_>) -> Decided {
        let res = &ctx.req.resource;
        let sub = ctx.req.sub_resource.as_deref().unwrap_or("");
        match (res.group.as_str(), res.resource.as_str(), sub) {
            ("", "pods", "exec" | "attach" | "portforward") => {
                return Box::pin(connect::review(self, ctx)).await;
            }
            ("", "serviceaccounts", "token") => {
                return Box::pin(token_request::review(self, ctx)).await;
            }
            // An eviction deletes the pod without a delete review of its own.
            ("", "pods", "eviction") => return Box::pin(eviction::review(self, ctx)).await,
            // Scheduling a pod is not a change to what a job is.
            ("", "pods", "binding") => return pass(),
            _ => {}
        }
        let kind = &ctx.req.kind;
        match (kind.group.as_str(), kind.kind.as_str()) {
            (SPARK_GROUP, "SparkApplication") => Box::pin(spark_app::review(self, ctx)).await,
            (SPARK_GROUP, "ScheduledSparkApplication") => {
                Box::pin(scheduled::review(self, ctx)).await
            }
            ("", "Pod") => Box::pin(pod::review(self, ctx)).await,
            ("", "ConfigMap") => Box::pin(configmap::review(self, ctx)).await,
            ("", "Secret") => secret::review(self, ctx),
            (CILIUM_GROUP, "CiliumNetworkPolicy") => network_policy::review(self, ctx),
            ("networking.k8s.io", "NetworkPolicy") => network_policy::review(self, ctx),
            _ => Err(unsupported(ctx.req)),
        }
    }
}

/// An allowed answer without a patch.
pub(super) fn pass() -> Decided {
    Ok(Allowed::default())
}

/// An allowed answer with `patch`.
pub(super) fn patched(patch: Vec<PatchOperation>) -> Decided {
    Ok(Allowed {
        patch,
        warnings: Vec::new(),
    })
}

pub(super) fn unsupported(req: &Request<'_>) -> Reason {
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

pub(super) fn require_namespace<'r>(req: &'r Request<'_>) -> Result<&'r str, Reason> {
    let namespace = req
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Reason::Malformed("request.namespace is missing".into()))?;
    // A name the API server could never have sent: refused here as bad input, not later as a
    // policy that cannot be rendered (a 503 "tell the platform team"; found by fuzzing).
    if !is_label_value(namespace) {
        return Err(Reason::Malformed(
            "request.namespace is not a valid namespace name".into(),
        ));
    }
    Ok(namespace)
}

pub(super) fn check_spark_version(req: &Request<'_>) -> Result<(), Reason> {
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
    serde_json::from_str::<ObjectOnly<T>>(raw.get())
        .map(|o| o.0)
        .map_err(|e| Reason::Malformed(format!("request.{what} is not a valid {kind}: {e}")))
}

pub(super) fn parse_object<T: DeserializeOwned>(req: &Request<'_>) -> Result<T, Reason> {
    parse_raw(req.object(), "object", &req.kind.kind)
}

/// The object of a Pod CREATE: parsed by decode's fast path when it could, else from the raw
/// object (same view, same errors).
pub(super) fn parse_pod(req: &Request<'_>) -> Result<Pod, Reason> {
    req.take_pod().map_or_else(|| parse_object(req), Ok)
}

pub(super) fn parse_old_object<T: DeserializeOwned>(req: &Request<'_>) -> Result<T, Reason> {
    parse_raw(req.old_object(), "oldObject", &req.kind.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_line_is_serdes_text() {
        let scopes = vec!["data:read".to_string(), "s\"3\\".to_string()];
        let warnings = vec!["w\n1".to_string(), "w2".to_string()];
        let full = AuditRecord {
            time: "2026-12-03T17:25:25.309392934Z".into(),
            uid: "u\"1",
            webhook: "mutate",
            operation: "CREATE",
            kind: "Pod",
            namespace: "spark-jobs",
            name: "n\u{1}é",
            requester: "system:serviceaccount:spark-jobs:spark",
            subject: Some("alice\\"),
            issuer: Some("https://idp.example.com/realms/data"),
            jti: Some("j"),
            scopes: Some(&scopes),
            job_id: Some("sj-abc"),
            policy: Some("sparkward-sj-abc"),
            identity_source: Some("creator-pod"),
            dry_run: true,
            allowed: false,
            reason: "denied",
            message: Some("no \"way\"\t".into()),
            warnings: &warnings,
            latency_ms: 0.1234,
        };
        let bare = AuditRecord {
            subject: None,
            issuer: None,
            jti: None,
            scopes: None,
            job_id: None,
            policy: None,
            identity_source: None,
            dry_run: false,
            allowed: true,
            message: None,
            warnings: &[],
            ..full.clone()
        };
        let empty_scopes = AuditRecord {
            scopes: Some(&[]),
            ..bare.clone()
        };
        for latency in [0.0, 1e-7, 12.5, 123_456.789, f64::NAN] {
            for record in [&full, &bare, &empty_scopes] {
                let record = AuditRecord {
                    latency_ms: latency,
                    ..record.clone()
                };
                assert_eq!(
                    String::from_utf8(record.to_json().unwrap()).unwrap(),
                    serde_json::to_string(&record).unwrap()
                );
            }
        }
    }
}
