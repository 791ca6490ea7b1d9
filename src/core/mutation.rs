//! Mutation planning: the JSON Patch that labels an object with its job identity, removes the
//! token, and hardens it. Built from the typed changes (no serialise-and-diff), against the
//! original document, so fields sparkward does not read are never touched.
//!
//! Invariants: every planned operation is an `add`, `replace` or `remove` whose parent exists in
//! the original object; a hardened, already-stamped object yields an empty plan (re-invocation
//! is a no-op); explicitly weaker settings and contradicting identity claims are returned as
//! violations and never silently overridden.

use std::borrow::Cow;
use std::collections::BTreeMap;

use json_patch::{PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::Value;

use crate::config::HardeningConfig;
use crate::core::hardening::{
    self, ContainerProfile, Findings, Loc, Violation, inspect_container, inspect_containers,
    inspect_host_namespaces, inspect_pod_context, inspect_process_namespace, inspect_template,
    inspect_volumes, plan_writable_mounts, plan_writable_volumes,
};
use crate::core::labels::{self, PREFIX, SUBMITTER_ANNOTATION, USER_LABEL};
use crate::core::objects::{Meta, Pod, PodSpec, SparkAppSpec, SparkPodSpec};

/// The labels and annotations sparkward writes on one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    pub labels: BTreeMap<&'static str, String>,
    pub annotations: BTreeMap<&'static str, String>,
}

/// A mutation plan: the patch operations, or why the object cannot be admitted.
pub type Plan = Result<Vec<PatchOperation>, Vec<Violation>>;

/// Reports every `sparkward.io/` label or annotation the object carries that differs from what
/// sparkward would write (a spoofing attempt, or a manifest copied from another job). The token
/// annotation is input, not a claim, and is ignored here.
pub fn conflicting_claims(
    loc: &Loc,
    labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
    stamp: &Stamp,
    token_annotation: &str,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let sets = [
        ("labels", labels, &stamp.labels),
        ("annotations", annotations, &stamp.annotations),
    ];
    for (what, present, wanted) in sets {
        for (key, value) in present.into_iter().flatten() {
            if !key.starts_with(PREFIX) || key == token_annotation {
                continue;
            }
            let field = loc.key(what).key(key);
            match wanted.get(key.as_str()) {
                Some(want) if want == value => {}
                Some(want) => out.push(Violation {
                    field: field.human(),
                    problem: format!(
                        "is '{value}', but sparkward derived '{want}' for this object"
                    ),
                    fix: "remove sparkward.io/ labels and annotations from the manifest: \
                          sparkward sets them from the verified identity"
                        .into(),
                }),
                None => out.push(Violation {
                    field: field.human(),
                    problem: "is set, but sparkward does not set it on this object".into(),
                    fix: "remove sparkward.io/ labels and annotations from the manifest: \
                          sparkward sets them from the verified identity"
                        .into(),
                }),
            }
        }
    }
    out
}

/// The labels an arriving object carries, without a `sparkward.io/user` label that holds the
/// previous scheme's value (`labels::legacy_user_label`) for the submitter `stamp` records;
/// `None` when there is no such label.
///
/// Objects admitted before an upgrade carry that value, and it is copied onto the objects
/// created from them: spark-operator puts a SparkApplication's driver and executor labels on its
/// pods, and a schedule's labels on its runs. Such a label names the same subject, so it is not
/// a conflicting claim; `plan_metadata` replaces it with the current value, and no new object is
/// stored with the old one. Only the mutating pass uses this: a validating call reads an
/// object whose labels sparkward has just written and stamped.
pub fn without_superseded_user_label(
    labels: Option<&BTreeMap<String, String>>,
    stamp: &Stamp,
) -> Option<BTreeMap<String, String>> {
    let labels = labels?;
    let present = labels.get(USER_LABEL)?;
    let subject = stamp.annotations.get(SUBMITTER_ANNOTATION)?;
    let superseded = stamp
        .labels
        .get(USER_LABEL)
        .is_some_and(|want| want != present)
        && *present == labels::legacy_user_label(subject);
    superseded.then(|| {
        let mut rest = labels.clone();
        rest.remove(USER_LABEL);
        rest
    })
}

/// Operations that make `map` (at `loc`, absent when `None`) contain every entry of `wanted`.
fn stamp_map(
    loc: &Loc,
    map: Option<&BTreeMap<String, String>>,
    wanted: &BTreeMap<&'static str, String>,
    ops: &mut Vec<PatchOperation>,
) {
    if wanted.is_empty() {
        return;
    }
    let Some(map) = map else {
        let whole: serde_json::Map<String, Value> = wanted
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect();
        ops.push(add(loc.pointer(), Value::Object(whole)));
        return;
    };
    for (key, value) in wanted {
        match map.get(*key) {
            Some(have) if have == value => {}
            Some(_) => ops.push(PatchOperation::Replace(ReplaceOperation {
                path: loc.key(key).into_pointer(),
                value: Value::String(value.clone()),
            })),
            None => ops.push(add(
                loc.key(key).into_pointer(),
                Value::String(value.clone()),
            )),
        }
    }
}

fn add(path: json_patch::jsonptr::PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(json_patch::AddOperation { path, value })
}

/// Stamps metadata: labels and annotations added, the token annotation removed.
pub fn plan_metadata(meta: &Meta, stamp: &Stamp, token_annotation: &str) -> Vec<PatchOperation> {
    let loc = Loc::root().key("metadata");
    let mut ops = Vec::new();
    stamp_map(
        &loc.key("labels"),
        meta.labels.as_ref(),
        &stamp.labels,
        &mut ops,
    );
    // Copied only when the token is there to remove (a new job's pod or application).
    let mut annotations = meta.annotations.as_ref().map(Cow::Borrowed);
    if let Some(map) = annotations.as_mut() {
        if map.contains_key(token_annotation) {
            map.to_mut().remove(token_annotation);
            ops.push(PatchOperation::Remove(RemoveOperation {
                path: loc.key("annotations").key(token_annotation).pointer(),
            }));
        }
        if map
            .get(LAST_APPLIED_ANNOTATION)
            .is_some_and(|text| text.contains(token_annotation))
            && let Some(op) =
                scrub_last_applied(map.to_mut(), token_annotation, &loc.key("annotations"))
        {
            ops.push(op);
        }
    }
    stamp_map(
        &loc.key("annotations"),
        annotations.as_deref(),
        &stamp.annotations,
        &mut ops,
    );
    ops
}

/// The annotation client-side `kubectl apply` writes: the whole applied manifest as JSON, which
/// includes the token annotation.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether the object still holds the token anywhere sparkward knows to look: the token
/// annotation itself, or inside kubectl's last-applied configuration.
pub fn token_present(meta: &Meta, token_annotation: &str) -> bool {
    meta.annotation(token_annotation).is_some()
        || meta
            .annotation(LAST_APPLIED_ANNOTATION)
            .is_some_and(|a| a.contains(token_annotation))
}

/// Removes the token from kubectl's last-applied configuration (`map` is updated to match):
/// rewritten by `rewrite_last_applied`, or removed entirely when it cannot be. Without this,
/// `kubectl apply` would store the bearer token in etcd after all.
fn scrub_last_applied(
    map: &mut BTreeMap<String, String>,
    token_annotation: &str,
    annotations: &Loc,
) -> Option<PatchOperation> {
    let text = map.get(LAST_APPLIED_ANNOTATION)?;
    if !text.contains(token_annotation) {
        return None;
    }
    let path = annotations.key(LAST_APPLIED_ANNOTATION).pointer();
    Some(match rewrite_last_applied(text, token_annotation) {
        Some(clean) => {
            map.insert(LAST_APPLIED_ANNOTATION.to_string(), clean.clone());
            PatchOperation::Replace(ReplaceOperation {
                path,
                value: Value::String(clean),
            })
        }
        None => {
            map.remove(LAST_APPLIED_ANNOTATION);
            PatchOperation::Remove(RemoveOperation { path })
        }
    })
}

/// kubectl's last-applied configuration `text` without the token: the token annotation and the
/// spark-submit properties that carry it (`spec.sparkConf`, `spec.template.sparkConf`) removed.
/// `None` when that is not possible (the text does not parse, or still mentions the token
/// annotation afterwards): the annotation must then go entirely.
pub fn rewrite_last_applied(text: &str, token_annotation: &str) -> Option<String> {
    let mut applied = serde_json::from_str::<Value>(text).ok()?;
    if let Some(map) = applied
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        map.remove(token_annotation);
    }
    for conf in ["/spec/sparkConf", "/spec/template/sparkConf"] {
        if let Some(map) = applied.pointer_mut(conf).and_then(Value::as_object_mut) {
            for key in token_properties(token_annotation) {
                map.remove(&key);
            }
        }
    }
    let again = serde_json::to_string(&applied).ok()?;
    (!again.contains(token_annotation)).then_some(again)
}

/// The Spark properties that carry the token from `spark-submit --conf` (or a
/// SparkApplication's `spec.sparkConf`) into pod annotations.
pub fn token_properties(token_annotation: &str) -> [String; 2] {
    [
        format!("spark.kubernetes.driver.annotation.{token_annotation}"),
        format!("spark.kubernetes.executor.annotation.{token_annotation}"),
    ]
}

/// The key of one line of a Java properties file (`key=value`, `key: value`, `key value`), or
/// `None` for blank lines and comments.
fn property_key(line: &str) -> Option<&str> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
        return None;
    }
    let end = line
        .find(|c: char| c == '=' || c == ':' || c.is_whitespace())
        .unwrap_or(line.len());
    Some(&line[..end])
}

/// spark-submit stores every `--conf` in the driver's ConfigMap (`spark.properties`), the
/// submitter token among them when it was passed as
/// `spark.kubernetes.driver.annotation.sparkward.io/submitter-token`. Returns each data entry
/// rewritten without those lines (only the entries that change).
pub fn scrub_spark_properties(
    data: &BTreeMap<String, String>,
    token_annotation: &str,
) -> Vec<(String, String)> {
    let keys = token_properties(token_annotation);
    data.iter()
        .filter(|(_, v)| v.contains(token_annotation))
        .filter_map(|(name, value)| {
            let mut changed = false;
            let kept: Vec<&str> = value
                .split_inclusive('\n')
                .filter(|line| {
                    let hit = property_key(line).is_some_and(|k| keys.iter().any(|t| t == k));
                    changed |= hit;
                    !hit
                })
                .collect();
            changed.then(|| (name.clone(), kept.concat()))
        })
        .collect()
}

/// Hardening findings for a Pod. `only_ephemeral` restricts container inspection to the named
/// ephemeral containers (a `pods/ephemeralcontainers` update adds containers to a running pod
/// whose other fields are immutable).
pub fn inspect_pod(pod: &Pod, cfg: &HardeningConfig, only_ephemeral: Option<&[&str]>) -> Findings {
    inspect_pod_parts(&pod.metadata, &pod.spec, cfg, only_ephemeral)
}

/// `inspect_pod` of a pod given as its metadata and spec (the validating UPDATE reads them
/// separately).
pub fn inspect_pod_parts(
    meta: &Meta,
    s: &PodSpec,
    cfg: &HardeningConfig,
    only_ephemeral: Option<&[&str]>,
) -> Findings {
    let mut f = Findings::default();
    let spec = Loc::root().key("spec");
    if only_ephemeral.is_none() {
        inspect_pod_context(
            &spec,
            "securityContext",
            s.security_context.as_ref(),
            cfg,
            &mut f,
        );
        inspect_host_namespaces(
            &spec,
            [
                ("hostNetwork", s.host_network),
                ("hostPID", s.host_pid),
                ("hostIPC", s.host_ipc),
            ],
            &mut f,
        );
        inspect_process_namespace(&spec, s.share_process_namespace, &mut f);
        if let Some(volumes) = &s.volumes {
            inspect_volumes(&spec.key("volumes"), volumes, &mut f);
            hardening::inspect_pod_volume_sources(&spec.key("volumes"), volumes, &mut f);
        }
        plan_writable_volumes(&spec.key("volumes"), s.volumes.as_deref(), cfg, &mut f);
        inspect_apparmor_annotations(meta, &mut f.weaker);
        for (key, list) in [
            ("containers", &s.containers),
            ("initContainers", &s.init_containers),
        ] {
            inspect_containers(
                &spec.key(key),
                list,
                ContainerProfile::Pod,
                cfg,
                None,
                &mut f,
            );
        }
    }
    inspect_containers(
        &spec.key("ephemeralContainers"),
        &s.ephemeral_containers,
        ContainerProfile::Pod,
        cfg,
        only_ephemeral,
        &mut f,
    );
    f
}

/// The hardening findings a pod's metadata alone can have (the legacy AppArmor annotations): what
/// an UPDATE that leaves the spec as it was is checked for.
pub fn inspect_pod_metadata(meta: &Meta) -> Findings {
    let mut f = Findings::default();
    inspect_apparmor_annotations(meta, &mut f.weaker);
    f
}

fn inspect_apparmor_annotations(meta: &Meta, out: &mut Vec<Violation>) {
    const LEGACY: &str = "container.apparmor.security.beta.kubernetes.io/";
    for (key, value) in meta.annotations.iter().flatten() {
        if key.starts_with(LEGACY) && value == "unconfined" {
            out.push(Violation {
                field: format!("metadata.annotations[\"{key}\"]"),
                problem: "is unconfined".into(),
                fix: "remove the annotation or use runtime/default".into(),
            });
        }
    }
}

/// Hardening findings for a SparkApplication spec at `spec` (`spec` of a SparkApplication, or
/// `spec.template` of a ScheduledSparkApplication).
pub fn inspect_app_spec(spec_loc: &Loc, spec: &SparkAppSpec, cfg: &HardeningConfig) -> Findings {
    let mut f = Findings::default();
    if let Some(volumes) = &spec.volumes {
        inspect_volumes(&spec_loc.key("volumes"), volumes, &mut f);
    }
    let needs_volumes = spec.driver.is_some() || spec.executor.is_some();
    if needs_volumes {
        plan_writable_volumes(
            &spec_loc.key("volumes"),
            spec.volumes.as_deref(),
            cfg,
            &mut f,
        );
    }
    for (key, pod) in [("driver", &spec.driver), ("executor", &spec.executor)] {
        if let Some(pod) = pod {
            inspect_spark_pod(&spec_loc.key(key), pod, cfg, &mut f);
        }
    }
    f
}

fn inspect_spark_pod(loc: &Loc, pod: &SparkPodSpec, cfg: &HardeningConfig, f: &mut Findings) {
    inspect_container(
        loc,
        "",
        pod.security_context.as_ref(),
        ContainerProfile::SparkMain,
        cfg,
        f,
    );
    inspect_pod_context(
        loc,
        "podSecurityContext",
        pod.pod_security_context.as_ref(),
        cfg,
        f,
    );
    inspect_host_namespaces(
        loc,
        [
            ("hostNetwork", pod.host_network),
            ("hostPID", None),
            ("hostIPC", None),
        ],
        f,
    );
    inspect_process_namespace(loc, pod.share_process_namespace, f);
    hardening::inspect_ports(loc, "", &pod.ports, f);
    plan_writable_mounts(
        &loc.key("volumeMounts"),
        pod.volume_mounts.as_deref(),
        cfg,
        f,
    );
    for (key, list) in [
        ("sidecars", &pod.sidecars),
        ("initContainers", &pod.init_containers),
    ] {
        inspect_containers(&loc.key(key), list, ContainerProfile::Pod, cfg, None, f);
    }
    if let Some(template) = &pod.template {
        inspect_template(&loc.key("template"), template, cfg, f);
    }
}

/// Turns findings into a plan: weaker settings deny, missing ones become operations appended to
/// `ops`.
pub fn finish(findings: Findings, mut ops: Vec<PatchOperation>) -> Plan {
    if !findings.weaker.is_empty() {
        return Err(findings.into_violations());
    }
    ops.extend(findings.missing.into_iter().map(|m| m.op));
    Ok(ops)
}

/// Labels for `spec.driver.labels` / `spec.executor.labels` (or the same under
/// `spec.template`), so spark-operator puts them on the pods it creates.
pub fn plan_spark_pod_labels(
    spec_loc: &Loc,
    spec: &SparkAppSpec,
    labels: &BTreeMap<&'static str, String>,
) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    for (key, pod) in [("driver", &spec.driver), ("executor", &spec.executor)] {
        if let Some(pod) = pod {
            stamp_map(
                &spec_loc.key(key).key("labels"),
                pod.labels.as_ref(),
                labels,
                &mut ops,
            );
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::labels::{JOB_ID_LABEL, TOKEN_ANNOTATION, USER_LABEL};
    use crate::core::objects::SparkApplication;
    use serde_json::json;

    fn cfg() -> HardeningConfig {
        crate::config::Config::default().hardening
    }

    fn stamp() -> Stamp {
        Stamp {
            labels: BTreeMap::from([
                (JOB_ID_LABEL, "sj-aaaaaaaaaaaaaaaaaaaa".to_string()),
                (USER_LABEL, "alice".to_string()),
            ]),
            annotations: BTreeMap::from([("sparkward.io/submitter", "alice".to_string())]),
        }
    }

    fn apply(doc: &Value, ops: &[PatchOperation]) -> Value {
        let mut doc = doc.clone();
        json_patch::patch(&mut doc, ops).unwrap();
        doc
    }

    fn mk_pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": {TOKEN_ANNOTATION: "tok"}},
            "spec": {"containers": [{"name": "spark", "image": "apache/spark"}]}
        })
    }

    fn plan_pod(doc: &Value) -> Plan {
        let pod: Pod = serde_json::from_value(doc.clone()).unwrap();
        let ops = plan_metadata(&pod.metadata, &stamp(), TOKEN_ANNOTATION);
        finish(inspect_pod(&pod, &cfg(), None), ops)
    }

    #[test]
    fn a_pod_volume_without_a_source_is_refused_and_one_with_a_source_is_not() {
        let mut doc = mk_pod();
        doc["spec"]["volumes"] = json!([{"name": "work"}]);
        let violations = plan_pod(&doc).unwrap_err();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field, "spec.volumes[0]");
        assert!(violations[0].problem.contains("no volume source"));
        doc["spec"]["volumes"] = json!([{"name": "work", "emptyDir": {}}]);
        assert!(plan_pod(&doc).is_ok());
    }

    #[test]
    fn pod_is_stamped_hardened_and_loses_its_token() {
        let doc = mk_pod();
        let patched = apply(&doc, &plan_pod(&doc).unwrap());
        assert_eq!(
            patched["metadata"]["labels"][JOB_ID_LABEL],
            "sj-aaaaaaaaaaaaaaaaaaaa"
        );
        assert!(
            patched["metadata"]["annotations"]
                .get(TOKEN_ANNOTATION)
                .is_none()
        );
        assert_eq!(patched["spec"]["securityContext"]["runAsUser"], 185);
        let c = &patched["spec"]["containers"][0];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/tmp");
        assert_eq!(
            patched["spec"]["volumes"][1]["name"],
            "sparkward-opt-spark-work-dir"
        );
    }

    #[test]
    fn second_mutation_of_a_mutated_pod_is_empty() {
        let doc = mk_pod();
        let once = apply(&doc, &plan_pod(&doc).unwrap());
        assert_eq!(plan_pod(&once).unwrap(), vec![]);
    }

    #[test]
    fn the_token_is_scrubbed_from_kubectls_last_applied_configuration() {
        let mut doc = mk_pod();
        let applied = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": {TOKEN_ANNOTATION: "tok", "keep": "me"}}});
        doc["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] = json!(applied.to_string());
        let out = apply(&doc, &plan_pod(&doc).unwrap());
        let last = out["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
            .as_str()
            .unwrap();
        assert!(
            !last.contains(TOKEN_ANNOTATION) && !last.contains("tok\""),
            "{last}"
        );
        assert!(last.contains("keep"));
        let meta: Meta = serde_json::from_value(out["metadata"].clone()).unwrap();
        assert!(!token_present(&meta, TOKEN_ANNOTATION));
        // Unparseable but holding the token: removed entirely.
        let mut doc = mk_pod();
        doc["metadata"]["annotations"][LAST_APPLIED_ANNOTATION] =
            json!(format!("{{broken {TOKEN_ANNOTATION}: tok"));
        let out = apply(&doc, &plan_pod(&doc).unwrap());
        assert!(
            out["metadata"]["annotations"]
                .get(LAST_APPLIED_ANNOTATION)
                .is_none()
        );
        // Idempotent.
        assert_eq!(plan_pod(&out).unwrap(), vec![]);
    }

    #[test]
    fn spark_properties_lose_the_token_lines_only() {
        let props = format!(
            "spark.app.name=pi\nspark.kubernetes.driver.annotation.{TOKEN_ANNOTATION}=eyJ.x.y\n\
             spark.kubernetes.executor.annotation.{TOKEN_ANNOTATION} : eyJ.a.b\n\
             # spark.kubernetes.driver.annotation.{TOKEN_ANNOTATION}=comment\nspark.master=k8s://x\n"
        );
        let data = BTreeMap::from([
            ("spark.properties".to_string(), props),
            ("other".to_string(), "unrelated".to_string()),
        ]);
        let changes = scrub_spark_properties(&data, TOKEN_ANNOTATION);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].0, "spark.properties");
        assert!(!changes[0].1.contains("eyJ"), "{}", changes[0].1);
        assert!(
            changes[0].1.contains("spark.app.name=pi\n")
                && changes[0].1.contains("spark.master=k8s://x\n")
        );
        let again = BTreeMap::from([("spark.properties".to_string(), changes[0].1.clone())]);
        assert!(scrub_spark_properties(&again, TOKEN_ANNOTATION).is_empty());
    }

    #[test]
    fn label_keys_with_slashes_are_escaped() {
        let doc = json!({"metadata": {"labels": {"a": "b"}}, "spec": {}});
        let pod: Pod = serde_json::from_value(doc).unwrap();
        let ops = plan_metadata(&pod.metadata, &stamp(), TOKEN_ANNOTATION);
        let paths: Vec<String> = ops
            .iter()
            .map(|o| {
                serde_json::to_value(o).unwrap()["path"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert!(
            paths.contains(&"/metadata/labels/sparkward.io~1job-id".to_string()),
            "{paths:?}"
        );
    }

    #[test]
    fn contradicting_claims_are_reported() {
        let labels = BTreeMap::from([
            (
                JOB_ID_LABEL.to_string(),
                "sj-bbbbbbbbbbbbbbbbbbbb".to_string(),
            ),
            ("sparkward.io/extra".to_string(), "x".to_string()),
            (USER_LABEL.to_string(), "alice".to_string()),
            ("app".to_string(), "y".to_string()),
        ]);
        let v = conflicting_claims(
            &Loc::root().key("metadata"),
            Some(&labels),
            None,
            &stamp(),
            TOKEN_ANNOTATION,
        );
        let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.labels[\"sparkward.io/extra\"]",
                "metadata.labels[\"sparkward.io/job-id\"]",
            ]
        );
    }

    #[test]
    fn spark_application_gets_labels_contexts_and_volumes() {
        let doc = json!({
            "apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {"name": "a", "annotations": {TOKEN_ANNOTATION: "t"}},
            "spec": {"type": "Scala", "driver": {"cores": 1}, "executor": {"labels": {"v": "1"},
                "volumeMounts": [{"name": "x", "mountPath": "/tmp"}]}}
        });
        let app: SparkApplication = serde_json::from_value(doc.clone()).unwrap();
        let spec = Loc::root().key("spec");
        let mut ops = plan_metadata(&app.metadata, &stamp(), TOKEN_ANNOTATION);
        ops.extend(plan_spark_pod_labels(&spec, &app.spec, &stamp().labels));
        let ops = finish(inspect_app_spec(&spec, &app.spec, &cfg()), ops).unwrap();
        let out = apply(&doc, &ops);
        for role in ["driver", "executor"] {
            assert_eq!(out["spec"][role]["labels"][USER_LABEL], "alice");
            assert_eq!(out["spec"][role]["securityContext"]["runAsUser"], 185);
            assert_eq!(out["spec"][role]["podSecurityContext"]["fsGroup"], 185);
        }
        // The executor already mounts /tmp: only the work dir is added.
        let mounts = out["spec"]["executor"]["volumeMounts"].as_array().unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(out["spec"]["volumes"].as_array().unwrap().len(), 2);

        let app2: SparkApplication = serde_json::from_value(out.clone()).unwrap();
        let mut again = plan_metadata(&app2.metadata, &stamp(), TOKEN_ANNOTATION);
        again.extend(plan_spark_pod_labels(&spec, &app2.spec, &stamp().labels));
        assert_eq!(
            finish(inspect_app_spec(&spec, &app2.spec, &cfg()), again).unwrap(),
            vec![]
        );
    }

    #[test]
    fn the_previous_schemes_user_label_is_replaced_not_refused() {
        let subject = "alice@example.com";
        let current = crate::core::labels::user_label(subject);
        let old = crate::core::labels::legacy_user_label(subject);
        let stamp = Stamp {
            labels: BTreeMap::from([(USER_LABEL, current.clone())]),
            annotations: BTreeMap::from([(SUBMITTER_ANNOTATION, subject.to_string())]),
        };
        let meta = |user: &str| Meta {
            labels: Some(BTreeMap::from([
                (USER_LABEL.to_string(), user.to_string()),
                ("app".to_string(), "etl".to_string()),
            ])),
            ..Meta::default()
        };
        // Copied from an object admitted before the upgrade: tolerated, then replaced.
        let arriving = meta(&old);
        let rest = without_superseded_user_label(arriving.labels.as_ref(), &stamp).unwrap();
        assert_eq!(
            rest,
            BTreeMap::from([("app".to_string(), "etl".to_string())])
        );
        let loc = Loc::root().key("metadata");
        assert!(conflicting_claims(&loc, Some(&rest), None, &stamp, "").is_empty());
        let ops = plan_metadata(&arriving, &stamp, TOKEN_ANNOTATION);
        assert_eq!(
            serde_json::to_value(&ops[0]).unwrap(),
            json!({"op": "replace", "path": "/metadata/labels/sparkward.io~1user", "value": current})
        );
        // The current value needs nothing; anything else stays a conflicting claim.
        assert!(without_superseded_user_label(meta(&current).labels.as_ref(), &stamp).is_none());
        for other in [
            "mallory",
            &crate::core::labels::legacy_user_label("bob@example.com"),
        ] {
            let m = meta(other);
            assert!(without_superseded_user_label(m.labels.as_ref(), &stamp).is_none());
            assert_eq!(
                conflicting_claims(&loc, m.labels.as_ref(), None, &stamp, "").len(),
                1
            );
        }
        // Without a subject in the stamp (spec labels), nothing is tolerated.
        let bare = Stamp {
            labels: stamp.labels.clone(),
            annotations: BTreeMap::new(),
        };
        assert!(without_superseded_user_label(arriving.labels.as_ref(), &bare).is_none());
    }

    #[test]
    fn the_last_applied_rewrite_drops_the_spark_submit_properties_too() {
        let driver = format!("spark.kubernetes.driver.annotation.{TOKEN_ANNOTATION}");
        let executor = format!("spark.kubernetes.executor.annotation.{TOKEN_ANNOTATION}");
        let applied = json!({"kind": "SparkApplication",
            "metadata": {"annotations": {TOKEN_ANNOTATION: "tok", "keep": "me"}},
            "spec": {"sparkConf": {driver.clone(): "tok", executor.clone(): "tok", "spark.app.name": "pi"}}});
        let out: Value = serde_json::from_str(
            &rewrite_last_applied(&applied.to_string(), TOKEN_ANNOTATION).unwrap(),
        )
        .unwrap();
        assert_eq!(out["metadata"]["annotations"], json!({"keep": "me"}));
        assert_eq!(out["spec"]["sparkConf"], json!({"spark.app.name": "pi"}));
        let scheduled = json!({"spec": {"template": {"sparkConf": {driver: "tok"}}}});
        let out = rewrite_last_applied(&scheduled.to_string(), TOKEN_ANNOTATION).unwrap();
        assert!(!out.contains("tok"), "{out}");
        // Still mentioned elsewhere: the annotation must go entirely.
        let elsewhere = json!({"spec": {"driver": {"annotations": {TOKEN_ANNOTATION: "tok"}}}});
        assert_eq!(
            rewrite_last_applied(&elsewhere.to_string(), TOKEN_ANNOTATION),
            None
        );
    }

    #[test]
    fn new_ephemeral_container_running_as_root_is_denied() {
        let doc = json!({"metadata": {}, "spec": {"containers": [{"name": "a", "securityContext": {"runAsUser": 0}}],
            "ephemeralContainers": [{"name": "debug", "securityContext": {"runAsUser": 0}}]}});
        let pod: Pod = serde_json::from_value(doc).unwrap();
        let err = finish(inspect_pod(&pod, &cfg(), Some(&["debug"])), vec![]).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(
            err[0].field,
            "spec.ephemeralContainers[0].securityContext.runAsUser"
        );
    }

    #[test]
    fn a_lower_case_drop_all_is_rewritten_to_all_and_the_next_pass_is_empty() {
        let mut doc = mk_pod();
        doc["spec"]["containers"][0]["securityContext"] =
            json!({"capabilities": {"drop": ["NET_RAW", "all"]}});
        doc["spec"]["initContainers"] =
            json!([{"name": "init", "securityContext": {"capabilities": {"drop": ["All"]}}}]);
        let ops = plan_pod(&doc).unwrap();
        let replaces: Vec<Value> = ops
            .iter()
            .map(|o| serde_json::to_value(o).unwrap())
            .filter(|o| o["op"] == "replace")
            .collect();
        assert_eq!(
            replaces,
            vec![
                json!({"op": "replace", "path": "/spec/containers/0/securityContext/capabilities/drop/1", "value": "ALL"}),
                json!({"op": "replace", "path": "/spec/initContainers/0/securityContext/capabilities/drop/0", "value": "ALL"}),
            ]
        );
        let out = apply(&doc, &ops);
        assert_eq!(
            out["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"],
            json!(["NET_RAW", "ALL"])
        );
        assert_eq!(plan_pod(&out).unwrap(), vec![]);
        // What the validating pass sees on the hardened pod: nothing missing.
        let pod: Pod = serde_json::from_value(out).unwrap();
        assert!(
            inspect_pod(&pod, &cfg(), None)
                .missing_as_violations()
                .is_empty()
        );
    }

    #[test]
    fn root_groups_and_shared_process_namespaces_are_denied_in_every_part_of_a_pod() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"securityContext": {"runAsGroup": 0}}),
                "spec.securityContext.runAsGroup",
            ),
            (
                json!({"securityContext": {"fsGroup": 0}}),
                "spec.securityContext.fsGroup",
            ),
            (
                json!({"securityContext": {"supplementalGroups": [185, 0]}}),
                "spec.securityContext.supplementalGroups[1]",
            ),
            (
                json!({"containers": [{"name": "spark", "securityContext": {"runAsGroup": 0}}]}),
                "spec.containers[0].securityContext.runAsGroup",
            ),
            (
                json!({"initContainers": [{"name": "i", "securityContext": {"runAsGroup": 0}}]}),
                "spec.initContainers[0].securityContext.runAsGroup",
            ),
            (
                json!({"ephemeralContainers": [{"name": "e", "securityContext": {"runAsGroup": 0}}]}),
                "spec.ephemeralContainers[0].securityContext.runAsGroup",
            ),
            (
                json!({"containers": [{"name": "spark", "securityContext": {"runAsUser": 1000}}]}),
                "spec.containers[0].securityContext.runAsUser",
            ),
            (
                json!({"shareProcessNamespace": true}),
                "spec.shareProcessNamespace",
            ),
        ];
        for (spec, field) in cases {
            let mut doc = mk_pod();
            json_patch::merge(&mut doc["spec"], &spec);
            let err = plan_pod(&doc).unwrap_err();
            let fields: Vec<&str> = err.iter().map(|v| v.field.as_str()).collect();
            assert_eq!(fields, vec![field]);
        }
    }

    #[test]
    fn spark_application_ids_and_process_namespaces_are_checked_everywhere_spark_copies_them() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"driver": {"podSecurityContext": {"runAsGroup": 0}}}),
                "driver.podSecurityContext.runAsGroup",
            ),
            (
                json!({"executor": {"podSecurityContext": {"fsGroup": 0}}}),
                "executor.podSecurityContext.fsGroup",
            ),
            (
                json!({"driver": {"podSecurityContext": {"supplementalGroups": [0]}}}),
                "driver.podSecurityContext.supplementalGroups[0]",
            ),
            (
                json!({"executor": {"securityContext": {"runAsGroup": 0}}}),
                "executor.securityContext.runAsGroup",
            ),
            (
                json!({"driver": {"securityContext": {"runAsUser": 4242}}}),
                "driver.securityContext.runAsUser",
            ),
            (
                json!({"driver": {"sidecars": [{"name": "s", "securityContext": {"runAsGroup": 0}}]}}),
                "driver.sidecars[0].securityContext.runAsGroup",
            ),
            (
                json!({"executor": {"initContainers": [{"name": "i", "securityContext": {"runAsGroup": 0}}]}}),
                "executor.initContainers[0].securityContext.runAsGroup",
            ),
            (
                json!({"driver": {"template": {"spec": {"securityContext": {"fsGroup": 0}}}}}),
                "driver.template.spec.securityContext.fsGroup",
            ),
            (
                json!({"executor": {"template": {"spec": {"initContainers": [{"name": "i", "securityContext": {"runAsGroup": 0}}]}}}}),
                "executor.template.spec.initContainers[0].securityContext.runAsGroup",
            ),
            (
                json!({"executor": {"shareProcessNamespace": true}}),
                "executor.shareProcessNamespace",
            ),
            (
                json!({"driver": {"template": {"spec": {"shareProcessNamespace": true}}}}),
                "driver.template.spec.shareProcessNamespace",
            ),
        ];
        // A SparkApplication's `spec`, and a ScheduledSparkApplication's `spec.template`.
        for root in [
            Loc::root().key("spec"),
            Loc::root().key("spec").key("template"),
        ] {
            for (patch, field) in &cases {
                let mut spec =
                    json!({"type": "Scala", "driver": {"cores": 1}, "executor": {"instances": 1}});
                json_patch::merge(&mut spec, patch);
                let spec: SparkAppSpec = serde_json::from_value(spec).unwrap();
                let err = finish(inspect_app_spec(&root, &spec, &cfg()), vec![]).unwrap_err();
                let fields: Vec<&str> = err.iter().map(|v| v.field.as_str()).collect();
                assert_eq!(fields, vec![format!("{}.{field}", root.human())]);
            }
        }
    }

    #[test]
    fn a_spark_application_with_a_lower_case_all_is_rewritten_not_denied() {
        let doc = json!({"metadata": {},
            "spec": {"driver": {"securityContext": {"capabilities": {"drop": ["all"]}}}}});
        let app: SparkApplication = serde_json::from_value(doc.clone()).unwrap();
        let spec = Loc::root().key("spec");
        let ops = finish(inspect_app_spec(&spec, &app.spec, &cfg()), vec![]).unwrap();
        let out = apply(&doc, &ops);
        assert_eq!(
            out["spec"]["driver"]["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
    }
}
