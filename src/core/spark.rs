//! Spark's own security per job, decided on plain data: the Spark properties a job's profile
//! enforces (RPC authentication with the job's own secret file, RPC and local-storage
//! encryption, UI ACLs, anything else the security team lists), how they get into a
//! SparkApplication's `sparkConf` and into spark-submit's `spark.properties`, and how every pod
//! of the job mounts the job's RPC secret.
//!
//! Facts from Spark's sources these rules rest on (Spark 3.0 and later): with
//! `spark.authenticate.secret.file` set, the driver reads the secret from that file instead of
//! generating one, and executor pods get no `_SPARK_AUTH_SECRET` environment variable (which
//! would otherwise put the secret in the pod spec for anyone who can read pods); the executor's
//! first connection to the driver reads only this generic key, so sparkward sets it rather than
//! the `.driver.file`/`.executor.file` pair; Spark base64-encodes the file's bytes itself, so
//! any bytes will do; and a secret in `spark.authenticate.secret` would win over the file on
//! executors, so it is refused. Spark does not mount the file: sparkward adds the volume to
//! every driver and executor pod.

use std::collections::BTreeMap;

use json_patch::{PatchOperation, ReplaceOperation};
use serde_json::{Value, json};

use crate::config::SparkProfile;
use crate::core::decision::JobIdentity;
use crate::core::hardening::{Findings, Loc, Missing, Violation};
use crate::core::objects::{Container, Pod};

/// Where every pod of a job finds its RPC secret (a directory of its own, never
/// `/opt/spark/conf`, which holds spark-submit's properties).
pub const RPC_SECRET_DIR: &str = "/etc/sparkward/rpc";
/// The Secret's data key, and so the file name in `RPC_SECRET_DIR`.
pub const RPC_SECRET_KEY: &str = "secret";
/// The pod volume that holds it.
pub const RPC_VOLUME: &str = "sparkward-rpc";
/// The property that points Spark at the file.
pub const SECRET_FILE_PROPERTY: &str = "spark.authenticate.secret.file";
/// Spark's property for a secret given in clear; never allowed with a per-job secret.
pub const SECRET_PROPERTY: &str = "spark.authenticate.secret";
/// The environment variable Spark uses to hand executors a generated secret.
pub const AUTH_SECRET_ENV: &str = crate::core::objects::SPARK_AUTH_SECRET_ENV;
/// Bytes of randomness in a job's RPC secret.
pub const RPC_SECRET_BYTES: usize = 32;

/// The Spark properties a job must have, with their values.
pub fn enforced_properties(profile: &SparkProfile, job: &JobIdentity) -> BTreeMap<String, String> {
    let mut out = profile.settings.clone();
    if profile.rpc_secret {
        out.insert("spark.authenticate".into(), "true".into());
        out.insert(
            SECRET_FILE_PROPERTY.into(),
            format!("{RPC_SECRET_DIR}/{RPC_SECRET_KEY}"),
        );
    }
    if let Some(admin_groups) = &profile.ui_acls {
        out.insert("spark.acls.enable".into(), "true".into());
        out.insert("spark.ui.view.acls".into(), job.submitter.subject.clone());
        out.insert("spark.modify.acls".into(), job.submitter.subject.clone());
        if !admin_groups.is_empty() {
            out.insert("spark.admin.acls.groups".into(), admin_groups.join(","));
        }
    }
    out
}

fn weaker(field: String, value: &str, want: &str, profile: &str) -> Violation {
    Violation {
        field,
        problem: format!("is '{value}'"),
        fix: format!(
            "remove it: the namespace's Spark security profile '{profile}' requires '{want}' and \
             sparkward sets it"
        ),
    }
}

fn clear_secret(field: String) -> Violation {
    Violation {
        field,
        problem: "holds an RPC secret in clear".into(),
        fix: "remove it: the job gets its own secret, mounted as a file, so that no secret is \
              stored in its spec"
            .into(),
    }
}

/// The `sparkConf` of a SparkApplication (`spec_loc` is its `spec`, or a schedule's
/// `spec.template`): missing enforced properties are added; a different explicit value, or a
/// secret in clear, is weaker and denied.
pub fn inspect_spark_conf(
    spec_loc: &Loc,
    spark_conf: Option<&BTreeMap<String, String>>,
    enforced: &BTreeMap<String, String>,
    profile: &str,
    out: &mut Findings,
) {
    let conf_loc = spec_loc.key("sparkConf");
    let present = spark_conf.cloned().unwrap_or_default();
    if enforced.contains_key(SECRET_FILE_PROPERTY) {
        for key in [
            SECRET_PROPERTY,
            "spark.authenticate.secret.driver.file",
            "spark.authenticate.secret.executor.file",
        ] {
            if let Some(v) = present.get(key) {
                out.weaker.push(if key == SECRET_PROPERTY {
                    clear_secret(conf_loc.key(key).human())
                } else {
                    weaker(conf_loc.key(key).human(), v, "unset", profile)
                });
            }
        }
    }
    let mut to_add = Vec::new();
    for (key, want) in enforced {
        match present.get(key) {
            Some(v) if v == want => {}
            Some(v) => out
                .weaker
                .push(weaker(conf_loc.key(key).human(), v, want, profile)),
            None => to_add.push((key, want)),
        }
    }
    if to_add.is_empty() {
        return;
    }
    if spark_conf.is_none() {
        let map: serde_json::Map<String, Value> = to_add
            .iter()
            .map(|(k, v)| ((*k).clone(), Value::String((*v).clone())))
            .collect();
        out.missing.push(missing_add(&conf_loc, Value::Object(map)));
    } else {
        for (key, want) in to_add {
            out.missing
                .push(missing_add(&conf_loc.key(key), Value::String(want.clone())));
        }
    }
}

/// Adds `item` to the list at `list_loc`: into a whole list another finding already adds there
/// (hardening adds the writable emptyDirs and their mounts that way), else as the list itself
/// when the object has none, else appended.
fn add_to_list(out: &mut Findings, list_loc: &Loc, exists: bool, item: Value) {
    let pointer = list_loc.pointer();
    for m in &mut out.missing {
        if let PatchOperation::Add(add) = &mut m.op
            && add.path == pointer
            && let Value::Array(items) = &mut add.value
        {
            items.push(item);
            return;
        }
    }
    if exists {
        out.missing.push(missing_add(&list_loc.append(), item));
    } else {
        out.missing.push(missing_add(list_loc, json!([item])));
    }
}

fn missing_add(loc: &Loc, value: Value) -> Missing {
    Missing::add(loc.clone(), value, true)
}

/// The key of a Java properties line (`key=value`, `key: value`, `key value`) and its value.
fn property(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
        return None;
    }
    let end = line
        .find(|c: char| c == '=' || c == ':' || c.is_whitespace())
        .unwrap_or(line.len());
    let (key, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix(':'))
        .unwrap_or(rest);
    Some((key, rest.trim()))
}

/// spark-submit's `spark.properties` (in the driver's ConfigMap, data key `key`): the enforced
/// properties it lacks, appended as lines (`Ok(Some(new text))`; `Ok(None)` when nothing is
/// missing), or the weaker values it holds.
pub fn plan_properties(
    key: &str,
    text: &str,
    enforced: &BTreeMap<String, String>,
    profile: &str,
) -> Result<Option<String>, Vec<Violation>> {
    let loc = Loc::root().key("data").key(key);
    let mut present: BTreeMap<&str, &str> = BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = property(line) {
            // java.util.Properties: the last line of a key wins.
            present.insert(k, v);
        }
    }
    let mut violations = Vec::new();
    if enforced.contains_key(SECRET_FILE_PROPERTY) && present.contains_key(SECRET_PROPERTY) {
        violations.push(clear_secret(format!(
            "{} line {SECRET_PROPERTY}",
            loc.human()
        )));
    }
    let mut lines = Vec::new();
    for (k, want) in enforced {
        match present.get(k.as_str()) {
            Some(v) if v == want => {}
            Some(v) => violations.push(weaker(
                format!("{} line {k}", loc.human()),
                v,
                want,
                profile,
            )),
            None => lines.push(format!("{k}={want}\n")),
        }
    }
    if !violations.is_empty() {
        return Err(violations);
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# added by sparkward: the namespace's Spark security profile\n");
    out.extend(lines);
    Ok(Some(out))
}

/// The container that runs Spark in a driver or executor pod: Spark names it
/// `spark-kubernetes-driver` / `spark-kubernetes-executor`; a pod template may rename it, and
/// Spark then uses the first container.
fn spark_container(pod: &Pod) -> Option<(usize, &Container)> {
    pod.spec
        .containers
        .iter()
        .enumerate()
        .find(|(_, c)| c.name.starts_with("spark-kubernetes-"))
        .or_else(|| pod.spec.containers.first().map(|c| (0, c)))
}

/// Mounts the job's RPC secret `secret` into a Spark pod: the volume (the Secret, read-only,
/// mode 0440: group-readable for the pod's fsGroup, since Spark runs as a non-root user and the
/// kubelet makes Secret files root-owned) and its mount in the Spark container. A volume of
/// that name that is not this Secret, or a mount of the directory from another volume, is a
/// denial: nothing may stand in for the job's secret.
pub fn inspect_rpc_mount(pod: &Pod, secret: &str, out: &mut Findings) {
    let spec = Loc::root().key("spec");
    let volumes = pod.spec.volumes.as_deref().unwrap_or_default();
    match volumes.iter().position(|v| v.name == RPC_VOLUME) {
        Some(i) if volumes[i].secret_name.as_deref() == Some(secret) => {}
        Some(i) => out.weaker.push(Violation {
            field: spec.key("volumes").index(i).human(),
            problem: format!("is named {RPC_VOLUME} but is not the job's Secret {secret}"),
            fix: format!("rename the volume: {RPC_VOLUME} holds the job's RPC secret"),
        }),
        None => {
            let volume = json!({
                "name": RPC_VOLUME,
                "secret": {"secretName": secret, "defaultMode": 0o440,
                    "items": [{"key": RPC_SECRET_KEY, "path": RPC_SECRET_KEY}]},
            });
            add_to_list(
                out,
                &spec.key("volumes"),
                pod.spec.volumes.is_some(),
                volume,
            );
        }
    }
    let Some((index, container)) = spark_container(pod) else {
        return;
    };
    let mounts_loc = spec.key("containers").index(index).key("volumeMounts");
    let ours = container
        .volume_mounts
        .iter()
        .position(|m| m.mount_path.trim_end_matches('/') == RPC_SECRET_DIR);
    match ours {
        Some(i) if container.volume_mounts[i].name == RPC_VOLUME => {}
        Some(i) => out.weaker.push(Violation {
            field: mounts_loc.index(i).human(),
            problem: format!("mounts another volume at {RPC_SECRET_DIR}"),
            fix: format!("remove it: {RPC_SECRET_DIR} holds the job's RPC secret"),
        }),
        None => {
            let mount = json!({"name": RPC_VOLUME, "mountPath": RPC_SECRET_DIR, "readOnly": true});
            add_to_list(out, &mounts_loc, !container.volume_mounts.is_empty(), mount);
        }
    }
}

/// `_SPARK_AUTH_SECRET` in any container's environment: the RPC secret in clear in a pod spec.
pub fn auth_secret_in_env(pod: &Pod) -> Vec<Violation> {
    let spec = Loc::root().key("spec");
    let mut out = Vec::new();
    for (key, list) in [
        ("containers", &pod.spec.containers),
        ("initContainers", &pod.spec.init_containers),
        ("ephemeralContainers", &pod.spec.ephemeral_containers),
    ] {
        for (i, c) in list.iter().enumerate() {
            for (j, e) in c.env.iter().enumerate() {
                if e.spark_auth_secret {
                    out.push(Violation {
                        field: spec.key(key).index(i).key("env").index(j).human(),
                        problem: format!("is {AUTH_SECRET_ENV}, Spark's RPC secret in clear"),
                        fix: format!(
                            "remove it: every pod of the job reads its own secret from \
                             {RPC_SECRET_DIR}/{RPC_SECRET_KEY} ({SECRET_FILE_PROPERTY}, set by \
                             sparkward); a driver that still hands executors this variable \
                             was started without that property"
                        ),
                    });
                }
            }
        }
    }
    out
}

/// A job's RPC authentication Secret: created with the job, before it is admitted, immutable,
/// labelled like the job's policy so that the lifecycle controller and the guard find it.
#[derive(Clone, PartialEq, Eq)]
pub struct RpcSecret {
    pub namespace: String,
    pub name: String,
    pub job_id: String,
    pub user_label: String,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for RpcSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself.
        f.debug_struct("RpcSecret")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("job_id", &self.job_id)
            .finish_non_exhaustive()
    }
}

impl RpcSecret {
    /// The Secret object; `with_data: false` leaves the secret out (what `sparkward review`
    /// prints and local mode writes).
    pub fn manifest(&self, with_data: bool) -> Value {
        use base64::Engine;
        let mut secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {
                    crate::core::labels::MANAGED_BY_LABEL: crate::core::labels::MANAGED_BY_VALUE,
                    crate::core::labels::JOB_ID_LABEL: self.job_id,
                    crate::core::labels::USER_LABEL: self.user_label,
                },
            },
            "type": "Opaque",
            // The driver reads the secret once and executors on every connection: it must never
            // change under a running job.
            "immutable": true,
        });
        if with_data {
            secret["data"] = json!({
                RPC_SECRET_KEY: base64::engine::general_purpose::STANDARD.encode(&self.data)
            });
        }
        secret
    }
}

/// A replace operation for one data entry of a ConfigMap.
pub fn replace_data(key: &str, text: String) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation {
        path: Loc::root().key("data").key(key).pointer(),
        value: Value::String(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::builtin_default_profile;
    use crate::core::decision::Submitter;

    fn job() -> JobIdentity {
        JobIdentity {
            job_id: "sj-aaaaaaaaaaaaaaaaaaaa".into(),
            submitter: Submitter {
                subject: "alice".into(),
                issuer: "https://idp".into(),
                token_id: None,
                scopes: vec![],
            },
            security: None,
        }
    }

    fn apply(doc: &Value, findings: &Findings) -> Value {
        let mut doc = doc.clone();
        let ops: Vec<PatchOperation> = findings.missing.iter().map(|m| m.op.clone()).collect();
        json_patch::patch(&mut doc, &ops).unwrap();
        doc
    }

    #[test]
    fn the_default_profile_enforces_the_secret_file_and_encryption() {
        let e = enforced_properties(&builtin_default_profile(), &job());
        assert_eq!(e["spark.authenticate"], "true");
        assert_eq!(e["spark.network.crypto.enabled"], "true");
        assert_eq!(e["spark.io.encryption.enabled"], "true");
        assert_eq!(e[SECRET_FILE_PROPERTY], "/etc/sparkward/rpc/secret");
        assert!(!e.contains_key("spark.acls.enable"));
        let mut p = builtin_default_profile();
        p.ui_acls = Some(vec!["data-admins".into(), "sre".into()]);
        let e = enforced_properties(&p, &job());
        assert_eq!(e["spark.ui.view.acls"], "alice");
        assert_eq!(e["spark.modify.acls"], "alice");
        assert_eq!(e["spark.admin.acls.groups"], "data-admins,sre");
    }

    #[test]
    fn spark_conf_gets_what_is_missing_and_weaker_values_are_denied() {
        let e = enforced_properties(&builtin_default_profile(), &job());
        let spec = Loc::root().key("spec");
        // No sparkConf at all: added whole.
        let mut f = Findings::default();
        inspect_spark_conf(&spec, None, &e, "default", &mut f);
        let out = apply(&json!({"spec": {}}), &f);
        assert_eq!(
            out["spec"]["sparkConf"]["spark.io.encryption.enabled"],
            "true"
        );
        // Some present: only the rest added, the user's own keys kept.
        let conf = BTreeMap::from([
            ("spark.authenticate".to_string(), "true".to_string()),
            ("spark.executor.cores".to_string(), "2".to_string()),
        ]);
        let mut f = Findings::default();
        inspect_spark_conf(&spec, Some(&conf), &e, "default", &mut f);
        assert!(f.weaker.is_empty());
        let out = apply(&json!({"spec": {"sparkConf": conf}}), &f);
        assert_eq!(out["spec"]["sparkConf"]["spark.executor.cores"], "2");
        assert_eq!(
            out["spec"]["sparkConf"]["spark.authenticate.secret.file"],
            "/etc/sparkward/rpc/secret"
        );
        // Weaker values and a secret in clear are denied, naming the key.
        let conf = BTreeMap::from([
            (
                "spark.io.encryption.enabled".to_string(),
                "false".to_string(),
            ),
            (SECRET_PROPERTY.to_string(), "hunter2".to_string()),
        ]);
        let mut f = Findings::default();
        inspect_spark_conf(&spec, Some(&conf), &e, "default", &mut f);
        let fields: Vec<&str> = f.weaker.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.sparkConf[\"spark.authenticate.secret\"]",
                "spec.sparkConf[\"spark.io.encryption.enabled\"]"
            ]
        );
        assert!(!f.weaker[0].to_string().contains("hunter2"));
    }

    #[test]
    fn spark_properties_get_lines_appended_and_weaker_lines_are_denied() {
        let e = enforced_properties(&builtin_default_profile(), &job());
        let text = "spark.app.name=pi\nspark.authenticate true\n";
        let out = plan_properties("spark.properties", text, &e, "default")
            .unwrap()
            .unwrap();
        assert!(out.starts_with(text));
        assert!(out.contains("spark.authenticate.secret.file=/etc/sparkward/rpc/secret\n"));
        assert!(
            !out.contains("spark.authenticate=true"),
            "already present: {out}"
        );
        // Idempotent.
        assert_eq!(
            plan_properties("spark.properties", &out, &e, "default"),
            Ok(None)
        );
        // The last line of a key wins, as in java.util.Properties.
        let err = plan_properties(
            "spark.properties",
            "spark.network.crypto.enabled=true\nspark.network.crypto.enabled: false\n",
            &e,
            "default",
        )
        .unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err[0].field.contains("spark.network.crypto.enabled"),
            "{err:?}"
        );
    }

    fn pod(doc: Value) -> Pod {
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn spark_pods_mount_the_jobs_secret_read_only() {
        let doc = json!({"metadata": {}, "spec": {"containers": [
            {"name": "sidecar"}, {"name": "spark-kubernetes-executor", "volumeMounts": [{"name": "x", "mountPath": "/tmp"}]}]}});
        let mut f = Findings::default();
        inspect_rpc_mount(&pod(doc.clone()), "sparkward-sj-a-rpc", &mut f);
        assert!(f.weaker.is_empty());
        let out = apply(&doc, &f);
        assert_eq!(
            out["spec"]["volumes"][0]["secret"]["secretName"],
            "sparkward-sj-a-rpc"
        );
        assert_eq!(out["spec"]["volumes"][0]["secret"]["defaultMode"], 0o440);
        let mount = &out["spec"]["containers"][1]["volumeMounts"][1];
        assert_eq!(mount["mountPath"], RPC_SECRET_DIR);
        assert_eq!(mount["readOnly"], true);
        assert!(out["spec"]["containers"][0].get("volumeMounts").is_none());
        // Done: nothing more to add.
        let mut again = Findings::default();
        inspect_rpc_mount(&pod(out), "sparkward-sj-a-rpc", &mut again);
        assert!(again.missing.is_empty() && again.weaker.is_empty());
    }

    #[test]
    fn the_mount_joins_the_lists_hardening_adds() {
        let cfg = crate::config::Config::default().hardening;
        let doc =
            json!({"metadata": {}, "spec": {"containers": [{"name": "spark-kubernetes-driver"}]}});
        let p = pod(doc.clone());
        let mut f = crate::core::mutation::inspect_pod(&p, &cfg, None);
        inspect_rpc_mount(&p, "sparkward-sj-a-rpc", &mut f);
        let out = apply(&doc, &f);
        let names: Vec<&str> = out["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["sparkward-tmp", "sparkward-opt-spark-work-dir", RPC_VOLUME]
        );
        let mounts = out["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap();
        assert_eq!(mounts.len(), 3, "{mounts:?}");
    }

    #[test]
    fn nothing_stands_in_for_the_jobs_secret() {
        let doc = json!({"metadata": {}, "spec": {
            "volumes": [{"name": RPC_VOLUME, "secret": {"secretName": "someone-elses"}}],
            "containers": [{"name": "spark-kubernetes-driver",
                "volumeMounts": [{"name": "other", "mountPath": "/etc/sparkward/rpc/"}],
                "env": [{"name": "A"}, {"name": AUTH_SECRET_ENV, "value": "s"}]}]}});
        let p = pod(doc);
        let mut f = Findings::default();
        inspect_rpc_mount(&p, "sparkward-sj-a-rpc", &mut f);
        let fields: Vec<&str> = f.weaker.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["spec.volumes[0]", "spec.containers[0].volumeMounts[0]"]
        );
        let env = auth_secret_in_env(&p);
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].field, "spec.containers[0].env[1]");
    }
}
