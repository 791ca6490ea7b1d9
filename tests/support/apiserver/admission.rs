//! The admission chain: mutating webhooks in order (with `reinvocationPolicy: IfNeeded`), then
//! validating webhooks on the final object, each call an AdmissionReview v1 over TLS with its
//! own fresh `request.uid` — what k8s.io/apiserver's `mutating` and `validating` dispatchers do.
//!
//! What is modelled, from upstream's dispatchers (checked against a v1.36 kube-apiserver):
//! - every call gets a new random uid (`CreateAdmissionObjects`), also on reinvocation;
//! - mutating webhooks run one after another; a JSONPatch answer is applied before the next one
//!   is called; when a webhook changes the object, the `IfNeeded` webhooks called before it are
//!   called once more in a second round (the reinvocation context: a webhook that changes the
//!   object does not cause its own reinvocation, and a webhook never runs for the first time in
//!   the second round);
//! - validating webhooks are called concurrently, all with the final object;
//! - a denial becomes the webhook's `status` with `admission webhook "<name>" denied the
//!   request: <message>` (code below 400 raised to 400, `status: Failure`); a failed call
//!   (refused, timed out after `timeoutSeconds`, non-200, unreadable or invalid review such as a
//!   wrong `response.uid`) becomes `Internal error occurred: failed calling webhook "<name>":
//!   <reason>` under `failurePolicy: Fail` and is skipped under `Ignore`;
//! - warnings are collected for `Warning` response headers; audit annotations are dropped.
//!
//! Where it differs: there are no in-tree admission plugins (no defaulting, no LimitRanger,
//! no ServiceAccount plugin) between or around the webhooks; when several validating webhooks
//! fail, the first in configuration order is reported (upstream reports whichever it collected
//! first); Go's transport errors are only imitated for "connection refused" and timeouts.

use std::collections::HashSet;
use std::sync::Arc;

use base64::Engine;
use http::Method;
use serde_json::{Value, json};

use super::http::{Shared, lock};
use super::resource::{NAMESPACE, Resource};
use super::status::ApiError;
use super::user::User;
use super::webhooks::{FailurePolicy, RuleTarget, Skip, Webhook, split_url};

/// Everything admission knows about one request (upstream's `admission.Attributes`).
#[derive(Clone, Debug)]
pub(crate) struct Attributes {
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: &'static str,
    /// The resource addressed by the URL.
    pub resource: Resource,
    pub subresource: Option<String>,
    /// Group, version and kind of `object` (e.g. `PodExecOptions` for `pods/exec`).
    pub kind: (String, String, String),
    /// `""` for cluster-scoped requests.
    pub namespace: String,
    /// `""` while a `generateName` create has no name yet.
    pub name: String,
    pub object: Value,
    pub old_object: Value,
    /// CreateOptions / UpdateOptions / DeleteOptions, or null (CONNECT).
    pub options: Value,
    pub dry_run: bool,
    pub user: User,
}

impl Attributes {
    /// `request.namespace`: a namespace object's requests carry the namespace's own name.
    pub(crate) fn request_namespace(&self) -> &str {
        if self.resource == NAMESPACE {
            &self.name
        } else {
            &self.namespace
        }
    }

    /// Attributes for a request on `resource` whose object has the resource's own kind.
    pub(crate) fn new(
        operation: &'static str,
        resource: Resource,
        subresource: Option<String>,
        namespace: Option<&str>,
        user: &User,
    ) -> Self {
        Self {
            operation,
            resource,
            subresource,
            kind: (
                resource.group.to_string(),
                resource.version.to_string(),
                resource.kind.to_string(),
            ),
            namespace: namespace.unwrap_or("").to_string(),
            name: String::new(),
            object: Value::Null,
            old_object: Value::Null,
            options: Value::Null,
            dry_run: false,
            user: user.clone(),
        }
    }
}

/// One webhook call, recorded for tests (`FakeApiServer::admission_calls`).
#[derive(Clone, Debug)]
pub struct AdmissionCall {
    pub webhook: String,
    pub configuration: String,
    pub mutating: bool,
    /// 0 on the first pass, 1 when a mutating webhook was reinvoked.
    pub round: u8,
    pub uid: String,
    pub operation: String,
    /// `request.kind.kind`, e.g. `Pod`, `PodExecOptions`, `TokenRequest`.
    pub kind: String,
    /// `request.resource.resource`, e.g. `pods`.
    pub resource: String,
    pub sub_resource: Option<String>,
    pub namespace: String,
    /// `request.name` (`""` when absent, as for a `generateName` create before naming).
    pub name: String,
    pub dry_run: bool,
    /// The `request` sent.
    pub request: Value,
    /// The `response` received, when the webhook answered with a readable review.
    pub response: Option<Value>,
    /// Whether the webhook allowed the request (false on a denial and on a failed call).
    pub allowed: bool,
    /// Why the call failed, in the API server's words (`failed to call webhook: ...`).
    pub error: Option<String>,
    /// Whether the webhook's patch changed the object.
    pub changed: bool,
}

/// Why one call did not simply allow.
enum CallError {
    /// Upstream's `ErrCallingWebhook`: the failure policy decides. Holds the reason.
    Calling(String),
    /// The webhook denied the request.
    Rejected(ApiError),
}

/// A webhook's allowing answer.
struct Allowed {
    /// The call's uid, to find its record.
    uid: String,
    patch: Option<json_patch::Patch>,
}

fn new_uid() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Uniqueness is all that matters; fall back to the clock.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = nanos.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn json_text(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// The AdmissionReview sent for one call, with the request's fields in kube-apiserver's order.
fn review_body(uid: &str, attrs: &Attributes) -> String {
    let (group, version, kind) = &attrs.kind;
    let gvk = json_text(&json!({ "group": group, "version": version, "kind": kind }));
    let gvr = json_text(&json!({
        "group": attrs.resource.group,
        "version": attrs.resource.version,
        "resource": attrs.resource.plural,
    }));
    let mut fields: Vec<(&str, String)> = vec![
        ("uid", json_text(&uid)),
        ("kind", gvk.clone()),
        ("resource", gvr.clone()),
    ];
    let sub = attrs.subresource.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = sub {
        fields.push(("subResource", json_text(&s)));
    }
    fields.push(("requestKind", gvk));
    fields.push(("requestResource", gvr));
    if let Some(s) = sub {
        fields.push(("requestSubResource", json_text(&s)));
    }
    if !attrs.name.is_empty() {
        fields.push(("name", json_text(&attrs.name)));
    }
    if !attrs.request_namespace().is_empty() {
        fields.push(("namespace", json_text(&attrs.request_namespace())));
    }
    fields.push(("operation", json_text(&attrs.operation)));
    fields.push(("userInfo", attrs.user.to_json()));
    fields.push(("object", json_text(&attrs.object)));
    fields.push(("oldObject", json_text(&attrs.old_object)));
    fields.push(("dryRun", json_text(&attrs.dry_run)));
    fields.push(("options", json_text(&attrs.options)));
    let request: Vec<String> = fields
        .into_iter()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    format!(
        "{{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{{{}}}}}",
        request.join(",")
    )
}

/// Upstream's `ToStatusErr`: the webhook's own status, marked as its denial.
fn denial(webhook: &str, status: &Value) -> ApiError {
    let by = format!("admission webhook \"{webhook}\" denied the request");
    let message = match (status["message"].as_str(), status["reason"].as_str()) {
        (Some(m), _) if !m.is_empty() => format!("{by}: {m}"),
        (_, Some(r)) if !r.is_empty() => format!("{by}: {r}"),
        _ => format!("{by} without explanation"),
    };
    let code = status["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    ApiError {
        code,
        reason: status["reason"].as_str().unwrap_or("").to_string().into(),
        message,
        details: status.get("details").filter(|d| !d.is_null()).cloned(),
    }
}

/// How Go's HTTP client words the transport errors tests provoke.
fn transport_error(url: &str, error: &str) -> String {
    let authority = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or("");
    if error.contains("ConnectionRefused") {
        format!("dial tcp {authority}: connect: connection refused")
    } else {
        error.to_string()
    }
}

/// Checks a review answer the way `VerifyAdmissionResponse` does.
fn verify<'a>(uid: &str, mutating: bool, review: &'a Value) -> Result<&'a Value, String> {
    let response = review
        .get("response")
        .filter(|r| r.is_object())
        .ok_or("webhook response was absent")?;
    let got = response["uid"].as_str().unwrap_or("");
    if got != uid {
        return Err(format!("expected response.uid=\"{uid}\", got \"{got}\""));
    }
    let (api_version, kind) = (
        review["apiVersion"].as_str().unwrap_or(""),
        review["kind"].as_str().unwrap_or(""),
    );
    if (api_version, kind) != ("admission.k8s.io/v1", "AdmissionReview") {
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        ));
    }
    let patch = response["patch"].as_str().is_some_and(|p| !p.is_empty());
    let patch_type = !response["patchType"].is_null();
    if mutating {
        if patch && !patch_type {
            return Err("webhook returned response.patch but not response.patchType".into());
        }
        if !patch && patch_type {
            return Err("webhook returned response.patchType but not response.patch".into());
        }
    } else if patch {
        return Err("validating webhook may not return response.patch".into());
    } else if patch_type {
        return Err("validating webhook may not return response.patchType".into());
    }
    Ok(response)
}

struct CallRecord<'a> {
    hook: &'a Webhook,
    attrs: &'a Attributes,
    round: u8,
    uid: String,
    request: Value,
}

impl CallRecord<'_> {
    fn finish(
        self,
        shared: &Shared,
        response: Option<Value>,
        allowed: bool,
        error: Option<String>,
        changed: bool,
    ) {
        lock(&shared.admission_calls).push(AdmissionCall {
            webhook: self.hook.name.clone(),
            configuration: self.hook.configuration.clone(),
            mutating: self.hook.mutating,
            round: self.round,
            uid: self.uid,
            operation: self.attrs.operation.to_string(),
            kind: self.attrs.kind.2.clone(),
            resource: self.attrs.resource.plural.to_string(),
            sub_resource: self.attrs.subresource.clone(),
            namespace: self.attrs.request_namespace().to_string(),
            name: self.attrs.name.clone(),
            dry_run: self.attrs.dry_run,
            request: self.request,
            response,
            allowed,
            error,
            changed,
        });
    }
}

/// Sends one review and checks the answer; records the call (except `changed`, which the
/// mutating pass fills in once the patch is applied: see [`set_changed`]).
async fn call(
    shared: &Shared,
    hook: &Webhook,
    attrs: &Attributes,
    round: u8,
    warnings: &mut Vec<String>,
) -> Result<Allowed, CallError> {
    let uid = new_uid();
    let body = review_body(&uid, attrs);
    let request = serde_json::from_str::<Value>(&body)
        .map(|mut r| r["request"].take())
        .unwrap_or_default();
    let record = CallRecord {
        hook,
        attrs,
        round,
        uid: uid.clone(),
        request,
    };
    let secs = hook.timeout.as_secs();
    let path = split_url(&hook.url).map_or_else(|_| "/".to_string(), |(_, path)| path);
    let separator = if path.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}timeout={secs}s", hook.url);
    let sent = tokio::time::timeout(
        hook.timeout,
        hook.client.send(
            Method::POST,
            &format!("{path}{separator}timeout={secs}s"),
            Some("application/json"),
            body.into_bytes(),
        ),
    )
    .await;
    let failed = |record: CallRecord<'_>, response: Option<Value>, reason: String| {
        record.finish(shared, response, false, Some(reason.clone()), false);
        Err(CallError::Calling(reason))
    };
    let (status, bytes) = match sent {
        Err(_) => {
            return failed(
                record,
                None,
                format!("failed to call webhook: Post \"{url}\": context deadline exceeded"),
            );
        }
        Ok(Err(e)) => {
            return failed(
                record,
                None,
                format!(
                    "failed to call webhook: Post \"{url}\": {}",
                    transport_error(&url, &e)
                ),
            );
        }
        Ok(Ok((status, _, bytes))) => (status, bytes),
    };
    if status != 200 {
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        let why = if text.is_empty() {
            format!(
                "the server responded with the status code {status} but did not return more information"
            )
        } else {
            format!("an error on the server ({text:?}) has prevented the request from succeeding")
        };
        return failed(record, None, format!("failed to call webhook: {why}"));
    }
    let review: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return failed(record, None, format!("failed to call webhook: {e}")),
    };
    let response = match verify(&uid, hook.mutating, &review) {
        Ok(r) => r.clone(),
        Err(e) => {
            return failed(
                record,
                review.get("response").cloned(),
                format!("received invalid webhook response: {e}"),
            );
        }
    };
    for w in response["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !warnings.iter().any(|seen| seen == w) {
            warnings.push(w.to_string());
        }
    }
    if response["allowed"] != true {
        let error = denial(&hook.name, &response["status"]);
        record.finish(shared, Some(response), false, None, false);
        return Err(CallError::Rejected(error));
    }
    let patch = match response["patch"].as_str().filter(|p| !p.is_empty()) {
        None => None,
        Some(b64) => {
            let decoded = match base64::engine::general_purpose::STANDARD.decode(b64) {
                Ok(d) => d,
                Err(e) => {
                    return failed(
                        record,
                        Some(response),
                        format!(
                            "failed to call webhook: illegal base64 data in response.patch: {e}"
                        ),
                    );
                }
            };
            if response["patchType"] != "JSONPatch" {
                let kind = response["patchType"].as_str().unwrap_or("").to_string();
                return failed(
                    record,
                    Some(response),
                    format!("unsupported patch type \"{kind}\""),
                );
            }
            match serde_json::from_slice::<json_patch::Patch>(&decoded) {
                Ok(p) => Some(p),
                Err(e) => {
                    return failed(
                        record,
                        Some(response),
                        format!("received undecodable patch in webhook response: {e}"),
                    );
                }
            }
        }
    };
    record.finish(shared, Some(response), true, None, false);
    Ok(Allowed { uid, patch })
}

/// Marks the recorded call `uid` as having changed the object.
fn set_changed(shared: &Shared, uid: &str) {
    if let Some(call) = lock(&shared.admission_calls)
        .iter_mut()
        .rev()
        .find(|c| c.uid == uid)
    {
        call.changed = true;
    }
}

fn namespace_labels(shared: &Shared, namespace: &str) -> Value {
    if namespace.is_empty() {
        return Value::Null;
    }
    lock(&shared.store)
        .get(&NAMESPACE, None, namespace)
        .map(|ns| ns["metadata"]["labels"].clone())
        .unwrap_or(Value::Null)
}

/// Whether to call `hook`; a match-condition error is decided by the failure policy.
fn decide(hook: &Webhook, attrs: &Attributes, labels: &Value) -> Result<bool, ApiError> {
    let sub = attrs.subresource.as_deref().unwrap_or("");
    let target = RuleTarget {
        operation: attrs.operation,
        group: attrs.resource.group,
        version: attrs.resource.version,
        resource: attrs.resource.plural,
        subresource: sub,
        namespace: attrs.request_namespace(),
    };
    let request = json!({
        "object": attrs.object,
        "oldObject": attrs.old_object,
        "userInfo": attrs.user.to_value(),
        "operation": attrs.operation,
        "namespace": attrs.request_namespace(),
        "name": attrs.name,
        "subResource": sub,
        "resource": { "group": attrs.resource.group, "version": attrs.resource.version, "resource": attrs.resource.plural },
        "kind": { "group": attrs.kind.0, "version": attrs.kind.1, "kind": attrs.kind.2 },
        "dryRun": attrs.dry_run,
    });
    match hook.should_call(&target, labels, &request) {
        Ok(()) => Ok(true),
        Err(Skip::NoMatch) => Ok(false),
        Err(Skip::ConditionError(e)) => match hook.failure_policy {
            FailurePolicy::Ignore => Ok(false),
            FailurePolicy::Fail => Err(ApiError::internal(format!(
                "failed calling webhook \"{}\": {e}",
                hook.name
            ))),
        },
    }
}

fn calling_failed(hook: &Webhook, reason: &str) -> ApiError {
    ApiError::internal(format!(
        "failed calling webhook \"{}\": {reason}",
        hook.name
    ))
}

/// Runs the mutating webhooks on `attrs.object`, applying their patches in place.
pub(crate) async fn mutate(
    shared: &Shared,
    attrs: &mut Attributes,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let hooks: Vec<Arc<Webhook>> = lock(&shared.webhooks).webhooks(true);
    if hooks.is_empty() {
        return Ok(());
    }
    let labels = namespace_labels(shared, attrs.request_namespace());
    // Upstream's webhookReinvokeContext, with webhooks identified by position.
    let mut previously_invoked: HashSet<usize> = HashSet::new();
    let mut reinvoke: HashSet<usize> = HashSet::new();
    let mut should_reinvoke = false;
    for round in 0..2u8 {
        if round == 1 && !should_reinvoke {
            break;
        }
        for (i, hook) in hooks.iter().enumerate() {
            if !decide(hook, attrs, &labels)? {
                continue;
            }
            if round == 1 && !reinvoke.contains(&i) {
                continue;
            }
            let result = call(shared, hook, attrs, round, warnings).await;
            let mut changed = false;
            if let Ok(Allowed {
                uid,
                patch: Some(patch),
            }) = &result
            {
                if attrs.object.is_null() {
                    return Err(ApiError::internal(format!(
                        "admission webhook \"{}\" attempted to modify the object, which is not supported for this operation",
                        hook.name
                    )));
                }
                let mut patched = attrs.object.clone();
                json_patch::patch(&mut patched, &patch.0)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                changed = patched != attrs.object;
                if changed {
                    attrs.object = patched;
                    set_changed(shared, uid);
                }
            }
            if changed {
                reinvoke.extend(previously_invoked.drain());
                should_reinvoke = true;
            }
            if hook.reinvoke_if_needed {
                previously_invoked.insert(i);
            }
            match result {
                Ok(_) => {}
                Err(CallError::Calling(_)) if hook.failure_policy == FailurePolicy::Ignore => {}
                Err(CallError::Calling(reason)) => return Err(calling_failed(hook, &reason)),
                Err(CallError::Rejected(error)) => return Err(error),
            }
        }
    }
    Ok(())
}

/// Runs the validating webhooks (concurrently) on the final `attrs.object`.
pub(crate) async fn validate(
    shared: &Shared,
    attrs: &Attributes,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let hooks: Vec<Arc<Webhook>> = lock(&shared.webhooks).webhooks(false);
    if hooks.is_empty() {
        return Ok(());
    }
    let labels = namespace_labels(shared, attrs.request_namespace());
    let mut selected = Vec::new();
    for hook in hooks {
        if decide(&hook, attrs, &labels)? {
            selected.push(hook);
        }
    }
    let results = futures::future::join_all(selected.iter().map(|hook| async move {
        let mut own = Vec::new();
        let result = call(shared, hook, attrs, 0, &mut own).await;
        (result, own)
    }))
    .await;
    let mut first_error = None;
    for (hook, (result, own)) in selected.iter().zip(results) {
        for w in own {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        let error = match result {
            Ok(_) => continue,
            Err(CallError::Calling(_)) if hook.failure_policy == FailurePolicy::Ignore => continue,
            Err(CallError::Calling(reason)) => calling_failed(hook, &reason),
            Err(CallError::Rejected(error)) => error,
        };
        first_error.get_or_insert(error);
    }
    first_error.map_or(Ok(()), Err)
}
