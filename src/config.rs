//! The configuration file: its YAML shape (`FileConfig`, exactly the keys of DESIGN.md, unknown
//! keys rejected with their line) and the validated form the rest of the program uses (`Config`).
//!
//! Invariants of a `Config`: durations are positive, the algorithm allow-list holds only asymmetric
//! algorithms, exactly one JWKS source is set, every scope rule passed the Cilium lint, and the
//! hardening ids (configured and `allowedIds`) are all non-root. A `Config` is immutable; hot
//! reload swaps a whole new one in (see `app.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::cilium;
use crate::core::images::{ImagePolicy, ImagePrefix};

/// Errors from reading or validating a configuration file.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("failed to read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config is not valid YAML for sparkward: {0}")]
    Parse(String),
    #[error("config field {field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A duration written the way Kubernetes users write them: `500ms`, `30s`, `5m`, `1h`, or
/// combinations such as `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(text: &str) -> Result<Duration, String> {
        let s = text.trim();
        if s.is_empty() {
            return Err("empty duration".into());
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
                format!("'{text}' has a number without a unit (use ms, s, m or h)")
            })?;
            if digits == 0 {
                return Err(format!("'{text}' is not a duration like 30s, 5m or 1h"));
            }
            let value: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("'{text}' has a number that is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let part = match unit {
                "ms" => Duration::from_millis(value),
                "s" => Duration::from_secs(value),
                "m" => Duration::from_secs(value.saturating_mul(60)),
                "h" => Duration::from_secs(value.saturating_mul(3600)),
                other => {
                    return Err(format!(
                        "'{text}' has unknown unit '{other}' (use ms, s, m or h)"
                    ));
                }
            };
            total = total.saturating_add(part);
        }
        Ok(total)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        HumanDuration::parse(&text)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

fn dur(secs: u64) -> HumanDuration {
    HumanDuration(Duration::from_secs(secs))
}

// ---------------------------------------------------------------------------------------------
// The file format.
// ---------------------------------------------------------------------------------------------

/// The YAML document as written by the security team.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileConfig {
    pub identity: Option<FileIdentity>,
    #[serde(default)]
    pub hardening: FileHardening,
    #[serde(default)]
    pub policy: FilePolicy,
    #[serde(default)]
    pub lifecycle: FileLifecycle,
    #[serde(default)]
    pub server: FileServer,
    #[serde(default)]
    pub audit: FileAudit,
    #[serde(default)]
    pub stamp: FileStamp,
    #[serde(default)]
    pub spark: FileSpark,
}

/// `spark:`: the Spark security profiles (RPC authentication with a per-job secret, encryption,
/// UI ACLs, further enforced properties), chosen per namespace by a label.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileSpark {
    #[serde(default = "default_profile_label")]
    pub profile_label: String,
    #[serde(default = "default_profile_name")]
    pub default_profile: String,
    #[serde(default)]
    pub profiles: BTreeMap<String, FileSparkProfile>,
}

impl Default for FileSpark {
    fn default() -> Self {
        Self {
            profile_label: default_profile_label(),
            default_profile: default_profile_name(),
            profiles: BTreeMap::new(),
        }
    }
}

fn default_profile_label() -> String {
    "sparkward.io/spark-profile".into()
}
fn default_profile_name() -> String {
    "default".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileSparkProfile {
    /// A per-job RPC authentication secret, mounted as a file (implies `spark.authenticate`).
    #[serde(default)]
    pub rpc_secret: bool,
    /// Spark properties every job must have, with exactly these values.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Spark UI ACLs: view and modify for the submitter, admin for these groups.
    #[serde(default)]
    pub ui_acls: Option<FileUiAcls>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileUiAcls {
    #[serde(default)]
    pub admin_groups: Vec<String>,
}

/// `stamp:`: the key shared by all replicas that authenticates sparkward's admission stamp
/// (see `core::stamp`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileStamp {
    /// One `id:base64key` per line, the first signs; mounted from the Secret
    /// `sparkward-stamp-keys` in a cluster. Local mode generates one beside its certificates.
    #[serde(default = "default_stamp_key_file")]
    pub key_file: PathBuf,
    /// How long a stamp made by the mutating webhook is accepted by later webhook calls of the
    /// same request.
    #[serde(default = "default_stamp_validity")]
    pub validity: HumanDuration,
}

impl Default for FileStamp {
    fn default() -> Self {
        Self {
            key_file: default_stamp_key_file(),
            validity: default_stamp_validity(),
        }
    }
}

/// Where the Deployment in deploy/ mounts the Secret `sparkward-stamp-keys`.
pub const DEFAULT_STAMP_KEY_FILE: &str = "/etc/sparkward/stamp/keys";

fn default_stamp_key_file() -> PathBuf {
    PathBuf::from(DEFAULT_STAMP_KEY_FILE)
}
fn default_stamp_validity() -> HumanDuration {
    dur(60)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileIdentity {
    #[serde(default = "default_annotation")]
    pub annotation: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks: FileJwks,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default = "default_leeway")]
    pub leeway: HumanDuration,
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    #[serde(default)]
    pub requester_binding: FileRequesterBinding,
    #[serde(default)]
    pub trusted_creators: FileTrustedCreators,
    #[serde(default)]
    pub job_admins: FileJobAdmins,
    /// Take the job identity from the API server's own OIDC login (opt-in per namespace).
    #[serde(default)]
    pub requester_identity: Option<FileRequesterIdentity>,
    /// Group (without the groups prefix) → scopes, for `requesterIdentity`.
    #[serde(default)]
    pub group_scopes: BTreeMap<String, Vec<String>>,
    /// Kubernetes' own controllers that change or delete job objects as part of their work
    /// (metadata, status, delete; never spec or exec).
    #[serde(default = "default_kubernetes_controllers")]
    pub kubernetes_controllers: Vec<String>,
    /// Who may evict any job's pods (node drains, the cluster autoscaler).
    #[serde(default = "default_evictors")]
    pub evictors: FileJobAdmins,
}

/// Node maintenance: cluster administrators (`system:masters`, who bypass RBAC anyway) and
/// the cluster autoscaler evict pods to drain nodes.
fn default_evictors() -> FileJobAdmins {
    FileJobAdmins {
        users: vec!["system:serviceaccount:kube-system:cluster-autoscaler".into()],
        groups: vec!["system:masters".into()],
    }
}

/// `identity.requesterIdentity`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileRequesterIdentity {
    pub namespaces: Vec<String>,
    pub username_prefix: String,
    #[serde(default)]
    pub groups_prefix: String,
}

/// The identities of kube-controller-manager's controllers that touch pods and custom
/// resources: with per-controller service accounts (`--use-service-account-credentials`, the
/// kubeadm default) and without (`system:kube-controller-manager`).
fn default_kubernetes_controllers() -> Vec<String> {
    [
        "system:serviceaccount:kube-system:generic-garbage-collector",
        "system:serviceaccount:kube-system:namespace-controller",
        "system:serviceaccount:kube-system:pod-garbage-collector",
        "system:serviceaccount:kube-system:node-controller",
        "system:kube-controller-manager",
        // Unschedulable conditions (pods/status) and preemption (delete).
        "system:kube-scheduler",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

fn default_annotation() -> String {
    crate::core::labels::TOKEN_ANNOTATION.to_string()
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}
fn default_leeway() -> HumanDuration {
    dur(30)
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_scope_claim() -> String {
    "scope".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileJwks {
    pub url: Option<String>,
    pub file: Option<PathBuf>,
    #[serde(default = "default_jwks_refresh")]
    pub refresh: HumanDuration,
    /// Extra CA certificates (PEM) trusted for the JWKS URL, for identity providers behind a
    /// private CA. The public web PKI roots are always trusted.
    pub ca_file: Option<PathBuf>,
}

fn default_jwks_refresh() -> HumanDuration {
    dur(300)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileRequesterBinding {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub username_prefix: String,
}

impl Default for FileRequesterBinding {
    fn default() -> Self {
        Self {
            enabled: true,
            username_prefix: String::new(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileTrustedCreators {
    #[serde(default = "default_spark_operator")]
    pub spark_operator: Vec<String>,
}

impl Default for FileTrustedCreators {
    fn default() -> Self {
        Self {
            spark_operator: default_spark_operator(),
        }
    }
}

/// spark-operator's controller, which runs spark-submit (creating driver pods) and creates the
/// runs of ScheduledSparkApplications. (`spark-operator-spark`, in DESIGN.md's example, is the
/// service account the Helm chart gives Spark jobs themselves; trusting it would let every
/// driver act as the operator.)
fn default_spark_operator() -> Vec<String> {
    vec!["system:serviceaccount:spark-operator:spark-operator-controller".into()]
}

/// `identity.jobAdmins`: the people who administer jobs beyond their own.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileJobAdmins {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileHardening {
    #[serde(default = "default_uid")]
    pub run_as_user: i64,
    #[serde(default = "default_uid")]
    pub run_as_group: i64,
    #[serde(default = "default_uid")]
    pub fs_group: i64,
    #[serde(default = "default_writable_dirs")]
    pub writable_dirs: Vec<String>,
    /// UIDs/GIDs a pod may set explicitly besides the configured ones.
    #[serde(default, deserialize_with = "id_ranges")]
    pub allowed_ids: Vec<FileIdRange>,
    /// Approved registries and repositories, and digest pinning.
    #[serde(default)]
    pub images: FileImages,
}

/// `hardening.images`: by default (nothing allowed listed, no digest required) no image is
/// restricted.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileImages {
    /// Prefixes: a registry or path ending in `/`, or one repository (see `core::images`).
    #[serde(default)]
    pub allowed: Vec<String>,
    #[serde(default)]
    pub require_digest: bool,
}

impl Default for FileHardening {
    fn default() -> Self {
        Self {
            run_as_user: default_uid(),
            run_as_group: default_uid(),
            fs_group: default_uid(),
            writable_dirs: default_writable_dirs(),
            allowed_ids: Vec::new(),
            images: FileImages::default(),
        }
    }
}

/// One entry of `hardening.allowedIds`: `{min: 1000, max: 1999}`, or `{min: 100, max: 100}` for
/// a single id. Both bounds are required, so an entry never means "everything".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileIdRange {
    pub min: i64,
    pub max: i64,
}

/// What an `allowedIds` entry must look like, for the error on anything that is not a mapping
/// (the YAML parser's own "expected mapping start" does not say it).
const ID_RANGE_SHAPE: &str = "each hardening.allowedIds entry is a range such as \
                              {min: 1000, max: 1999}; write a single id as {min: 100, max: 100}";

/// `hardening.allowedIds`: a list of `FileIdRange`, with a clear error for a bare id.
fn id_ranges<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<FileIdRange>, D::Error> {
    /// One entry: a mapping goes to `FileIdRange`'s derived (strict) parser, anything else is
    /// refused with `ID_RANGE_SHAPE`.
    struct Entry(FileIdRange);

    impl<'de> Deserialize<'de> for Entry {
        fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Entry;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str(ID_RANGE_SHAPE)
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    map: A,
                ) -> Result<Entry, A::Error> {
                    FileIdRange::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                        .map(Entry)
                }
                fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Entry, E> {
                    Err(E::custom(ID_RANGE_SHAPE))
                }
                fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Entry, E> {
                    Err(E::custom(ID_RANGE_SHAPE))
                }
                fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Entry, E> {
                    Err(E::custom(ID_RANGE_SHAPE))
                }
            }
            de.deserialize_any(V)
        }
    }

    let entries = Vec::<Entry>::deserialize(de)?;
    Ok(entries.into_iter().map(|e| e.0).collect())
}

fn default_uid() -> i64 {
    185
}
fn default_writable_dirs() -> Vec<String> {
    vec!["/tmp".into(), "/opt/spark/work-dir".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FilePolicy {
    #[serde(default)]
    pub dns: FileDns,
    #[serde(default = "yes")]
    pub driver_to_api_server: bool,
    #[serde(default)]
    pub unknown_scopes: UnknownScopes,
    #[serde(default = "default_apply_timeout")]
    pub apply_timeout: HumanDuration,
    #[serde(default = "default_managers")]
    pub managers: Vec<String>,
    /// The cluster's DNS domain (the kubelet's `clusterDomain`): names below it are answered
    /// by the cluster DNS and stay resolvable for every job.
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: String,
    /// DNS selectors every job may resolve besides the cluster's own names and the `toFQDNs`
    /// of its scopes, kept verbatim (validated like `toFQDNs` entries at load time).
    #[serde(default)]
    pub dns_allow: Vec<serde_json::Value>,
    /// scope → Cilium egress rules, kept verbatim (validated by the lint at load time).
    #[serde(default)]
    pub scopes: BTreeMap<String, Vec<serde_json::Value>>,
}

impl Default for FilePolicy {
    fn default() -> Self {
        Self {
            dns: FileDns::default(),
            driver_to_api_server: true,
            unknown_scopes: UnknownScopes::default(),
            apply_timeout: default_apply_timeout(),
            managers: default_managers(),
            cluster_domain: default_cluster_domain(),
            dns_allow: Vec::new(),
            scopes: BTreeMap::new(),
        }
    }
}

fn default_cluster_domain() -> String {
    "cluster.local".into()
}
fn default_apply_timeout() -> HumanDuration {
    dur(5)
}
fn default_managers() -> Vec<String> {
    vec![
        "system:serviceaccount:sparkward-system:sparkward".into(),
        "system:serviceaccount:kube-system:generic-garbage-collector".into(),
        "system:serviceaccount:kube-system:namespace-controller".into(),
    ]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileDns {
    #[serde(default = "default_dns_namespace")]
    pub namespace: String,
    #[serde(default = "default_dns_labels")]
    pub match_labels: BTreeMap<String, String>,
}

impl Default for FileDns {
    fn default() -> Self {
        Self {
            namespace: default_dns_namespace(),
            match_labels: default_dns_labels(),
        }
    }
}

fn default_dns_namespace() -> String {
    "kube-system".into()
}
fn default_dns_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("k8s-app".to_string(), "kube-dns".to_string())])
}

/// What to do with a granted scope that the mapping does not know.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnknownScopes {
    /// Leave the scope out of the policy and warn the kubectl user.
    #[default]
    Ignore,
    /// Deny the admission.
    Deny,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileLifecycle {
    #[serde(default = "default_end_grace")]
    pub end_grace: HumanDuration,
    #[serde(default = "default_orphan_grace")]
    pub orphan_grace: HumanDuration,
    #[serde(default)]
    pub lease: FileLease,
}

impl Default for FileLifecycle {
    fn default() -> Self {
        Self {
            end_grace: default_end_grace(),
            orphan_grace: default_orphan_grace(),
            lease: FileLease::default(),
        }
    }
}

fn default_end_grace() -> HumanDuration {
    dur(60)
}
fn default_orphan_grace() -> HumanDuration {
    dur(300)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileLease {
    #[serde(default = "default_lease_name")]
    pub name: String,
    #[serde(default = "default_lease_namespace")]
    pub namespace: String,
    #[serde(default = "default_lease_duration")]
    pub duration: HumanDuration,
}

impl Default for FileLease {
    fn default() -> Self {
        Self {
            name: default_lease_name(),
            namespace: default_lease_namespace(),
            duration: default_lease_duration(),
        }
    }
}

fn default_lease_name() -> String {
    "sparkward-lifecycle".into()
}
fn default_lease_namespace() -> String {
    "sparkward-system".into()
}
fn default_lease_duration() -> HumanDuration {
    dur(15)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileServer {
    #[serde(default = "default_review_deadline")]
    pub review_deadline: HumanDuration,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long a client may take to send request headers and body.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: HumanDuration,
    /// How long graceful shutdown waits for in-flight reviews.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: HumanDuration,
    /// How long a connection may stay open with no request in flight once it has served one.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Connections the webhook port holds at once; further clients wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The memory the requests in flight may hold together, counted from their heads and
    /// bodies (`server::service::MemoryBudget`).
    #[serde(default = "default_max_memory_in_flight")]
    pub max_memory_in_flight: usize,
}

impl Default for FileServer {
    fn default() -> Self {
        Self {
            review_deadline: default_review_deadline(),
            max_body_bytes: default_max_body(),
            read_timeout: default_read_timeout(),
            drain_timeout: default_drain_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
            max_memory_in_flight: default_max_memory_in_flight(),
        }
    }
}

fn default_review_deadline() -> HumanDuration {
    dur(8)
}
fn default_max_body() -> usize {
    4 * 1024 * 1024
}
fn default_read_timeout() -> HumanDuration {
    dur(10)
}
fn default_drain_timeout() -> HumanDuration {
    dur(25)
}
fn default_idle_timeout() -> HumanDuration {
    dur(90)
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_memory_in_flight() -> usize {
    256 * 1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileAudit {
    #[serde(default = "default_audit_output")]
    pub output: String,
}

impl Default for FileAudit {
    fn default() -> Self {
        Self {
            output: default_audit_output(),
        }
    }
}

fn default_audit_output() -> String {
    "stdout".into()
}

// ---------------------------------------------------------------------------------------------
// The validated form.
// ---------------------------------------------------------------------------------------------

/// Signature algorithms sparkward accepts in an allow-list. HMAC and `none` are not
/// representable: a public key must never be used as a shared secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Algorithm {
    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "RS256" => Self::RS256,
            "RS384" => Self::RS384,
            "RS512" => Self::RS512,
            "PS256" => Self::PS256,
            "PS384" => Self::PS384,
            "PS512" => Self::PS512,
            "ES256" => Self::ES256,
            "ES384" => Self::ES384,
            "EdDSA" => Self::EdDSA,
            "none" | "None" | "NONE" => {
                return Err("'none' would accept unsigned tokens and is never allowed".into());
            }
            hs if hs.starts_with("HS") => {
                return Err(format!(
                    "'{hs}' is an HMAC algorithm: verifying it with a public key lets anyone who \
                     has the public key forge tokens; use an asymmetric algorithm"
                ));
            }
            other => {
                return Err(format!(
                    "unknown algorithm '{other}' (allowed: RS256, RS384, RS512, PS256, PS384, \
                     PS512, ES256, ES384, EdDSA)"
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }
}

/// Where the JSON Web Key Set comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum JwksSource {
    Url {
        url: String,
        refresh: Duration,
        ca_file: Option<PathBuf>,
    },
    File {
        path: PathBuf,
        refresh: Duration,
    },
}

impl JwksSource {
    pub fn refresh(&self) -> Duration {
        match self {
            JwksSource::Url { refresh, .. } | JwksSource::File { refresh, .. } => *refresh,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IdentityConfig {
    pub annotation: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub subject_claim: String,
    pub scope_claim: String,
    pub requester_binding: Option<RequesterBinding>,
    pub spark_operator: Vec<String>,
    pub job_admins: JobAdmins,
    pub kubernetes_controllers: Vec<String>,
    /// Users and groups that may evict any job's pods (not change or enter them).
    pub evictors: JobAdmins,
    /// Identity from the API server's OIDC login, where enabled.
    pub requester_identity: Option<RequesterIdentity>,
}

/// Jobs in `namespaces` submitted without a token take their identity from the requesting
/// user, as the API server's OIDC authenticator named it: subject = username without
/// `username_prefix`, scopes = `group_scopes` of the user's groups (without `groups_prefix`).
#[derive(Debug, Clone, PartialEq)]
pub struct RequesterIdentity {
    pub namespaces: Vec<String>,
    pub username_prefix: String,
    pub groups_prefix: String,
    pub group_scopes: BTreeMap<String, Vec<String>>,
}

/// The job administrators (`identity.jobAdmins`): users, and members of groups, who
/// administer jobs that are not their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobAdmins {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl JobAdmins {
    /// Whether the requester (`userInfo.username` and `userInfo.groups`) is a job admin.
    pub fn contains(&self, username: &str, groups: &[String]) -> bool {
        self.users.iter().any(|u| u == username) || self.groups.iter().any(|g| groups.contains(g))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequesterBinding {
    pub username_prefix: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HardeningConfig {
    pub run_as_user: i64,
    pub run_as_group: i64,
    pub fs_group: i64,
    pub writable_dirs: Vec<String>,
    /// Further UIDs/GIDs a pod may set explicitly (validated: non-empty, never 0).
    pub allowed_ids: Vec<IdRange>,
    /// `hardening.images`: inactive (no image checked) unless configured.
    pub images: ImagePolicy,
}

/// The largest UID/GID the Kubernetes API accepts in a security context (2^31 - 1).
pub const MAX_ID: i64 = i32::MAX as i64;

/// An inclusive, non-empty range of non-root ids (`min >= 1`, `min <= max <= MAX_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub min: i64,
    pub max: i64,
}

impl IdRange {
    pub fn contains(&self, id: i64) -> bool {
        (self.min..=self.max).contains(&id)
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// Checks one `hardening.allowedIds` entry.
fn id_range(i: usize, r: &FileIdRange) -> Result<IdRange, ConfigError> {
    let field = format!("hardening.allowedIds[{i}]");
    if r.min <= 0 {
        return Err(invalid(
            field,
            format!(
                "min is {}: ids start at 1 (0 is root, which is never allowed)",
                r.min
            ),
        ));
    }
    if r.min > r.max {
        return Err(invalid(
            field,
            format!(
                "min {} is greater than max {}: the range is empty (for one id write the same \
                 number twice)",
                r.min, r.max
            ),
        ));
    }
    if r.max > MAX_ID {
        return Err(invalid(
            field,
            format!(
                "max {} is above {MAX_ID}, the largest id Kubernetes accepts",
                r.max
            ),
        ));
    }
    Ok(IdRange {
        min: r.min,
        max: r.max,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub dns_namespace: String,
    pub dns_match_labels: BTreeMap<String, String>,
    pub driver_to_api_server: bool,
    pub unknown_scopes: UnknownScopes,
    pub apply_timeout: Duration,
    pub managers: Vec<String>,
    /// The cluster's DNS domain, lower case, without a trailing dot.
    pub cluster_domain: String,
    /// `policy.dnsAllow`, parsed and linted when the configuration loaded.
    pub dns_allow: Vec<cilium::FqdnSelector>,
    /// scope → egress rules, parsed and linted when the configuration loaded.
    pub scopes: BTreeMap<String, Vec<cilium::EgressRule>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleConfig {
    pub end_grace: Duration,
    pub orphan_grace: Duration,
    pub lease_name: String,
    pub lease_namespace: String,
    pub lease_duration: Duration,
}

/// What a review is counted as holding against `server.maxMemoryInFlight`, from its start to its
/// answer (while its request is read, it counts what has arrived): a fixed part for the review's
/// own working set and a part per byte of body. Together they are the bound the fuzzer holds
/// every review to (the most heap one review held at once, tests/fuzz.rs), so the count is
/// never less than what the reviews hold, for every input known: ordinary reviews hold 1.4 to 23
/// times their body, lists of empty objects up to about 40 times.
pub const MEMORY_PER_REQUEST: usize = 64 * 1024;
pub const MEMORY_PER_BODY_BYTE: usize = 48;

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub review_deadline: Duration,
    pub max_body_bytes: usize,
    pub read_timeout: Duration,
    pub drain_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_memory_in_flight: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StampConfig {
    pub key_file: PathBuf,
    pub validity: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AuditOutput {
    Stdout,
    File(PathBuf),
}

/// The Spark security profiles (see `FileSpark`).
#[derive(Debug, Clone, PartialEq)]
pub struct SparkConfig {
    /// The namespace label whose value names a namespace's profile.
    pub profile_label: String,
    /// The profile of namespaces without the label.
    pub default_profile: String,
    pub profiles: BTreeMap<String, SparkProfile>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SparkProfile {
    pub rpc_secret: bool,
    pub settings: BTreeMap<String, String>,
    /// UI ACLs with these admin groups, when enabled.
    pub ui_acls: Option<Vec<String>>,
}

/// The profile used when the configuration defines none named `default`: the per-job RPC
/// secret, authenticated and encrypted RPC, encrypted local storage.
pub fn builtin_default_profile() -> SparkProfile {
    SparkProfile {
        rpc_secret: true,
        settings: BTreeMap::from([
            ("spark.authenticate".to_string(), "true".to_string()),
            (
                "spark.network.crypto.enabled".to_string(),
                "true".to_string(),
            ),
            (
                "spark.io.encryption.enabled".to_string(),
                "true".to_string(),
            ),
        ]),
        ui_acls: None,
    }
}

/// Properties a profile may not list: sparkward owns them (the secret file) or they would put
/// a secret into the job's spec.
const SPARK_RESERVED: &[&str] = &[
    "spark.authenticate.secret",
    "spark.authenticate.secret.file",
    "spark.authenticate.secret.driver.file",
    "spark.authenticate.secret.executor.file",
];

impl SparkConfig {
    fn try_from_file(f: FileSpark) -> Result<Self, ConfigError> {
        if !crate::core::labels::is_label_key(&f.profile_label) {
            return Err(invalid(
                "spark.profileLabel",
                format!("'{}' is not a label key", f.profile_label),
            ));
        }
        let mut profiles = BTreeMap::new();
        profiles.insert("default".to_string(), builtin_default_profile());
        for (name, p) in f.profiles {
            let field = format!("spark.profiles[\"{name}\"]");
            if name.is_empty() || !crate::core::labels::is_label_value(&name) {
                return Err(invalid(
                    field,
                    "profile names must be label values (they are chosen by a namespace label)",
                ));
            }
            for (key, value) in &p.settings {
                if !key.starts_with("spark.") || key.contains(char::is_whitespace) {
                    return Err(invalid(
                        format!("{field}.settings[\"{key}\"]"),
                        "must be a Spark property (spark.*, no spaces)",
                    ));
                }
                if SPARK_RESERVED.contains(&key.as_str()) {
                    return Err(invalid(
                        format!("{field}.settings[\"{key}\"]"),
                        "is sparkward's to set (rpcSecret: true mounts the job's own secret); \
                         a secret value in the settings would be stored in every job's spec",
                    ));
                }
                if value.contains('\n') {
                    return Err(invalid(
                        format!("{field}.settings[\"{key}\"]"),
                        "must be one line",
                    ));
                }
            }
            let auth = p.settings.get("spark.authenticate").map(String::as_str);
            if p.rpc_secret && auth == Some("false") {
                return Err(invalid(
                    format!("{field}.settings[\"spark.authenticate\"]"),
                    "is false, but rpcSecret needs RPC authentication",
                ));
            }
            if p.settings
                .get("spark.network.crypto.enabled")
                .map(String::as_str)
                == Some("true")
                && !(p.rpc_secret || auth == Some("true"))
            {
                return Err(invalid(
                    field,
                    "spark.network.crypto.enabled needs spark.authenticate (set rpcSecret: true)",
                ));
            }
            if let Some(acls) = &p.ui_acls
                && acls
                    .admin_groups
                    .iter()
                    .any(|g| g.trim().is_empty() || g.contains(','))
            {
                return Err(invalid(
                    format!("{field}.uiAcls.adminGroups"),
                    "group names must be non-empty and contain no commas",
                ));
            }
            profiles.insert(
                name,
                SparkProfile {
                    rpc_secret: p.rpc_secret,
                    settings: p.settings,
                    ui_acls: p.ui_acls.map(|a| a.admin_groups),
                },
            );
        }
        if !profiles.contains_key(&f.default_profile) {
            return Err(invalid(
                "spark.defaultProfile",
                format!(
                    "names profile '{}', which is not defined",
                    f.default_profile
                ),
            ));
        }
        Ok(Self {
            profile_label: f.profile_label,
            default_profile: f.default_profile,
            profiles,
        })
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `None` only when the file has no `identity:` section; every review that needs a token is
    /// then denied with a message saying identity is not configured.
    pub identity: Option<IdentityConfig>,
    pub hardening: HardeningConfig,
    pub policy: PolicyConfig,
    pub lifecycle: LifecycleConfig,
    pub server: ServerConfig,
    pub audit: AuditOutput,
    pub stamp: StampConfig,
    pub spark: SparkConfig,
}

impl Default for Config {
    fn default() -> Self {
        // The empty file is valid: defaults everywhere, no identity provider.
        #[allow(clippy::expect_used)]
        Config::try_from(FileConfig::default()).expect("the default config is valid")
    }
}

impl Config {
    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let file: FileConfig = if text.trim().is_empty() {
            FileConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?
        };
        Config::try_from(file)
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_yaml(&text)
    }
}

fn positive(field: &str, d: HumanDuration) -> Result<Duration, ConfigError> {
    if d.0.is_zero() {
        return Err(invalid(field, "must be greater than zero"));
    }
    Ok(d.0)
}

impl TryFrom<FileIdentity> for IdentityConfig {
    type Error = ConfigError;

    fn try_from(f: FileIdentity) -> Result<Self, ConfigError> {
        if f.annotation.trim().is_empty() {
            return Err(invalid("identity.annotation", "must not be empty"));
        }
        if f.issuer.trim().is_empty() {
            return Err(invalid("identity.issuer", "must not be empty"));
        }
        if f.audiences.is_empty() || f.audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(invalid(
                "identity.audiences",
                "list at least one non-empty audience",
            ));
        }
        let refresh = positive("identity.jwks.refresh", f.jwks.refresh)?;
        let jwks = match (f.jwks.url, f.jwks.file) {
            (Some(url), None) => {
                if !url.starts_with("https://") {
                    return Err(invalid(
                        "identity.jwks.url",
                        format!(
                            "'{url}' must be an https:// URL (keys fetched in clear text can be swapped)"
                        ),
                    ));
                }
                JwksSource::Url {
                    url,
                    refresh,
                    ca_file: f.jwks.ca_file,
                }
            }
            (None, Some(path)) => {
                if f.jwks.ca_file.is_some() {
                    return Err(invalid(
                        "identity.jwks.caFile",
                        "only applies to a jwks url",
                    ));
                }
                JwksSource::File { path, refresh }
            }
            (Some(_), Some(_)) => {
                return Err(invalid("identity.jwks", "set either url or file, not both"));
            }
            (None, None) => return Err(invalid("identity.jwks", "set url or file")),
        };
        if f.algorithms.is_empty() {
            return Err(invalid(
                "identity.algorithms",
                "list at least one algorithm",
            ));
        }
        let mut algorithms = Vec::with_capacity(f.algorithms.len());
        for name in &f.algorithms {
            let alg = Algorithm::parse(name).map_err(|e| invalid("identity.algorithms", e))?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        if f.subject_claim.trim().is_empty() {
            return Err(invalid("identity.subjectClaim", "must not be empty"));
        }
        if f.scope_claim.trim().is_empty() {
            return Err(invalid("identity.scopeClaim", "must not be empty"));
        }
        if f.kubernetes_controllers.iter().any(|e| e.trim().is_empty()) {
            return Err(invalid(
                "identity.kubernetesControllers",
                "entries must not be empty",
            ));
        }
        let requester_identity = match f.requester_identity {
            None if !f.group_scopes.is_empty() => {
                return Err(invalid(
                    "identity.groupScopes",
                    "only applies with identity.requesterIdentity",
                ));
            }
            None => None,
            Some(r) => {
                if r.username_prefix.trim().is_empty() {
                    return Err(invalid(
                        "identity.requesterIdentity.usernamePrefix",
                        "must be the API server's --oidc-username-prefix (non-empty): without it \
                         any user, service account or certificate name would pass for an OIDC \
                         login",
                    ));
                }
                if r.namespaces.is_empty() || r.namespaces.iter().any(|n| n.trim().is_empty()) {
                    return Err(invalid(
                        "identity.requesterIdentity.namespaces",
                        "list the namespaces that opt in (non-empty names)",
                    ));
                }
                for (group, scopes) in &f.group_scopes {
                    if group.is_empty() || scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
                        return Err(invalid(
                            format!("identity.groupScopes[\"{group}\"]"),
                            "groups and scopes must be non-empty, scopes without spaces",
                        ));
                    }
                }
                Some(RequesterIdentity {
                    namespaces: r.namespaces,
                    username_prefix: r.username_prefix,
                    groups_prefix: r.groups_prefix,
                    group_scopes: f.group_scopes,
                })
            }
        };
        Ok(IdentityConfig {
            annotation: f.annotation,
            issuer: f.issuer,
            audiences: f.audiences,
            jwks,
            algorithms,
            leeway: f.leeway.0,
            subject_claim: f.subject_claim,
            scope_claim: f.scope_claim,
            requester_binding: f.requester_binding.enabled.then_some(RequesterBinding {
                username_prefix: f.requester_binding.username_prefix,
            }),
            spark_operator: f.trusted_creators.spark_operator,
            job_admins: checked_principals(
                f.job_admins,
                "identity.jobAdmins",
                "job administrators",
            )?,
            kubernetes_controllers: f.kubernetes_controllers,
            evictors: checked_principals(f.evictors, "identity.evictors", "evictors")?,
            requester_identity,
        })
    }
}

/// Groups that every user, or every workload, belongs to: naming one as job admins would make
/// everyone (or every Spark driver) an administrator of every job.
const EVERYONE_GROUPS: [&str; 3] = [
    "system:authenticated",
    "system:unauthenticated",
    "system:serviceaccounts",
];

fn checked_principals(f: FileJobAdmins, key: &str, who: &str) -> Result<JobAdmins, ConfigError> {
    let users_key = format!("{key}.users");
    if f.users.iter().any(|u| u.trim().is_empty()) {
        return Err(invalid(users_key, "names must not be empty"));
    }
    if f.users.iter().any(|u| u == "system:anonymous") {
        return Err(invalid(
            &users_key,
            format!("system:anonymous is every unauthenticated request; name the {who}"),
        ));
    }
    for group in &f.groups {
        // `system:serviceaccounts:<ns>` holds every service account of a namespace, the Spark
        // drivers' included.
        let everyone = EVERYONE_GROUPS.contains(&group.as_str())
            || group.starts_with("system:serviceaccounts:");
        if group.trim().is_empty() || everyone {
            return Err(invalid(
                format!("{key}.groups"),
                format!(
                    "'{group}' cannot name {who}: it is empty or a group every user or every \
                     service account (Spark drivers included) belongs to; name a group of people \
                     from your identity provider"
                ),
            ));
        }
    }
    Ok(JobAdmins {
        users: f.users,
        groups: f.groups,
    })
}

/// `policy.clusterDomain` in the form the DNS patterns are built from: lower case, no trailing
/// dot, a plain DNS name short enough for the deepest pattern (`core::policy`) to stay within
/// Cilium's 255 characters.
fn checked_cluster_domain(text: &str) -> Result<String, ConfigError> {
    let domain = text.trim();
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    if cilium::lint_fqdn_selector(&cilium::FqdnSelector::name(&domain)).is_err() {
        return Err(invalid(
            "policy.clusterDomain",
            format!("'{text}' is not a DNS name such as cluster.local"),
        ));
    }
    let patterns = crate::core::policy::cluster_dns_selectors(&domain);
    if patterns
        .iter()
        .any(|p| cilium::lint_fqdn_selector(p).is_err())
    {
        return Err(invalid(
            "policy.clusterDomain",
            format!("'{text}' is too long for the DNS patterns built from it"),
        ));
    }
    Ok(domain)
}

/// `hardening.images`: every allowed prefix parsed (see `core::images::ImagePrefix`).
fn checked_images(f: &FileImages) -> Result<ImagePolicy, ConfigError> {
    let allowed = f
        .allowed
        .iter()
        .enumerate()
        .map(|(i, text)| {
            ImagePrefix::parse(text)
                .map_err(|e| invalid(format!("hardening.images.allowed[{i}]"), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ImagePolicy {
        allowed,
        require_digest: f.require_digest,
    })
}

fn checked_dns_allow(
    entries: &[serde_json::Value],
) -> Result<Vec<cilium::FqdnSelector>, ConfigError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let field = format!("policy.dnsAllow[{i}]");
            let selector = cilium::checked_fqdn_selector(entry)
                .map_err(|e| invalid(field.clone(), e.to_string()))?;
            if selector.matches_every_name() {
                return Err(invalid(
                    field,
                    "a pattern of stars lets every job resolve any name, which carries data out \
                     through DNS queries (DNS tunnelling); list the names or domains jobs need, \
                     e.g. {matchPattern: \"*.example.com\"}",
                ));
            }
            Ok(selector)
        })
        .collect()
}

impl TryFrom<FileConfig> for Config {
    type Error = ConfigError;

    fn try_from(f: FileConfig) -> Result<Self, ConfigError> {
        let identity = f.identity.map(IdentityConfig::try_from).transpose()?;

        let h = f.hardening;
        if h.run_as_user <= 0 {
            return Err(invalid(
                "hardening.runAsUser",
                "must be a non-root UID (> 0)",
            ));
        }
        if h.run_as_group <= 0 {
            return Err(invalid(
                "hardening.runAsGroup",
                "must be a non-root GID (> 0)",
            ));
        }
        if h.fs_group <= 0 {
            return Err(invalid("hardening.fsGroup", "must be a non-root GID (> 0)"));
        }
        for (field, id) in [
            ("hardening.runAsUser", h.run_as_user),
            ("hardening.runAsGroup", h.run_as_group),
            ("hardening.fsGroup", h.fs_group),
        ] {
            if id > MAX_ID {
                return Err(invalid(
                    field,
                    format!("{id} is above {MAX_ID}, the largest id Kubernetes accepts"),
                ));
            }
        }
        let allowed_ids = h
            .allowed_ids
            .iter()
            .enumerate()
            .map(|(i, r)| id_range(i, r))
            .collect::<Result<Vec<_>, _>>()?;
        for dir in &h.writable_dirs {
            if !dir.starts_with('/') || dir.contains("..") || dir.len() < 2 {
                return Err(invalid(
                    "hardening.writableDirs",
                    format!("'{dir}' must be an absolute path below / without '..'"),
                ));
            }
        }

        let images = checked_images(&h.images)?;

        let p = f.policy;
        let apply_timeout = positive("policy.applyTimeout", p.apply_timeout)?;
        if p.dns.match_labels.is_empty() {
            return Err(invalid(
                "policy.dns.matchLabels",
                "must select the cluster DNS pods (for example k8s-app: kube-dns)",
            ));
        }
        let cluster_domain = checked_cluster_domain(&p.cluster_domain)?;
        let dns_allow = checked_dns_allow(&p.dns_allow)?;
        // Parsed and linted once here, so a review clones typed rules instead of parsing JSON.
        let mut scopes = BTreeMap::new();
        for (scope, rules) in p.scopes {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                return Err(invalid(
                    "policy.scopes",
                    format!("scope name '{scope}' must be non-empty and contain no spaces"),
                ));
            }
            let parsed = rules
                .iter()
                .enumerate()
                .map(|(i, rule)| {
                    cilium::checked_egress_rule(rule).map_err(|e| {
                        invalid(format!("policy.scopes[\"{scope}\"][{i}]"), e.to_string())
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            scopes.insert(scope, parsed);
        }

        let l = f.lifecycle;
        let server = ServerConfig {
            review_deadline: positive("server.reviewDeadline", f.server.review_deadline)?,
            max_body_bytes: f.server.max_body_bytes,
            read_timeout: positive("server.readTimeout", f.server.read_timeout)?,
            drain_timeout: positive("server.drainTimeout", f.server.drain_timeout)?,
            idle_timeout: positive("server.idleTimeout", f.server.idle_timeout)?,
            max_connections: f.server.max_connections,
            max_memory_in_flight: f.server.max_memory_in_flight,
        };
        if server.max_connections == 0 {
            return Err(invalid("server.maxConnections", "must be at least 1"));
        }
        if server.max_body_bytes < 1024 {
            return Err(invalid("server.maxBodyBytes", "must be at least 1024"));
        }
        let largest = server
            .max_body_bytes
            .saturating_mul(MEMORY_PER_BODY_BYTE)
            .saturating_add(MEMORY_PER_REQUEST);
        if server.max_memory_in_flight < largest {
            return Err(invalid(
                "server.maxMemoryInFlight",
                format!(
                    "must be at least {largest} bytes: a request is counted as \
                     {MEMORY_PER_REQUEST} bytes plus {MEMORY_PER_BODY_BYTE} per byte of body, and \
                     a body of server.maxBodyBytes must fit"
                ),
            ));
        }
        let stamp_validity = positive("stamp.validity", f.stamp.validity)?;
        if stamp_validity < server.review_deadline || stamp_validity > Duration::from_secs(600) {
            return Err(invalid(
                "stamp.validity",
                "must lie between server.reviewDeadline and 10m: it must outlast every webhook \
                 call of one request, and a short one limits how long a stamp can be replayed",
            ));
        }
        if f.stamp.key_file.as_os_str().is_empty() {
            return Err(invalid("stamp.keyFile", "must not be empty"));
        }
        // A policy is applied at the start of a review and its object stored only after every
        // webhook call of the request: a grace shorter than one review could reap the policy
        // of a job being admitted (the job would then start with no policy of its own).
        if l.orphan_grace.0 <= server.review_deadline {
            return Err(invalid(
                "lifecycle.orphanGrace",
                "must be longer than server.reviewDeadline, or the policy of a job still being \
                 admitted could be reaped as an orphan",
            ));
        }
        if apply_timeout >= server.review_deadline {
            return Err(invalid(
                "policy.applyTimeout",
                "must be shorter than server.reviewDeadline so a slow API still gets a clear denial",
            ));
        }

        Ok(Config {
            identity,
            hardening: HardeningConfig {
                run_as_user: h.run_as_user,
                run_as_group: h.run_as_group,
                fs_group: h.fs_group,
                writable_dirs: h.writable_dirs,
                allowed_ids,
                images,
            },
            policy: PolicyConfig {
                dns_namespace: p.dns.namespace,
                dns_match_labels: p.dns.match_labels,
                driver_to_api_server: p.driver_to_api_server,
                unknown_scopes: p.unknown_scopes,
                apply_timeout,
                managers: p.managers,
                cluster_domain,
                dns_allow,
                scopes,
            },
            lifecycle: LifecycleConfig {
                end_grace: l.end_grace.0,
                orphan_grace: positive("lifecycle.orphanGrace", l.orphan_grace)?,
                lease_name: l.lease.name,
                lease_namespace: l.lease.namespace,
                lease_duration: positive("lifecycle.lease.duration", l.lease.duration)?,
            },
            server,
            audit: match f.audit.output.as_str() {
                "stdout" | "-" | "" => AuditOutput::Stdout,
                path => AuditOutput::File(PathBuf::from(path)),
            },
            stamp: StampConfig {
                key_file: f.stamp.key_file,
                validity: stamp_validity,
            },
            spark: SparkConfig::try_from_file(f.spark)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
identity:
  annotation: sparkward.io/submitter-token
  issuer: https://idp.example.com/realms/data
  audiences: [sparkward]
  jwks: { url: https://idp.example.com/certs, refresh: 5m }
  algorithms: [RS256, ES256, EdDSA]
  leeway: 30s
  subjectClaim: sub
  scopeClaim: scope
  requesterBinding: { enabled: true, usernamePrefix: "oidc:" }
  trustedCreators:
    sparkOperator: [system:serviceaccount:spark-operator:spark-operator-spark]
hardening:
  runAsUser: 185
  runAsGroup: 185
  fsGroup: 185
  writableDirs: [/tmp, /opt/spark/work-dir]
policy:
  dns: { namespace: kube-system, matchLabels: { k8s-app: kube-dns } }
  driverToApiServer: true
  unknownScopes: ignore
  applyTimeout: 5s
  managers:
    - system:serviceaccount:sparkward-system:sparkward
  scopes:
    data:read:postgres-main:
      - toEndpoints: [{ matchLabels: { "k8s:io.kubernetes.pod.namespace": databases, db: postgres-main } }]
        toPorts: [{ ports: [{ port: "5432", protocol: TCP }] }]
lifecycle:
  endGrace: 60s
  orphanGrace: 5m
  lease: { name: sparkward-lifecycle, namespace: sparkward-system, duration: 15s }
server:
  reviewDeadline: 8s
  maxBodyBytes: 4194304
audit:
  output: stdout
"#;

    #[test]
    fn parses_the_design_example() {
        let c = Config::from_yaml(FULL).unwrap();
        let id = c.identity.unwrap();
        assert_eq!(id.issuer, "https://idp.example.com/realms/data");
        assert_eq!(
            id.algorithms,
            vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
        );
        assert_eq!(id.jwks.refresh(), Duration::from_secs(300));
        assert_eq!(
            id.requester_binding,
            Some(RequesterBinding {
                username_prefix: "oidc:".into()
            })
        );
        assert_eq!(c.policy.scopes.len(), 1);
        assert_eq!(c.lifecycle.orphan_grace, Duration::from_secs(300));
        assert_eq!(c.server.max_body_bytes, 4194304);
        assert_eq!(c.audit, AuditOutput::Stdout);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_yaml("").unwrap();
        assert!(c.identity.is_none());
        assert_eq!(c.hardening.run_as_user, 185);
        assert_eq!(c.policy.apply_timeout, Duration::from_secs(5));
        assert_eq!(c.server.review_deadline, Duration::from_secs(8));
    }

    #[test]
    fn unknown_key_is_rejected_with_its_line() {
        let err = Config::from_yaml("server:\n  reviewDeadline: 8s\n  maxBody: 3\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("maxBody"), "{text}");
        assert!(text.contains("line 3"), "{text}");
    }

    #[test]
    fn the_memory_budget_must_hold_a_body_of_the_largest_size() {
        let yaml = |budget: usize| {
            format!("server:\n  maxBodyBytes: 1048576\n  maxMemoryInFlight: {budget}\n")
        };
        let least = 48 * 1048576 + 65536;
        let err = Config::from_yaml(&yaml(least - 1)).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { field, reason }
                if field == "server.maxMemoryInFlight" && reason.contains(&least.to_string())),
            "{err}"
        );
        let ok = Config::from_yaml(&yaml(least)).unwrap();
        assert_eq!(ok.server.max_memory_in_flight, least);
        assert_eq!(
            Config::default().server.max_memory_in_flight,
            256 * 1024 * 1024
        );
    }

    #[test]
    fn rejects_none_and_hmac_algorithms() {
        for alg in ["none", "HS256"] {
            let yaml = format!(
                "identity:\n  issuer: x\n  audiences: [a]\n  jwks: {{ file: /k.json }}\n  algorithms: [{alg}]\n"
            );
            let err = Config::from_yaml(&yaml).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { field, .. } if field == "identity.algorithms"),
                "{err}"
            );
        }
    }

    #[test]
    fn rejects_plain_http_jwks() {
        let yaml = "identity:\n  issuer: x\n  audiences: [a]\n  jwks: { url: http://idp/certs }\n";
        let err = Config::from_yaml(yaml).unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
    }

    #[test]
    fn rejects_root_uid() {
        let err = Config::from_yaml("hardening:\n  runAsUser: 0\n").unwrap_err();
        assert!(err.to_string().contains("hardening.runAsUser"), "{err}");
    }

    #[test]
    fn allowed_ids_parse_as_inclusive_ranges() {
        let c = Config::from_yaml(
            "hardening:\n  allowedIds: [{min: 1000, max: 1999}, {min: 100, max: 100}]\n",
        )
        .unwrap();
        let ids = &c.hardening.allowed_ids;
        assert_eq!(
            ids,
            &vec![
                IdRange {
                    min: 1000,
                    max: 1999
                },
                IdRange { min: 100, max: 100 }
            ]
        );
        assert_eq!(ids[0].to_string(), "1000-1999");
        assert_eq!(ids[1].to_string(), "100");
        for (id, inside) in [(999, false), (1000, true), (1999, true), (2000, false)] {
            assert_eq!(ids[0].contains(id), inside, "{id}");
        }
        // Default: no further ids, only the configured ones.
        assert!(
            Config::from_yaml("")
                .unwrap()
                .hardening
                .allowed_ids
                .is_empty()
        );
    }

    #[test]
    fn bad_allowed_ids_are_rejected_with_the_entry_and_the_reason() {
        let cases = [
            (
                "[{min: 0, max: 10}]",
                "hardening.allowedIds[0]",
                "0 is root",
            ),
            (
                "[{min: 5, max: 9}, {min: -3, max: 9}]",
                "hardening.allowedIds[1]",
                "ids start at 1",
            ),
            (
                "[{min: 2000, max: 1999}]",
                "hardening.allowedIds[0]",
                "greater than max",
            ),
            (
                "[{min: 1, max: 4294967295}]",
                "hardening.allowedIds[0]",
                "2147483647",
            ),
        ];
        for (list, field, reason) in cases {
            let yaml = format!("hardening:\n  allowedIds: {list}\n");
            let err = Config::from_yaml(&yaml).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { field: f, .. } if f == field),
                "{list}: {err}"
            );
            assert!(err.to_string().contains(reason), "{list}: {err}");
        }
        // Shapes that are not a range: a bare id, a missing bound, an unknown key.
        for list in ["[1000]", "[{min: 1000}]", "[{min: 1, max: 2, step: 1}]"] {
            let yaml = format!("hardening:\n  allowedIds: {list}\n");
            let err = Config::from_yaml(&yaml).unwrap_err();
            assert!(matches!(err, ConfigError::Parse(_)), "{list}: {err}");
        }
        let err = Config::from_yaml("hardening:\n  allowedIds: [1000]\n").unwrap_err();
        assert!(err.to_string().contains("{min: 1000, max: 1999}"), "{err}");
    }

    #[test]
    fn images_are_unrestricted_by_default_and_prefixes_are_checked_at_load() {
        let c = Config::from_yaml("").unwrap();
        assert!(!c.hardening.images.is_active());
        let c = Config::from_yaml(
            "hardening:\n  images:\n    allowed: [docker.io/apache/spark, registry.corp/spark/]\n    requireDigest: true\n",
        )
        .unwrap();
        let images = &c.hardening.images;
        assert!(images.require_digest);
        let shown: Vec<String> = images.allowed.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["docker.io/apache/spark", "registry.corp/spark/"]);

        for (list, field, word) in [
            (
                "[registry.corp/, \"\"]",
                "hardening.images.allowed[1]",
                "empty",
            ),
            (
                "[a.io/, b.io/, \"docker.io/apache/spark:4.0.0\"]",
                "hardening.images.allowed[2]",
                "has a tag",
            ),
            (
                "[\"registry.corp/ x\"]",
                "hardening.images.allowed[0]",
                "whitespace",
            ),
            (
                "[apache/spark]",
                "hardening.images.allowed[0]",
                "docker.io/apache/spark",
            ),
        ] {
            let yaml = format!("hardening:\n  images:\n    allowed: {list}\n");
            let err = Config::from_yaml(&yaml).unwrap_err();
            let text = err.to_string();
            assert_eq!(field_of(err), field, "{list}: {text}");
            assert!(text.contains(word), "{list}: {text}");
        }
        let err =
            Config::from_yaml("hardening:\n  images:\n    allow: [registry.corp/]\n").unwrap_err();
        assert!(err.to_string().contains("allow"), "{err}");
    }

    #[test]
    fn parses_durations() {
        let cases = [
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("250ms", Duration::from_millis(250)),
            ("1m30s", Duration::from_secs(90)),
        ];
        for (text, want) in cases {
            assert_eq!(HumanDuration::parse(text), Ok(want), "{text}");
        }
        for bad in ["", "5", "m", "5d", "-1s"] {
            assert!(HumanDuration::parse(bad).is_err(), "{bad}");
        }
    }

    fn field_of(err: ConfigError) -> String {
        match err {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("not a field error: {other}"),
        }
    }

    const IDENTITY: &str = "identity:\n  issuer: x\n  audiences: [a]\n  jwks: { file: /k.json }\n";

    #[test]
    fn job_admins_default_to_nobody_and_match_by_user_or_group() {
        let none = Config::from_yaml(IDENTITY).unwrap().identity.unwrap();
        assert_eq!(none.job_admins, JobAdmins::default());
        assert!(!none.job_admins.contains("oidc:ops", &["ops".to_string()]));

        let yaml = format!(
            "{IDENTITY}  jobAdmins:\n    users: [\"oidc:bob\"]\n    groups: [\"oidc:spark-admins\"]\n"
        );
        let admins = Config::from_yaml(&yaml)
            .unwrap()
            .identity
            .unwrap()
            .job_admins;
        let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(admins.contains("oidc:bob", &[]));
        assert!(admins.contains(
            "oidc:carol",
            &groups(&["system:authenticated", "oidc:spark-admins"])
        ));
        assert!(!admins.contains("oidc:alice", &groups(&["system:authenticated"])));
        // A group name is not a user name, nor the reverse.
        assert!(!admins.contains("oidc:spark-admins", &[]));
        assert!(!admins.contains("oidc:carol", &groups(&["oidc:bob"])));

        // Only users or only groups.
        let yaml = format!("{IDENTITY}  jobAdmins: {{ groups: [ops] }}\n");
        let admins = Config::from_yaml(&yaml)
            .unwrap()
            .identity
            .unwrap()
            .job_admins;
        assert_eq!(admins.users, Vec::<String>::new());
        assert_eq!(admins.groups, vec!["ops".to_string()]);
    }

    #[test]
    fn job_admins_reject_unknown_keys_and_groups_everyone_is_in() {
        let err =
            Config::from_yaml(&format!("{IDENTITY}  jobAdmins: {{ user: [bob] }}\n")).unwrap_err();
        assert!(err.to_string().contains("user"), "{err}");
        for group in [
            "system:authenticated",
            "system:serviceaccounts",
            "system:serviceaccounts:spark-jobs",
            "",
        ] {
            let yaml = format!("{IDENTITY}  jobAdmins: {{ groups: [\"{group}\"] }}\n");
            let err = Config::from_yaml(&yaml).unwrap_err();
            assert_eq!(field_of(err), "identity.jobAdmins.groups", "{group}");
        }
        for user in ["system:anonymous", " "] {
            let yaml = format!("{IDENTITY}  jobAdmins: {{ users: [\"{user}\"] }}\n");
            let err = Config::from_yaml(&yaml).unwrap_err();
            assert_eq!(field_of(err), "identity.jobAdmins.users", "{user}");
        }
    }

    #[test]
    fn evictors_default_to_the_autoscaler_and_cluster_admins_and_refuse_everyone_groups() {
        let c = Config::from_yaml(IDENTITY).unwrap();
        let evictors = &c.identity.as_ref().unwrap().evictors;
        assert_eq!(
            evictors.users,
            ["system:serviceaccount:kube-system:cluster-autoscaler"]
        );
        assert_eq!(evictors.groups, ["system:masters"]);
        let c = Config::from_yaml(&format!(
            "{IDENTITY}  evictors: {{ users: [\"system:serviceaccount:ops:drainer\"] }}\n"
        ))
        .unwrap();
        let evictors = &c.identity.as_ref().unwrap().evictors;
        assert_eq!(evictors.users, ["system:serviceaccount:ops:drainer"]);
        assert!(
            evictors.groups.is_empty(),
            "a written list replaces the default"
        );
        for group in ["system:authenticated", "system:serviceaccounts:spark-jobs"] {
            let yaml = format!("{IDENTITY}  evictors: {{ groups: [\"{group}\"] }}\n");
            let err = Config::from_yaml(&yaml).unwrap_err();
            assert_eq!(field_of(err), "identity.evictors.groups", "{group}");
        }
        let yaml = format!("{IDENTITY}  evictors: {{ users: [\"system:anonymous\"] }}\n");
        let err = Config::from_yaml(&yaml).unwrap_err();
        assert_eq!(field_of(err), "identity.evictors.users");
    }

    #[test]
    fn cluster_domain_defaults_to_cluster_local_and_is_normalised() {
        assert_eq!(Config::default().policy.cluster_domain, "cluster.local");
        assert!(Config::default().policy.dns_allow.is_empty());
        for (written, kept) in [
            ("k8s.corp.example", "k8s.corp.example"),
            ("Cluster.Local.", "cluster.local"),
            ("local", "local"),
        ] {
            let c =
                Config::from_yaml(&format!("policy:\n  clusterDomain: \"{written}\"\n")).unwrap();
            assert_eq!(c.policy.cluster_domain, kept, "{written}");
        }
        let long = format!("{}.example", "a".repeat(240));
        for bad in [
            "",
            "*.local",
            "cluster..local",
            ".local",
            "cluster local",
            long.as_str(),
        ] {
            let err =
                Config::from_yaml(&format!("policy:\n  clusterDomain: \"{bad}\"\n")).unwrap_err();
            assert_eq!(field_of(err), "policy.clusterDomain", "{bad:?}");
        }
    }

    #[test]
    fn dns_allow_entries_are_checked_like_to_fqdns_selectors() {
        let c = Config::from_yaml(
            "policy:\n  dnsAllow:\n    - matchName: repo.maven.apache.org\n    - matchPattern: \"*.pypi.org\"\n",
        )
        .unwrap();
        assert_eq!(
            c.policy.dns_allow,
            vec![
                cilium::FqdnSelector::name("repo.maven.apache.org"),
                cilium::FqdnSelector::pattern("*.pypi.org"),
            ]
        );
        // (entry, a word the message must contain)
        for (entry, word) in [
            (
                "{ matchName: a.example, matchPattern: \"*.example\" }",
                "exactly one",
            ),
            ("{}", "exactly one"),
            ("{ matchNam: a.example }", "matchNam"),
            ("{ matchName: \"*.example\" }", "matchPattern"),
            ("{ matchPattern: \"a b\" }", "not a DNS pattern"),
            ("a.example", "mapping"),
            ("{ matchPattern: \"*\" }", "tunnelling"),
            ("{ matchPattern: \"**.\" }", "tunnelling"),
        ] {
            let yaml = format!("policy:\n  dnsAllow:\n    - {entry}\n");
            let err = Config::from_yaml(&yaml).unwrap_err();
            let text = err.to_string();
            assert_eq!(field_of(err), "policy.dnsAllow[0]", "{entry}: {text}");
            assert!(text.contains(word), "{entry}: {text}");
        }
    }

    #[test]
    fn rejects_apply_timeout_longer_than_deadline() {
        let err = Config::from_yaml("policy:\n  applyTimeout: 9s\n").unwrap_err();
        assert!(err.to_string().contains("policy.applyTimeout"), "{err}");
    }

    #[test]
    fn rejects_an_orphan_grace_no_longer_than_one_review() {
        let err = Config::from_yaml("lifecycle:\n  orphanGrace: 8s\n").unwrap_err();
        assert!(err.to_string().contains("lifecycle.orphanGrace"), "{err}");
        let ok = Config::from_yaml(
            "lifecycle:\n  orphanGrace: 5s\nserver:\n  reviewDeadline: 4s\npolicy:\n  applyTimeout: 3s\n",
        );
        assert!(ok.is_ok(), "{ok:?}");
    }
}
