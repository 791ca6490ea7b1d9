//! Typed views of the objects sparkward reads: just the fields the decisions need, parsed
//! straight from the review's raw JSON. Everything else in the object is skipped by serde without
//! allocating, which keeps a 6 KB pod review cheap (DESIGN.md: parse into typed structs).
//!
//! The views never re-serialise the object: the mutation produces JSON Patch operations against
//! the original document, so fields these views do not know survive untouched.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::core::labels::OPERATOR_LABEL_PREFIX;
use crate::core::loose::{
    Loose, LooseList, loose_containers, loose_list, loose_object, non_empty_list, rendered_entries,
    set_unless_empty_list,
};

/// Deserialises a struct-typed field only from a JSON object. serde's derived structs also
/// accept a JSON array (fields in declaration order), so `"spec": [{...}]` would be read as a
/// spec and get a patch below `/spec/...` that does not apply to an array. No API server sends
/// such an object; it is refused as malformed all the same.
pub fn map_only<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct MapOnly<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for MapOnly<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(MapOnly(std::marker::PhantomData))
}

/// A whole object (a review's `object` or `oldObject`, or one of its struct-typed fields),
/// read only from a JSON object: see `map_only`.
#[derive(Debug)]
pub struct ObjectOnly<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        map_only(d).map(ObjectOnly)
    }
}

/// The most containers sparkward reads from one list (`containers`, `initContainers`,
/// `ephemeralContainers`, a Spark pod's `sidecars` and `initContainers`). Kubernetes sets no
/// such limit, but every container gets its own hardening patch, some 4 KB of work even for a
/// container written as `{}`: a 4 MiB review of a million empty containers made one review
/// allocate gigabytes (found by the fuzzer's memory check). Spark pods have a handful.
pub const MAX_CONTAINERS: usize = 128;

/// The most items sparkward reads from any other list of an object: owner references, volumes,
/// and a container's env, volume mounts and ports. Real objects hold tens. Without a limit an
/// item written as `{}` (3 bytes of body) cost a typed value of about 100 bytes, or a denial
/// finding of about 700 (a volume without a source): a list of them cost 35 to 230 times its
/// size in memory.
pub const MAX_LIST_ITEMS: usize = 1024;

/// A list of containers, each read only from a JSON object (see `map_only`), refused past
/// `MAX_CONTAINERS` before the rest of the list is read.
pub fn containers_only<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(Capped::<ObjectOnly<T>>::new(
        MAX_CONTAINERS,
        "containers",
        "pods",
    ))
    .map(|v| v.into_iter().map(|o| o.0).collect())
}

/// Any other list, refused past `MAX_LIST_ITEMS` before the rest of it is read.
pub fn capped_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(Capped::<T>::new(MAX_LIST_ITEMS, "items", "objects"))
}

/// `capped_list` for an optional list (`null` or absent is `None`), as `opt_map_only` is for
/// `map_only`.
pub fn opt_capped_list<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<CappedList<T>>::deserialize(d).map(|o| o.map(|l| l.0))
}

/// A list read by `capped_list`.
struct CappedList<T>(Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for CappedList<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        capped_list(d).map(CappedList)
    }
}

/// A sequence read item by item and refused at its `max + 1`st item.
pub(crate) struct Capped<T> {
    max: usize,
    items: &'static str,
    split: &'static str,
    of: std::marker::PhantomData<T>,
}

impl<T> Capped<T> {
    pub(crate) fn new(max: usize, items: &'static str, split: &'static str) -> Self {
        Self {
            max,
            items,
            split,
            of: std::marker::PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Capped<T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {} {}", self.max, self.items)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<T>()? {
            if out.len() == self.max {
                return Err(serde::de::Error::custom(format_args!(
                    "more than {max} {items} in one list; sparkward admits at most {max} per \
                     list: split the work over more {split}",
                    max = self.max,
                    items = self.items,
                    split = self.split,
                )));
            }
            out.push(item);
        }
        Ok(out)
    }
}

/// An optional struct-typed field, read only from a JSON object or `null` (see `map_only`).
pub fn opt_map_only<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<ObjectOnly<T>>::deserialize(d).map(|o| o.map(|x| x.0))
}

/// The metadata fields sparkward reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Meta {
    pub name: Option<String>,
    pub generate_name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    /// `None` when the object has no `labels` key at all (the patch must then add the map).
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "capped_list")]
    pub owner_references: Vec<OwnerRef>,
}

impl Meta {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref()?.get(key).map(String::as_str)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }

    /// A name for messages: the name, or `generateName*`, or `(unnamed)`.
    pub fn display_name(&self) -> String {
        match (&self.name, &self.generate_name) {
            (Some(n), _) if !n.is_empty() => n.clone(),
            (_, Some(g)) if !g.is_empty() => format!("{g}*"),
            _ => "(unnamed)".to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: Option<bool>,
}

/// A container, init container or ephemeral container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    pub name: String,
    /// The image reference, as written (checked against `hardening.images`).
    pub image: Option<String>,
    /// Only the names matter (Spark's `_SPARK_AUTH_SECRET` must not be there).
    #[serde(deserialize_with = "capped_list")]
    pub env: Vec<EnvVar>,
    pub security_context: Option<SecurityContext>,
    #[serde(deserialize_with = "capped_list")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(deserialize_with = "capped_list")]
    pub ports: Vec<ContainerPort>,
}

/// Spark's RPC secret as an environment variable: the one name `EnvVar` tells apart.
pub const SPARK_AUTH_SECRET_ENV: &str = "_SPARK_AUTH_SECRET";

/// An environment variable of a container. Values are not read, and of the name only whether
/// it is `SPARK_AUTH_SECRET_ENV` is kept: a Spark pod carries a few dozen variables, and each
/// kept name was an allocation per review.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvVar {
    pub spark_auth_secret: bool,
}

impl<'de> Deserialize<'de> for EnvVar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The derived reading of `{name: string}` it always was (the same errors, under the
        // same struct name), with the name borrowed from the body where it has no escapes.
        #[derive(Default, Deserialize)]
        #[serde(default, rename = "EnvVar", expecting = "struct EnvVar")]
        struct Named<'a> {
            #[serde(borrow)]
            name: std::borrow::Cow<'a, str>,
        }
        Named::deserialize(d).map(|n| EnvVar {
            spark_auth_secret: n.name == SPARK_AUTH_SECRET_ENV,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerPort {
    pub host_port: Option<i32>,
    pub container_port: Option<i32>,
}

/// A volume: its name and which source keys it sets (`emptyDir`, `hostPath`, ...). The source
/// bodies are skipped; only their kind matters to the decisions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Volume {
    pub name: String,
    pub sources: Vec<String>,
    /// `secret.secretName` of a Secret volume.
    pub secret_name: Option<String>,
}

impl<'de> Deserialize<'de> for Volume {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Volume;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a volume")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Volume, A::Error> {
                let mut volume = Volume::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "name" {
                        volume.name = map.next_value()?;
                    } else if key == "secret" {
                        #[derive(Deserialize, Default)]
                        #[serde(rename_all = "camelCase", default)]
                        struct SecretSource {
                            secret_name: Option<String>,
                        }
                        let source: Option<SecretSource> = map.next_value()?;
                        if let Some(source) = source {
                            volume.secret_name = source.secret_name;
                            volume.sources.push(key);
                        }
                    } else {
                        // `hostPath: null` sets nothing; only a present source counts. The body
                        // is skipped without building a JSON tree (that was ~17 % of a pod
                        // review's instructions).
                        let value: Option<IgnoredAny> = map.next_value()?;
                        if value.is_some() {
                            volume.sources.push(key);
                        }
                    }
                }
                Ok(volume)
            }
        }
        de.deserialize_map(V)
    }
}

/// The pod spec fields sparkward reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    pub security_context: Option<PodSecurityContext>,
    #[serde(deserialize_with = "containers_only")]
    pub containers: Vec<Container>,
    #[serde(deserialize_with = "containers_only")]
    pub init_containers: Vec<Container>,
    #[serde(deserialize_with = "containers_only")]
    pub ephemeral_containers: Vec<Container>,
    #[serde(deserialize_with = "opt_capped_list")]
    pub volumes: Option<Vec<Volume>>,
    pub host_network: Option<bool>,
    #[serde(rename = "hostPID")]
    pub host_pid: Option<bool>,
    #[serde(rename = "hostIPC")]
    pub host_ipc: Option<bool>,
    pub share_process_namespace: Option<bool>,
    pub service_account_name: Option<String>,
    /// The node the pod is bound to (for the kubelet's rights).
    pub node_name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodStatus {
    pub phase: Option<String>,
}

/// A core/v1 Pod. `metadata` is required: every patch sparkward makes writes below it, and an
/// object without it (which no API server sends) would get a patch that does not apply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(deserialize_with = "map_only")]
    pub metadata: Meta,
    /// Required too: the hardening patch writes below it (every pod the API server sends has
    /// one; `containers` is required).
    #[serde(deserialize_with = "map_only")]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: Option<PodStatus>,
}

/// `spec.driver` / `spec.executor` of a SparkApplication (SparkPodSpec).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SparkPodSpec {
    /// The Spark container's image (overrides `spec.image`).
    pub image: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub security_context: Option<SecurityContext>,
    pub pod_security_context: Option<PodSecurityContext>,
    #[serde(deserialize_with = "opt_capped_list")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    #[serde(deserialize_with = "containers_only")]
    pub sidecars: Vec<Container>,
    #[serde(deserialize_with = "containers_only")]
    pub init_containers: Vec<Container>,
    pub host_network: Option<bool>,
    /// spark-operator copies it onto the pod (v1beta2 has it, unlike hostPID and hostIPC).
    pub share_process_namespace: Option<bool>,
    #[serde(deserialize_with = "capped_list")]
    pub ports: Vec<ContainerPort>,
    /// A pod template (`x-kubernetes-preserve-unknown-fields` in the CRD): read loosely. The
    /// CRD types it as an object, so anything else is refused as for `driver`.
    #[serde(deserialize_with = "opt_map_only")]
    pub template: Option<Template>,
    /// Labels of the driver's Service (driver only).
    pub service_labels: Option<BTreeMap<String, String>>,
}

/// A pod template (`spec.driver.template`, `spec.executor.template`): what the hardening and
/// the claim checks read of it, typed loosely. The CRD does not type its content, so any field
/// may hold any JSON: a field of another type than a pod gives it is read as unset (as
/// `Value::as_bool` and `Value::get` read it before this view), unless a check says otherwise
/// (ids that are not integers are denied). Lists are capped like the typed views' lists, and
/// everything else is skipped, never stored: a `serde_json::Value` of the template made a list
/// of 100,000 `{"a":0}` cost 168 times its body. A field this view reads written twice is
/// refused as malformed, as in the other views (kube-apiserver re-encodes every object and
/// never sends one). Spark reads the template with its own Kubernetes client (spark-operator
/// v2 decodes it into a typed `corev1.PodTemplateSpec` first), and the pods made of it are
/// checked again by the pod webhook.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Template {
    #[serde(deserialize_with = "loose_object")]
    pub metadata: Option<TemplateMeta>,
    #[serde(deserialize_with = "loose_object")]
    pub spec: Option<TemplateSpec>,
}

/// The metadata of a pod template: what spark-operator's owners and labels could be claimed
/// with (`admission::job::app_spec_operator_claims`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TemplateMeta {
    /// The `sparkoperator.k8s.io/` labels only, each value as its JSON text (a string is
    /// quoted); other labels are skipped.
    #[serde(rename = "labels", deserialize_with = "operator_labels")]
    pub operator_labels: BTreeMap<String, String>,
    /// Whether `ownerReferences` is set: anything but absent or an empty list (`null`, a
    /// non-list and a list of items are all owners claimed); the items are skipped.
    #[serde(rename = "ownerReferences", deserialize_with = "set_unless_empty_list")]
    pub owner_references_set: bool,
}

fn operator_labels<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    rendered_entries(d, |k| k.starts_with(OPERATOR_LABEL_PREFIX))
}

/// The spec of a pod template.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TemplateSpec {
    pub host_network: Option<Loose<bool>>,
    #[serde(rename = "hostPID")]
    pub host_pid: Option<Loose<bool>>,
    #[serde(rename = "hostIPC")]
    pub host_ipc: Option<Loose<bool>>,
    pub share_process_namespace: Option<Loose<bool>>,
    #[serde(deserialize_with = "loose_object")]
    pub security_context: Option<LooseContext>,
    #[serde(deserialize_with = "loose_containers")]
    pub containers: Vec<TemplateContainer>,
    #[serde(deserialize_with = "loose_containers")]
    pub init_containers: Vec<TemplateContainer>,
    /// Read for their images only (the API server refuses a pod created with them).
    #[serde(deserialize_with = "loose_containers")]
    pub ephemeral_containers: Vec<TemplateContainer>,
    /// Item by item: an item that is not an object has no source, a `name` that is not a string
    /// is empty, and any source key with a value other than `null` counts.
    #[serde(deserialize_with = "loose_volumes")]
    pub volumes: Vec<Volume>,
}

/// A container of a pod template.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TemplateContainer {
    pub name: Option<Loose<String>>,
    pub image: Option<Loose<String>>,
    #[serde(deserialize_with = "loose_object")]
    pub security_context: Option<LooseContext>,
    #[serde(deserialize_with = "loose_list")]
    pub ports: Vec<TemplatePort>,
}

impl TemplateContainer {
    /// The name, or empty when it is not a string.
    pub fn name(&self) -> &str {
        match &self.name {
            Some(Loose::Is(name)) => name,
            _ => "",
        }
    }
}

/// A port of a template container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TemplatePort {
    pub host_port: Option<Loose<i64>>,
}

/// A security context of a pod template, the pod's or a container's: the fields the weaker-
/// setting checks read. `fsGroup` and `supplementalGroups` are checked on the pod's only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LooseContext {
    pub privileged: Option<Loose<bool>>,
    pub allow_privilege_escalation: Option<Loose<bool>>,
    pub read_only_root_filesystem: Option<Loose<bool>>,
    pub run_as_non_root: Option<Loose<bool>>,
    #[serde(deserialize_with = "loose_object")]
    pub capabilities: Option<LooseCapabilities>,
    #[serde(deserialize_with = "loose_object")]
    pub seccomp_profile: Option<LooseSeccompProfile>,
    pub run_as_user: Option<Loose<i64>>,
    pub run_as_group: Option<Loose<i64>>,
    pub fs_group: Option<Loose<i64>>,
    /// Each GID, `None` for `null`.
    pub supplemental_groups: Option<LooseList<Option<Loose<i64>>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LooseCapabilities {
    /// Whether `add` is a list with at least one item.
    #[serde(deserialize_with = "non_empty_list")]
    pub add: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LooseSeccompProfile {
    #[serde(rename = "type")]
    pub kind: Option<Loose<String>>,
}

/// The volumes of a pod template (see `TemplateSpec::volumes`).
fn loose_volumes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Volume>, D::Error> {
    loose_list::<D, LooseVolume>(d).map(|v| v.into_iter().map(|v| v.0).collect())
}

/// A volume of a pod template, read as `Volume` is but loosely.
#[derive(Default)]
struct LooseVolume(Volume);

impl<'de> Deserialize<'de> for LooseVolume {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LooseVolume;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a volume")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LooseVolume, A::Error> {
                let mut volume = Volume::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "name" {
                        volume.name = match map.next_value::<Option<Loose<String>>>()? {
                            Some(Loose::Is(name)) => name,
                            _ => String::new(),
                        };
                    } else {
                        // As in `Volume`; a repeated key counts once.
                        let value: Option<IgnoredAny> = map.next_value()?;
                        if value.is_some() && !volume.sources.contains(&key) {
                            volume.sources.push(key);
                        }
                    }
                }
                Ok(LooseVolume(volume))
            }
        }
        de.deserialize_map(V)
    }
}

/// `spec` of a SparkApplication (and `spec.template` of a ScheduledSparkApplication).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SparkAppSpec {
    /// The image of the driver and executors unless their own `image` is set.
    pub image: Option<String>,
    #[serde(deserialize_with = "opt_map_only")]
    pub driver: Option<SparkPodSpec>,
    #[serde(deserialize_with = "opt_map_only")]
    pub executor: Option<SparkPodSpec>,
    #[serde(deserialize_with = "opt_capped_list")]
    pub volumes: Option<Vec<Volume>>,
    /// `spec.sparkConf`: Spark properties passed to spark-submit.
    pub spark_conf: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppState {
    pub state: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SparkAppStatus {
    pub application_state: Option<AppState>,
}

/// A sparkoperator.k8s.io/v1beta2 SparkApplication (`metadata` required, as for `Pod`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SparkApplication {
    #[serde(deserialize_with = "map_only")]
    pub metadata: Meta,
    #[serde(default, deserialize_with = "map_only")]
    pub spec: SparkAppSpec,
    #[serde(default)]
    pub status: Option<SparkAppStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ScheduledSpec {
    #[serde(deserialize_with = "opt_map_only")]
    pub template: Option<SparkAppSpec>,
}

/// A sparkoperator.k8s.io/v1beta2 ScheduledSparkApplication (`metadata` required, as for
/// `Pod`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledSparkApplication {
    #[serde(deserialize_with = "map_only")]
    pub metadata: Meta,
    #[serde(default, deserialize_with = "map_only")]
    pub spec: ScheduledSpec,
}

/// A core/v1 ConfigMap: only its string data matters (spark-submit's `spark.properties`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigMap {
    pub metadata: Meta,
    pub data: Option<BTreeMap<String, String>>,
}

/// Any object, when only its metadata matters (CiliumNetworkPolicies, lookups).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MetaOnly {
    pub metadata: Meta,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_compared_not_kept_and_read_as_before() {
        // The reading before: a derived struct with the name as a `String`.
        mod before {
            #[derive(Debug, Default, serde::Deserialize)]
            #[serde(default)]
            pub struct EnvVar {
                pub name: String,
            }
        }
        use before::EnvVar as Before;
        for (text, secret) in [
            (r#"{"name":"_SPARK_AUTH_SECRET","value":"s"}"#, true),
            // An escape in the name: read owned, compared the same.
            (r#"{"name":"_SPARK_AUTH\u005fSECRET"}"#, true),
            (r#"{"name":"SPARK_USER","valueFrom":{"x":1}}"#, false),
            (r#"{}"#, false),
            (r#"["_SPARK_AUTH_SECRET"]"#, true),
        ] {
            let now: EnvVar = serde_json::from_str(text).unwrap();
            assert_eq!(now.spark_auth_secret, secret, "{text}");
            let before: Before = serde_json::from_str(text).unwrap();
            assert_eq!(before.name == SPARK_AUTH_SECRET_ENV, secret, "{text}");
            // From an owned source too.
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::from_value::<EnvVar>(value).unwrap(), now);
        }
        for text in [
            r#"{"name":5}"#,
            r#"{"name":"a","name":"b"}"#,
            r#""x""#,
            r#"{"name":null}"#,
        ] {
            assert_eq!(
                serde_json::from_str::<EnvVar>(text)
                    .unwrap_err()
                    .to_string(),
                serde_json::from_str::<Before>(text)
                    .unwrap_err()
                    .to_string(),
                "{text}"
            );
        }
    }

    #[test]
    fn a_container_list_is_read_up_to_its_limit_and_refused_past_it() {
        let spec = |n: usize| {
            let items = vec!["{}"; n].join(",");
            format!(r#"{{"containers":[{items}],"initContainers":[{{"name":"i"}}]}}"#)
        };
        let at: PodSpec = serde_json::from_str(&spec(MAX_CONTAINERS)).unwrap();
        assert_eq!(at.containers.len(), MAX_CONTAINERS);
        assert_eq!(at.init_containers.len(), 1);
        let past = serde_json::from_str::<PodSpec>(&spec(MAX_CONTAINERS + 1))
            .unwrap_err()
            .to_string();
        assert!(
            past.contains("more than 128 containers in one list"),
            "{past}"
        );
        // Still read only from JSON objects, and a list is still required to be one.
        for bad in [
            r#"{"containers":[[]]}"#,
            r#"{"containers":{}}"#,
            r#"{"containers":null}"#,
        ] {
            assert!(serde_json::from_str::<PodSpec>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_lists_are_read_up_to_their_limit_and_refused_past_it() {
        let items = |n: usize| vec!["{}"; n].join(",");
        let at = format!(
            r#"{{"containers":[{{"env":[{0}],"ports":[{0}]}}],"volumes":[{0}]}}"#,
            items(MAX_LIST_ITEMS)
        );
        let spec: PodSpec = serde_json::from_str(&at).unwrap();
        assert_eq!(spec.containers[0].env.len(), MAX_LIST_ITEMS);
        assert_eq!(spec.volumes.map(|v| v.len()), Some(MAX_LIST_ITEMS));
        for list in ["env", "ports", "volumeMounts"] {
            let past = format!(
                r#"{{"containers":[{{"{list}":[{}]}}]}}"#,
                items(MAX_LIST_ITEMS + 1)
            );
            let e = serde_json::from_str::<PodSpec>(&past)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("more than 1024 items in one list"),
                "{list}: {e}"
            );
        }
        for (field, past) in [
            (
                "volumes",
                format!(r#"{{"volumes":[{}]}}"#, items(MAX_LIST_ITEMS + 1)),
            ),
            (
                "ownerReferences",
                format!(
                    r#"{{"name":"a","ownerReferences":[{}]}}"#,
                    items(MAX_LIST_ITEMS + 1)
                ),
            ),
        ] {
            let e = if field == "volumes" {
                serde_json::from_str::<PodSpec>(&past).map(|_| ())
            } else {
                serde_json::from_str::<Meta>(&past).map(|_| ())
            };
            assert!(e.is_err(), "{field}");
        }
        // An optional list: absent and null are None, a wrong type is still an error.
        let none: PodSpec = serde_json::from_str(r#"{"volumes":null}"#).unwrap();
        assert!(none.volumes.is_none());
        assert!(serde_json::from_str::<PodSpec>(r#"{"volumes":{}}"#).is_err());
        assert!(
            serde_json::from_str::<PodSpec>("{}")
                .unwrap()
                .volumes
                .is_none()
        );
    }

    #[test]
    fn a_pod_template_is_read_loosely_within_the_list_limits() {
        let spec = |json: String| serde_json::from_str::<SparkPodSpec>(&json);
        let template = |body: &str| spec(format!(r#"{{"template":{{"spec":{body}}}}}"#));
        let items = |item: &str, n: usize| vec![item; n].join(",");
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            let at = template(&format!(
                r#"{{"{list}":[{}]}}"#,
                items("{}", MAX_CONTAINERS)
            ))
            .unwrap();
            let t = at.template.unwrap().spec.unwrap();
            let read = match list {
                "containers" => t.containers.len(),
                "initContainers" => t.init_containers.len(),
                _ => t.ephemeral_containers.len(),
            };
            assert_eq!(read, MAX_CONTAINERS, "{list}");
            let past = template(&format!(
                r#"{{"{list}":[{}]}}"#,
                items("{}", MAX_CONTAINERS + 1)
            ))
            .unwrap_err()
            .to_string();
            assert!(
                past.contains("more than 128 containers in one list"),
                "{list}: {past}"
            );
        }
        let at = template(&format!(
            r#"{{"volumes":[{}],"containers":[{{"ports":[{}]}}]}}"#,
            items(r#"{"name":"v","emptyDir":{}}"#, MAX_LIST_ITEMS),
            items("{}", MAX_LIST_ITEMS)
        ))
        .unwrap();
        let t = at.template.unwrap().spec.unwrap();
        assert_eq!(t.volumes.len(), MAX_LIST_ITEMS);
        assert_eq!(t.containers[0].ports.len(), MAX_LIST_ITEMS);
        for past in [
            format!(r#"{{"volumes":[{}]}}"#, items("{}", MAX_LIST_ITEMS + 1)),
            format!(
                r#"{{"containers":[{{"ports":[{}]}}]}}"#,
                items("{}", MAX_LIST_ITEMS + 1)
            ),
            format!(
                r#"{{"securityContext":{{"supplementalGroups":[{}]}}}}"#,
                items("1", MAX_LIST_ITEMS + 1)
            ),
        ] {
            let e = template(&past).unwrap_err().to_string();
            assert!(e.contains("more than 1024 items in one list"), "{e}");
        }
        // Inside the template, anything of another type is read as unset, not refused.
        for odd in [
            r#"[]"#,
            r#"{"containers":{},"volumes":"x","securityContext":[],"hostNetwork":"true"}"#,
            r#"{"containers":[1,[],"c",{"name":7,"image":null,"ports":{}}],"volumes":[null]}"#,
        ] {
            assert!(template(odd).is_ok(), "{odd}");
        }
        // The template itself is typed `object` by the CRD: anything else is refused, as a
        // `driver` that is not an object is. `null` is no template.
        for bad in ["5", "\"x\"", "[{}]"] {
            assert!(spec(format!(r#"{{"template":{bad}}}"#)).is_err(), "{bad}");
        }
        assert!(
            spec(r#"{"template":null}"#.into())
                .unwrap()
                .template
                .is_none()
        );
    }

    #[test]
    fn a_template_volume_or_port_of_another_shape_hides_no_other() {
        // Read as one typed list, these hid every volume and port beside them.
        let t: Template = serde_json::from_str(
            r#"{"spec":{"volumes":[{"name":1},7,{"name":"h","hostPath":{"path":"/"},"secret":"s"}],
                "containers":[{"ports":[{"hostPort":"80"},{"hostPort":99999999999},{"hostPort":80}]}]}}"#,
        )
        .unwrap();
        let spec = t.spec.unwrap();
        assert_eq!(spec.volumes[0], Volume::default());
        assert_eq!(spec.volumes[1], Volume::default());
        assert_eq!(spec.volumes[2].name, "h");
        assert_eq!(spec.volumes[2].sources, vec!["hostPath", "secret"]);
        let ports: Vec<Option<Loose<i64>>> = spec.containers[0]
            .ports
            .iter()
            .map(|p| p.host_port.clone())
            .collect();
        assert_eq!(
            ports,
            vec![
                Some(Loose::Not("\"80\"".into())),
                Some(Loose::Is(99999999999)),
                Some(Loose::Is(80))
            ]
        );
    }

    #[test]
    fn template_metadata_keeps_only_the_operator_claims() {
        let t: Template = serde_json::from_str(
            r#"{"metadata":{"name":"x","labels":{"team":"a","sparkoperator.k8s.io/app-name":"other",
                "sparkoperator.k8s.io/x":[1,{"a":null}]},"annotations":{"a":"b"}}}"#,
        )
        .unwrap();
        let meta = t.metadata.unwrap();
        let labels: Vec<(&str, &str)> = meta
            .operator_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("sparkoperator.k8s.io/app-name", "\"other\""),
                ("sparkoperator.k8s.io/x", r#"[1,{"a":null}]"#)
            ]
        );
        assert!(!meta.owner_references_set);
        let t: Template =
            serde_json::from_str(r#"{"metadata":{"ownerReferences":null,"labels":[]}}"#).unwrap();
        let meta = t.metadata.unwrap();
        assert!(meta.owner_references_set && meta.operator_labels.is_empty());
    }

    #[test]
    fn volume_records_its_source_kinds() {
        let v: Volume =
            serde_json::from_str(r#"{"name":"a","hostPath":{"path":"/etc"},"emptyDir":null}"#)
                .unwrap();
        assert_eq!(v.name, "a");
        assert_eq!(v.sources, vec!["hostPath".to_string()]);
    }

    #[test]
    fn objects_and_their_metadata_and_spec_are_read_only_from_json_objects() {
        let pod = r#"{"metadata":{"name":"x"},"spec":{"containers":[]}}"#;
        assert!(serde_json::from_str::<ObjectOnly<Pod>>(pod).is_ok());
        // serde's derived structs would take these arrays field by field.
        for bad in [
            format!("[{pod}]"),
            r#"{"metadata":[{"name":"x"}],"spec":{}}"#.to_string(),
            r#"{"metadata":{"name":"x"},"spec":[null,[]]}"#.to_string(),
        ] {
            assert!(
                serde_json::from_str::<ObjectOnly<Pod>>(&bad).is_err(),
                "{bad}"
            );
        }
        let app = r#"{"metadata":{"name":"a"},"spec":[{"image":"x"}]}"#;
        assert!(serde_json::from_str::<ObjectOnly<SparkApplication>>(app).is_err());
        assert!(serde_json::from_str::<ObjectOnly<Pod>>(r#"{"metadata":{}}"#).is_err());
        let schedule = r#"{"metadata":{"name":"s"},"spec":[{}]}"#;
        assert!(serde_json::from_str::<ObjectOnly<ScheduledSparkApplication>>(schedule).is_err());
    }

    #[test]
    fn pod_view_distinguishes_missing_and_empty_maps() {
        let p: Pod = serde_json::from_str(r#"{"metadata":{"name":"x"},"spec":{}}"#).unwrap();
        assert!(p.metadata.labels.is_none());
        let p: Pod =
            serde_json::from_str(r#"{"metadata":{"labels":{}},"spec":{"containers":[]}}"#).unwrap();
        assert_eq!(p.metadata.labels, Some(BTreeMap::new()));
    }
}
