//! TokenRequest (`serviceaccounts/token` CREATE): a service-account token bound to a job's
//! pod is that pod's identity, and executor lineage trusts it (a pod created with it joins the
//! job). Only the kubelet of the node the pod runs on (which mounts the pod's projected token)
//! and the job administrators may mint one. Tokens bound to anything else, or not bound, give
//! no job identity and are not sparkward's to guard.

use serde::Deserialize;

use crate::admission::connect::guard_pod;
use crate::admission::decode::Operation;
use crate::admission::review::{
    Ctx, Decided, Pipeline, parse_object, pass, require_namespace, unsupported,
};
use crate::core::ownership::Action;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct TokenRequest {
    spec: TokenRequestSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct TokenRequestSpec {
    bound_object_ref: Option<BoundObjectRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct BoundObjectRef {
    kind: String,
    name: String,
    uid: String,
}

pub(super) async fn review(p: &Pipeline, ctx: &mut Ctx<'_>) -> Decided {
    let req = ctx.req;
    if req.operation != Operation::Create {
        return Err(unsupported(req));
    }
    require_namespace(req)?;
    let request: TokenRequest = parse_object(req)?;
    let Some(bound) = request.spec.bound_object_ref.filter(|b| b.kind == "Pod") else {
        return pass();
    };
    guard_pod(p, ctx, &bound.name, Some(&bound.uid), Action::Token).await?;
    pass()
}
