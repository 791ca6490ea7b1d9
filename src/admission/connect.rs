//! Entering a job's pod: `pods/exec`, `pods/attach` and `pods/portforward` arrive as CONNECT
//! reviews carrying the connect options (PodExecOptions, ...), not the pod, so the pod is looked
//! up (from the watch-backed cache). Only the job's submitter and the job administrators may
//! enter a job's pod; pods that belong to no job are not sparkward's to guard.

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
    let namespace = require_namespace(req)?;
    let name = req
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Reason::Malformed("request.name (the pod) is missing".into()))?;
    let pod = p
        .lookup
        .pod(namespace, name)
        .await
        .map_err(|e| lookup_failed("Pod", namespace, name, e))?
        .ok_or_else(|| {
            Reason::Lookup(format!(
                "pod {namespace}/{name} was not found, so sparkward cannot tell whose job it \
                 belongs to; check the name (if the pod was just created, retry)"
            ))
        })?;
    let Some(job) = JobIdentity::from_admitted(&pod.meta) else {
        return pass();
    };
    p.require_owner_rights(
        ctx,
        pod_object(&pod),
        &job,
        pod.node_name.as_deref(),
        &[Action::Enter],
    )
    .await?;
    pass()
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
