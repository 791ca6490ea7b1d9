//! ConfigMaps: spark-submit stores every `--conf` in the driver's ConfigMap (`spark.properties`),
//! the submitter token among them when it was passed as a driver annotation. The mutating pass
//! removes those lines and, for a job whose Spark security profile enforces properties, adds
//! the ones the file lacks (spark-submit's driver reads its configuration from this file, and
//! builds its executors from it); the validating pass refuses a ConfigMap that still holds a
//! token or misses an enforced property.
//!
//! A spark-submit ConfigMap belongs to the job of the driver pod that controls it
//! (spark-submit creates the pod first, then the ConfigMap with the pod as its controller
//! owner); ConfigMaps of no job pod are only scrubbed.

use std::collections::BTreeMap;

use crate::admission::decode::Operation;
use crate::admission::job::lookup_failed;
use crate::admission::review::{
    Ctx, Decided, Mode, Pipeline, parse_object, pass, patched, require_namespace, unsupported,
};
use crate::core::decision::{JobIdentity, Reason};
use crate::core::hardening::{Loc, Violation};
use crate::core::mutation::scrub_spark_properties;
use crate::core::objects::ConfigMap;
use crate::core::spark::{enforced_properties, plan_properties, replace_data};

/// spark-submit's data key for its properties (`Constants.SPARK_CONF_FILE_NAME`).
const PROPERTIES_KEY: &str = "spark.properties";

pub(super) async fn review(p: &Pipeline, ctx: &mut Ctx<'_>) -> Decided {
    let req = ctx.req;
    let sub = req.sub_resource.as_deref().unwrap_or("");
    match (req.operation, sub) {
        (Operation::Create | Operation::Update, "") => {
            let cm: ConfigMap = parse_object(req)?;
            let empty = BTreeMap::new();
            let mut data = cm.data.clone().unwrap_or_default();
            let leaks =
                scrub_spark_properties(cm.data.as_ref().unwrap_or(&empty), p.token_annotation());
            if ctx.mode == Mode::Validate
                && let Some((key, _)) = leaks.first()
            {
                return Err(Reason::NotHardened(vec![Violation {
                    field: Loc::root().key("data").key(key).human(),
                    problem: "holds the submitter token (a spark-submit --conf)".into(),
                    fix: "sparkward's mutating webhook removes it; check that the mutating \
                          webhook configuration covers ConfigMaps in this namespace"
                        .into(),
                }]));
            }
            let mut changed: BTreeMap<String, String> = BTreeMap::new();
            for (key, text) in leaks {
                data.insert(key.clone(), text.clone());
                changed.insert(key, text);
            }
            if let Some(text) = data.get(PROPERTIES_KEY)
                && let Some(added) = enforce_properties(p, ctx, &cm, text).await?
            {
                if ctx.mode == Mode::Validate {
                    return Err(Reason::NotHardened(plan_violations_missing(text, &added)));
                }
                changed.insert(PROPERTIES_KEY.to_string(), added);
            }
            match ctx.mode {
                Mode::Mutate => patched(
                    changed
                        .into_iter()
                        .map(|(key, text)| replace_data(&key, text))
                        .collect(),
                ),
                Mode::Validate => {
                    p.refuse_stored_tokens(ctx)?;
                    pass()
                }
            }
        }
        (Operation::Delete, "") => pass(),
        _ => Err(unsupported(req)),
    }
}

/// The enforced properties `text` lacks, appended (`None`: nothing to add or no job), or a
/// denial for weaker values.
async fn enforce_properties(
    p: &Pipeline,
    ctx: &Ctx<'_>,
    cm: &ConfigMap,
    text: &str,
) -> Result<Option<String>, Reason> {
    let Some(owner) = cm
        .metadata
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Pod")
    else {
        return Ok(None);
    };
    let namespace = require_namespace(ctx.req)?;
    let Some(pod) = p
        .lookup
        .pod(namespace, &owner.name)
        .await
        .map_err(|e| lookup_failed("Pod", namespace, &owner.name, e))?
        .filter(|pod| pod.meta.uid.as_deref() == Some(owner.uid.as_str()))
    else {
        return Ok(None);
    };
    let Some(job) = JobIdentity::from_admitted(&pod.meta) else {
        return Ok(None);
    };
    let (Some(profile), Some(security)) = (p.profile_of(&job)?, &job.security) else {
        return Ok(None);
    };
    let enforced = enforced_properties(profile, &job);
    plan_properties(PROPERTIES_KEY, text, &enforced, &security.profile).map_err(Reason::Hardening)
}

/// What the validating pass reports for properties the mutating pass should have added.
fn plan_violations_missing(before: &str, after: &str) -> Vec<Violation> {
    after
        .strip_prefix(before)
        .unwrap_or(after)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| Violation {
            field: format!("data[\"{PROPERTIES_KEY}\"]"),
            problem: format!("lacks {}", line.split('=').next().unwrap_or(line)),
            fix: "sparkward's mutating webhook adds the Spark security the namespace's profile \
                  requires; check that the mutating webhook configuration covers ConfigMaps in \
                  this namespace"
                .into(),
        })
        .collect()
}
