//! Entering a job's pod: `pods/exec`, `pods/attach` and `pods/portforward` arrive as CONNECT
//! reviews carrying the connect options (PodExecOptions, ...), not the pod, so the pod is looked
//! up. Only the job's submitter and the job administrators may enter a job's pod; pods that
//! belong to no job are not sparkward's to guard.
//!
//! The shared guard here also serves evictions and TokenRequests, which name a pod too. A pod's
//! name can be reused the moment it is deleted, and sparkward's watch-fed cache may still hold
//! the earlier pod of that name: deciding on it could let someone into, or borrow, somebody
//! else's new pod. So the pod is read from the API server (one read per request) unless the
//! request names the pod's uid and the cache holds exactly that pod (a kubelet's TokenRequest,
//! the common case): a pod's uid never names another object, and its job identity cannot change.
//! These requests are rare next to pod creations (a person's exec, a drain, a kubelet's token
//! per pod), so the read is cheap where it matters.

use crate::admission::PodInfo;
use crate::admission::decode::Operation;
use crate::admission::job::lookup_failed;
use crate::admission::review::{Ctx, Decided, Pipeline, pass, require_namespace, unsupported};
use crate::core::decision::{JobIdentity, Reason, spark_role};
use crate::core::ownership::{Action, JobObject};

pub(super) async fn review(p: &Pipeline, ctx: &mut Ctx<'_>) -> Decided {
    let req = ctx.req;
    if req.operation != Operation::Connect {
        return Err(unsupported(req));
    }
    guard_named_pod(p, ctx, Action::Enter).await?;
    pass()
}

/// `guard_pod` for the pod the request names (`request.name`: CONNECT, eviction).
pub(super) async fn guard_named_pod(
    p: &Pipeline,
    ctx: &mut Ctx<'_>,
    action: Action,
) -> Result<(), Reason> {
    let name = ctx
        .req
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Reason::Malformed("request.name (the pod) is missing".into()))?;
    guard_pod(p, ctx, name, None, action).await
}

/// Refuses `action` on pod `name` unless the requester may take it (see `core::ownership`).
/// `uid`: the pod the request names, when it names one (a TokenRequest's bound object); a
/// request for another pod of that name passes (the API server refuses it itself).
pub(super) async fn guard_pod(
    p: &Pipeline,
    ctx: &mut Ctx<'_>,
    name: &str,
    uid: Option<&str>,
    action: Action,
) -> Result<(), Reason> {
    let namespace = require_namespace(ctx.req)?.to_string();
    let not_found = || {
        Reason::Lookup(format!(
            "pod {namespace}/{name} was not found, so sparkward cannot tell whose job it belongs \
             to; check the name (if the pod was just created, retry)"
        ))
    };
    let uid = uid.filter(|u| !u.is_empty());
    if let Some(uid) = uid {
        let cached = p
            .lookup
            .pod(&namespace, name)
            .await
            .map_err(|e| lookup_failed("Pod", &namespace, name, e))?;
        if let Some(cached) = cached.filter(|c| c.meta.uid.as_deref() == Some(uid)) {
            match decide(p, ctx, &cached, Some(uid), action).await {
                Ok(()) => return Ok(()),
                // A node the cache has not seen yet (the kubelet asks for the token as soon as
                // the pod is bound): only then may the API server know better.
                Err(refusal) if cached.node_name.is_some() => return Err(refusal),
                Err(_) => {}
            }
        }
    }
    let now = p
        .lookup
        .pod_from_api(&namespace, name)
        .await
        .map_err(|e| lookup_failed("Pod", &namespace, name, e))?
        .ok_or_else(not_found)?;
    decide(p, ctx, &now, uid, action).await
}

/// Passes pods that belong to no job and pods other than the one the request names.
async fn decide(
    p: &Pipeline,
    ctx: &mut Ctx<'_>,
    pod: &PodInfo,
    uid: Option<&str>,
    action: Action,
) -> Result<(), Reason> {
    if uid.is_some_and(|u| pod.meta.uid.as_deref() != Some(u)) {
        return Ok(());
    }
    let Some(job) = JobIdentity::from_admitted(&pod.meta) else {
        return Ok(());
    };
    p.require_owner_rights(
        ctx,
        pod_object(pod),
        &job,
        pod.node_name.as_deref(),
        &[action],
    )
    .await
}

/// The ownership view of a looked-up pod.
pub(super) fn pod_object(pod: &PodInfo) -> JobObject {
    JobObject::Pod {
        executor: spark_role(&pod.meta) == Some("executor"),
        app_controlled: pod
            .meta
            .owner_references
            .iter()
            .any(|o| o.controller == Some(true) && o.kind == "SparkApplication"),
    }
}
