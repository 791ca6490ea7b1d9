//! ConfigMaps: spark-submit stores every `--conf` in the driver's ConfigMap (`spark.properties`),
//! the submitter token among them when it was passed as a driver annotation. The mutating pass
//! removes those lines; the validating pass refuses a ConfigMap that still holds one.

use std::collections::BTreeMap;

use json_patch::{PatchOperation, ReplaceOperation};
use serde_json::Value;

use crate::admission::decode::Operation;
use crate::admission::review::{
    Ctx, Decided, Mode, Pipeline, parse_object, pass, patched, unsupported,
};
use crate::core::decision::Reason;
use crate::core::hardening::{Loc, Violation};
use crate::core::mutation::scrub_spark_properties;
use crate::core::objects::ConfigMap;

pub(super) fn review(p: &Pipeline, ctx: &mut Ctx<'_>) -> Decided {
    let req = ctx.req;
    let sub = req.sub_resource.as_deref().unwrap_or("");
    match (req.operation, sub) {
        (Operation::Create | Operation::Update, "") => {
            let cm: ConfigMap = parse_object(req)?;
            let empty = BTreeMap::new();
            let leaks =
                scrub_spark_properties(cm.data.as_ref().unwrap_or(&empty), p.token_annotation());
            match ctx.mode {
                Mode::Mutate => {
                    let data = Loc::root().key("data");
                    patched(
                        leaks
                            .into_iter()
                            .map(|(key, value)| {
                                PatchOperation::Replace(ReplaceOperation {
                                    path: data.key(&key).pointer(),
                                    value: Value::String(value),
                                })
                            })
                            .collect(),
                    )
                }
                Mode::Validate => match leaks.first() {
                    Some((key, _)) => Err(Reason::NotHardened(vec![Violation {
                        field: Loc::root().key("data").key(key).human().to_string(),
                        problem: "holds the submitter token (a spark-submit --conf)".into(),
                        fix: "sparkward's mutating webhook removes it; check that the mutating \
                              webhook configuration covers ConfigMaps in this namespace"
                            .into(),
                    }])),
                    None => {
                        p.refuse_stored_tokens(ctx)?;
                        pass()
                    }
                },
            }
        }
        (Operation::Delete, "") => pass(),
        _ => Err(unsupported(req)),
    }
}
