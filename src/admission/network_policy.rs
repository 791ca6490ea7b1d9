//! Network policies in enforced namespaces: CiliumNetworkPolicies and Kubernetes
//! NetworkPolicies (networking.k8s.io/v1).
//!
//! Both kinds only ever add allowed traffic (an endpoint may send what any policy that selects
//! it allows), so whoever may write one may open egress for any pod of the namespace or ingress
//! into any job, past the policy sparkward derived from the job's token. Hence:
//! - policies labelled `app.kubernetes.io/managed-by=sparkward` (the job policies) are created,
//!   changed and deleted only by `policy.managers`;
//! - every other policy only by `policy.managers` and the job administrators
//!   (`identity.jobAdmins`, matched by user name or group).
//!
//! A tenant who needs more network access asks for a scope instead: the scope mapping is
//! where the security team decides what a token may reach.

use serde_json::value::RawValue;

use crate::admission::job::verb;
use crate::admission::review::{Ctx, Decided, Pipeline, pass};
use crate::core::decision::Reason;
use crate::core::labels::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::core::objects::MetaOnly;

pub(super) fn review(p: &Pipeline, ctx: &mut Ctx<'_>) -> Decided {
    let req = ctx.req;
    let kind = req.kind.kind.as_str();
    let managed = |raw: Option<&RawValue>| -> Result<bool, Reason> {
        let Some(raw) = raw else { return Ok(false) };
        let obj: MetaOnly = serde_json::from_str(raw.get())
            .map_err(|e| Reason::Malformed(format!("object is not a valid {kind}: {e}")))?;
        Ok(obj.metadata.label(MANAGED_BY_LABEL) == Some(MANAGED_BY_VALUE))
    };
    // Both sides: relabelling a job policy away from sparkward is a change to a job policy.
    let managed = managed(req.object())? || managed(req.old_object())?;
    let who = &req.user_info.username;
    if p.config.policy.managers.iter().any(|m| m == who) {
        return pass();
    }
    let name = req.name.as_deref().unwrap_or("(unnamed)");
    let verb = verb(req.operation);
    if managed {
        return Err(Reason::NotManager(format!(
            "{kind} {name} is managed by sparkward ({MANAGED_BY_LABEL}={MANAGED_BY_VALUE}); \
             {who} may not {verb} it: job policies follow the job's token scopes, ask the \
             security team to change the scope mapping instead"
        )));
    }
    let job_admin = p
        .config
        .identity
        .as_ref()
        .is_some_and(|id| id.job_admins.contains(who, &req.user_info.groups));
    if job_admin {
        return pass();
    }
    Err(Reason::NotManager(format!(
        "{who} may not {verb} {kind} {name}: in namespaces sparkward enforces, network policies \
         are written by sparkward (one per job, from the scopes of the submitter's token) and by \
         the job administrators only, because any policy adds allowed traffic for the pods it \
         selects. To reach something new, ask the security team for a scope that grants it \
         (sparkward's policy.scopes maps each token scope to egress rules), then submit the job \
         with a token that carries that scope"
    )))
}
