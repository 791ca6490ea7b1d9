//! `pods/eviction`: an eviction deletes a pod, and the API server makes that delete without a
//! delete review, so the eviction itself is where a job's pods are guarded: the job's
//! submitter, the job administrators, Kubernetes' controllers and the configured node drainers
//! (`identity.evictors`) may evict a job's pod.

use crate::admission::connect::guard_named_pod;
use crate::admission::decode::Operation;
use crate::admission::review::{Ctx, Decided, Pipeline, pass, unsupported};
use crate::core::ownership::Action;

pub(super) async fn review(p: &Pipeline, ctx: &mut Ctx<'_>) -> Decided {
    let req = ctx.req;
    if req.operation != Operation::Create {
        return Err(unsupported(req));
    }
    guard_named_pod(p, ctx, Action::Evict).await?;
    pass()
}
