//! Secrets labelled `app.kubernetes.io/managed-by=sparkward`: jobs' RPC Secrets. The webhook
//! configuration routes only those (an objectSelector on the label, which also matches an
//! update that removes it); only `policy.managers` (sparkward itself, the garbage collector,
//! the namespace controller) may create, change or delete them. Anybody else could otherwise
//! swap a job's secret for one they know, or remove it from under a running job.

use serde_json::value::RawValue;

use crate::admission::job::verb;
use crate::admission::review::{Ctx, Decided, Pipeline, pass};
use crate::core::decision::Reason;
use crate::core::labels::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::core::objects::MetaOnly;

pub(super) fn review(p: &Pipeline, ctx: &mut Ctx<'_>) -> Decided {
    let req = ctx.req;
    let managed = |raw: Option<&RawValue>| -> Result<bool, Reason> {
        let Some(raw) = raw else { return Ok(false) };
        let obj: MetaOnly = serde_json::from_str(raw.get())
            .map_err(|e| Reason::Malformed(format!("object is not a valid Secret: {e}")))?;
        Ok(obj.metadata.label(MANAGED_BY_LABEL) == Some(MANAGED_BY_VALUE))
    };
    if !(managed(req.object())? || managed(req.old_object())?) {
        return pass();
    }
    let who = &req.user_info.username;
    if p.config.policy.managers.iter().any(|m| m == who) {
        return pass();
    }
    let name = req.name.as_deref().unwrap_or("(unnamed)");
    Err(Reason::NotManager(format!(
        "Secret {name} is a job's RPC secret, managed by sparkward \
         ({MANAGED_BY_LABEL}={MANAGED_BY_VALUE}); {who} may not {} it: the job's driver and \
         executors authenticate each other with it, and it goes with the job",
        verb(req.operation)
    )))
}
