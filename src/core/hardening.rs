//! The hardening rules: what a Spark pod must look like (non-root UID, no root group, only the
//! configured or allowed UIDs/GIDs, read-only root filesystem, no capabilities, seccomp
//! RuntimeDefault, no privilege escalation, nothing from the host, no shared process namespace)
//! and how an object falls short of it.
//!
//! Inspection produces `Findings`: *missing* settings (with the JSON Patch operation that sets
//! them, or that rewrites a value into the one spelling the restricted profile accepts) and
//! *weaker* settings (explicitly set to something less safe, which sparkward never overrides
//! silently: they are denied with the field and the fix). The mutating webhook turns missing
//! settings into a patch; the validating webhook treats both as violations. One set of rules
//! serves both, so what is admitted is exactly what is later accepted as hardened.

use std::borrow::Cow;
use std::fmt;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{
    AppArmorProfile, PodSecurityContext, SELinuxOptions, SeccompProfile, SecurityContext,
    WindowsSecurityContextOptions,
};
use serde_json::{Value, json};

use crate::config::HardeningConfig;
use crate::core::loose::{Loose, LooseList};
use crate::core::objects::{Container, ContainerPort, LooseContext, Template, Volume};

/// Volume types the Pod Security Standard "restricted" allows.
pub const ALLOWED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Sysctls the Pod Security Standard "baseline" considers safe.
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// SELinux types the Pod Security Standard "baseline" allows.
const SELINUX_TYPES: &[&str] = &[
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// A setting that is explicitly weaker than the hardening requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path in kubectl's notation, e.g. `spec.containers[0].securityContext.privileged`.
    pub field: String,
    /// What is wrong, e.g. `is true`.
    pub problem: String,
    /// What to do instead.
    pub fix: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.field, self.problem, self.fix)
    }
}

/// A location in the object: the JSON pointer for the patch, and the kubectl-style path for
/// messages. Only the pointer text is built as the location is extended (one allocation per
/// step, no `format!`): planning a pod creates dozens of locations and prints almost none, so
/// the message form is rendered from the pointer on demand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loc {
    /// RFC 6901 text (`~0` for `~`, `~1` for `/`); empty at the root.
    pointer: String,
    /// How many segments `pointer` has.
    depth: u32,
    /// Bit `i`: segment `i` is an array index (`[i]` in messages). serde_json nests at most 128
    /// levels, so every location in a parsed object fits.
    indices: u128,
    /// Bit `i`: segment `i` is the end of an array (`/-`), which messages leave out.
    appends: u128,
}

impl Loc {
    pub fn root() -> Self {
        Self::default()
    }

    fn child(&self, token: &str, index: bool, append: bool) -> Self {
        let mut pointer = String::with_capacity(self.pointer.len() + token.len() + 8);
        pointer.push_str(&self.pointer);
        pointer.push('/');
        Self::push_escaped(&mut pointer, token);
        let bit = 1u128.checked_shl(self.depth).unwrap_or(0);
        Self {
            pointer,
            depth: self.depth.saturating_add(1),
            indices: self.indices | if index { bit } else { 0 },
            appends: self.appends | if append { bit } else { 0 },
        }
    }

    /// Appends `token` to `pointer` with RFC 6901's escapes.
    /// The runs between escapes are copied whole: `~` and `/` are ASCII, so every index where
    /// one is found is a character boundary.
    fn push_escaped(pointer: &mut String, token: &str) {
        let mut run = 0;
        for (i, b) in token.bytes().enumerate() {
            let escape = match b {
                b'~' => "~0",
                b'/' => "~1",
                _ => continue,
            };
            pointer.push_str(&token[run..i]);
            pointer.push_str(escape);
            run = i + 1;
        }
        pointer.push_str(&token[run..]);
    }

    /// The location of a key below this one.
    pub fn key(&self, key: &str) -> Self {
        self.child(key, false, false)
    }

    /// The location of an array element below this one.
    pub fn index(&self, i: usize) -> Self {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = i;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let text = std::str::from_utf8(&digits[at..]).unwrap_or("0");
        self.child(text, true, false)
    }

    /// The end of an array (`/-`), for appending.
    pub fn append(&self) -> Self {
        self.child("-", false, true)
    }

    pub fn pointer(&self) -> PointerBuf {
        self.clone().into_pointer()
    }

    /// `pointer` of a location that is not needed afterwards: its text becomes the pointer's.
    pub fn into_pointer(self) -> PointerBuf {
        PointerBuf::parse(self.pointer).unwrap_or_else(|report| {
            // Not reached: `child` writes only valid pointer text. Should it ever fail, the
            // pointer is rebuilt from the unescaped segments, as `pointer` always did.
            let (_, text) = report.decompose();
            let loc = Loc {
                pointer: text,
                ..Loc::default()
            };
            PointerBuf::from_tokens(loc.tokens().map(Cow::into_owned))
        })
    }

    /// The unescaped segments.
    fn tokens(&self) -> impl Iterator<Item = Cow<'_, str>> + '_ {
        self.pointer.split('/').skip(1).map(|t| {
            if t.contains('~') {
                Cow::Owned(t.replace("~1", "/").replace("~0", "~"))
            } else {
                Cow::Borrowed(t)
            }
        })
    }

    /// The kubectl-style path for messages: `spec.containers[0].securityContext`, with keys
    /// holding `.` or `/` quoted (`metadata.labels["app.kubernetes.io/name"]`).
    pub fn human(&self) -> String {
        let mut human = String::with_capacity(self.pointer.len() + 8);
        for (i, token) in self.tokens().enumerate() {
            let bit = 1u128.checked_shl(i as u32).unwrap_or(0);
            if self.appends & bit != 0 {
                continue;
            }
            if self.indices & bit != 0 {
                human.push('[');
                human.push_str(&token);
                human.push(']');
            } else if human.is_empty() {
                human.push_str(&token);
            } else if token.contains(['.', '/']) {
                human.push_str("[\"");
                human.push_str(&token);
                human.push_str("\"]");
            } else {
                human.push('.');
                human.push_str(&token);
            }
        }
        human
    }
}

/// The most violations a denial message lists (`Reason`'s message): the rest are counted. The
/// message goes back to the user through the API server and into the audit line, so it stays
/// short whatever the object holds.
pub const MAX_LISTED: usize = 64;

/// The most weaker settings one object's findings keep: the first name what to fix, and each
/// costs a few hundred bytes (a 4 MiB list of volumes without a source was a million). One
/// less than a denial message lists, which leaves the line that counts the rest.
pub const MAX_VIOLATIONS: usize = MAX_LISTED - 1;

/// What inspection found.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    /// Settings to add (mutation) or report as not hardened (validation).
    pub missing: Vec<Missing>,
    /// At most `MAX_VIOLATIONS`; the rest are counted in `weaker_omitted`.
    pub weaker: Vec<Violation>,
    pub weaker_omitted: usize,
}

/// A missing setting and the operation that adds it (or rewrites the value in place).
#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    pub op: PatchOperation,
    /// Where: rendered for messages only when the validating webhook reports it.
    pub loc: Loc,
    /// False for conveniences (writable emptyDirs): the validating webhook does not require them.
    pub security: bool,
    /// How the validating webhook describes it when it is still there: `is not set`, or what is
    /// wrong with the value the operation replaces. Borrowed for the constant `is not set`:
    /// a pod review has a dozen of these and reads none of them.
    pub problem: Cow<'static, str>,
}

impl Missing {
    /// The setting at `loc` is not there: an `add` of `value`.
    pub fn add(loc: Loc, value: Value, security: bool) -> Self {
        Self {
            op: PatchOperation::Add(AddOperation {
                path: loc.pointer(),
                value,
            }),
            loc,
            security,
            problem: Cow::Borrowed("is not set"),
        }
    }
}

impl Findings {
    fn add(&mut self, loc: Loc, value: Value) {
        self.push_missing(loc, value, true);
    }

    fn add_convenience(&mut self, loc: Loc, value: Value) {
        self.push_missing(loc, value, false);
    }

    fn push_missing(&mut self, loc: Loc, value: Value, security: bool) {
        self.missing.push(Missing::add(loc, value, security));
    }

    /// A present value that sparkward rewrites (the same meaning, in the form the restricted
    /// profile accepts): a `replace` of exactly that value.
    fn rewrite(&mut self, loc: &Loc, value: Value, problem: String) {
        self.missing.push(Missing {
            op: PatchOperation::Replace(ReplaceOperation {
                path: loc.pointer(),
                value,
            }),
            loc: loc.clone(),
            security: true,
            problem: Cow::Owned(problem),
        });
    }

    fn weaker(&mut self, loc: &Loc, problem: impl Into<String>, fix: impl Into<String>) {
        if self.weaker.len() >= MAX_VIOLATIONS {
            self.weaker_omitted += 1;
            return;
        }
        self.weaker.push(Violation {
            field: loc.human(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }

    /// The weaker settings for a denial, with a last line for those past `MAX_VIOLATIONS`.
    pub fn into_violations(self) -> Vec<Violation> {
        let mut out = self.weaker;
        if self.weaker_omitted > 0 {
            out.push(Violation {
                field: format!("and {} more", self.weaker_omitted),
                problem: "not listed".into(),
                fix: "fix the settings above and resubmit to see the rest".into(),
            });
        }
        out
    }

    /// Security settings that are missing, as violations (for the validating webhook).
    pub fn missing_as_violations(&self) -> Vec<Violation> {
        self.missing
            .iter()
            .filter(|m| m.security)
            .map(|m| Violation {
                field: m.loc.human(),
                problem: m.problem.to_string(),
                fix: "sparkward's mutating webhook sets it; check that the webhook \
                      configurations cover this namespace and resubmit"
                    .into(),
            })
            .collect()
    }

    pub fn ops(&self) -> impl Iterator<Item = &PatchOperation> {
        self.missing.iter().map(|m| &m.op)
    }
}

/// Which container-level settings a security context must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerProfile {
    /// A container of a Pod: the pod-level context supplies the user and seccomp.
    Pod,
    /// `spec.driver.securityContext` / `spec.executor.securityContext` of a SparkApplication:
    /// spark-operator copies it wholesale onto the Spark container, so it carries everything.
    SparkMain,
}

/// Inspects the `securityContext` of the container at `container`.
pub fn inspect_container(
    container: &Loc,
    name: &str,
    sc: Option<&SecurityContext>,
    profile: ContainerProfile,
    cfg: &HardeningConfig,
    out: &mut Findings,
) {
    let loc = container.key("securityContext");
    let Some(sc) = sc else {
        out.add(loc, hardened_container_context(profile, cfg));
        return;
    };
    let who = container_note(name);
    if sc.privileged == Some(true) {
        out.weaker(
            &loc.key("privileged"),
            format!("is true{who}"),
            "privileged containers control the host; remove the field",
        );
    }
    match sc.allow_privilege_escalation {
        Some(true) => out.weaker(
            &loc.key("allowPrivilegeEscalation"),
            format!("is true{who}"),
            "set it to false or remove it (sparkward sets false)",
        ),
        Some(false) => {}
        None => out.add(loc.key("allowPrivilegeEscalation"), json!(false)),
    }
    match sc.read_only_root_filesystem {
        Some(false) => out.weaker(
            &loc.key("readOnlyRootFilesystem"),
            format!("is false{who}"),
            "remove it: the root filesystem is read-only and sparkward mounts writable \
             emptyDirs at the configured writable directories (add a volume for any other \
             path the job writes to)",
        ),
        Some(true) => {}
        None => out.add(loc.key("readOnlyRootFilesystem"), json!(true)),
    }
    match sc.run_as_non_root {
        Some(false) => out.weaker(
            &loc.key("runAsNonRoot"),
            format!("is false{who}"),
            "remove it: Spark jobs run as a non-root user",
        ),
        Some(true) => {}
        None => out.add(loc.key("runAsNonRoot"), json!(true)),
    }
    // A container of a pod inherits the pod's ids, so sparkward sets none there; the Spark main
    // context of a SparkApplication becomes the whole container context and carries them.
    let spark_main = profile == ContainerProfile::SparkMain;
    let ids = [
        (
            IdField::user(spark_main.then_some(cfg.run_as_user)),
            sc.run_as_user,
        ),
        (
            IdField::group("runAsGroup", spark_main.then_some(cfg.run_as_group)),
            sc.run_as_group,
        ),
    ];
    for (field, value) in ids {
        match (value, field.default) {
            (Some(id), _) => inspect_id(&loc, &field, id, &who, cfg, out),
            (None, Some(default)) => out.add(loc.key(field.key), json!(default)),
            (None, None) => {}
        }
    }
    inspect_capabilities(&loc, sc, &who, out);
    inspect_seccomp(
        &loc.key("seccompProfile"),
        sc.seccomp_profile.as_ref(),
        profile == ContainerProfile::SparkMain,
        &who,
        out,
    );
    if let Some(pm) = sc.proc_mount.as_deref()
        && pm != "Default"
    {
        out.weaker(
            &loc.key("procMount"),
            format!("is {pm}{who}"),
            "remove it: only the Default /proc mount is allowed",
        );
    }
    inspect_selinux(&loc, sc.se_linux_options.as_ref(), &who, out);
    inspect_windows(&loc, sc.windows_options.as_ref(), &who, out);
    inspect_apparmor(&loc, sc.app_armor_profile.as_ref(), &who, out);
}

/// Whether an id field holds a user or a group id: each kind has its own configured ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdKind {
    User,
    Group,
}

/// An id field of a security context: its key, what it holds, and what sparkward sets when it
/// is absent (`None` where it sets nothing: a container inherits the pod's ids, and
/// `supplementalGroups` entries have no default).
#[derive(Debug, Clone, Copy)]
struct IdField {
    key: &'static str,
    kind: IdKind,
    default: Option<i64>,
}

impl IdField {
    fn user(default: Option<i64>) -> Self {
        Self {
            key: "runAsUser",
            kind: IdKind::User,
            default,
        }
    }

    fn group(key: &'static str, default: Option<i64>) -> Self {
        Self {
            key,
            kind: IdKind::Group,
            default,
        }
    }
}

/// Whether `id` may be set explicitly in a field of `kind`: the configured UID for user fields;
/// the configured GID or fsGroup for group fields (a process of a hardened pod holds both
/// already: the fsGroup is added to every container's supplementary groups); any id of
/// `hardening.allowedIds` for both. 0 never is: `allowedIds` cannot hold it.
fn id_allowed(cfg: &HardeningConfig, kind: IdKind, id: i64) -> bool {
    let configured = match kind {
        IdKind::User => id == cfg.run_as_user,
        IdKind::Group => id == cfg.run_as_group || id == cfg.fs_group,
    };
    id != 0 && (configured || cfg.allowed_ids.iter().any(|r| r.contains(id)))
}

/// The ids a field of `kind` may use, for messages: `185; the platform team can allow others in
/// hardening.allowedIds`, or `185, or 1000-1999, 100 from hardening.allowedIds`.
fn allowed_ids_text(cfg: &HardeningConfig, kind: IdKind) -> String {
    let configured = match kind {
        IdKind::User => cfg.run_as_user.to_string(),
        IdKind::Group if cfg.run_as_group == cfg.fs_group => cfg.run_as_group.to_string(),
        IdKind::Group => format!("{}, {}", cfg.run_as_group, cfg.fs_group),
    };
    if cfg.allowed_ids.is_empty() {
        return format!("{configured}; the platform team can allow others in hardening.allowedIds");
    }
    let ranges: Vec<String> = cfg.allowed_ids.iter().map(ToString::to_string).collect();
    format!(
        "{configured}, or {} from hardening.allowedIds",
        ranges.join(", ")
    )
}

/// Checks an explicitly set UID or GID at `parent.<field.key>` (or at `parent` itself for list
/// entries such as `supplementalGroups[i]`, when `field.key` is empty).
fn inspect_id(
    parent: &Loc,
    field: &IdField,
    id: i64,
    who: &str,
    cfg: &HardeningConfig,
    out: &mut Findings,
) {
    let loc = if field.key.is_empty() {
        parent.clone()
    } else {
        parent.key(field.key)
    };
    let remove = match field.default {
        Some(default) => format!("remove it (sparkward sets {default})"),
        None => "remove it".to_string(),
    };
    let noun = match field.kind {
        IdKind::User => "UID",
        IdKind::Group => "GID",
    };
    match (field.kind, id) {
        (IdKind::User, 0) => out.weaker(
            &loc,
            format!("is 0 (root){who}"),
            format!(
                "remove it or use a non-root UID such as {}",
                cfg.run_as_user
            ),
        ),
        // Pod Security "restricted" (Kubernetes 1.33) restricts no group ids, only
        // runAsUser 0 (since 1.23); the optional "non-root groups" control of its first
        // drafts was dropped. Group 0 opens every file the image or a volume leaves to the
        // root group, so sparkward denies it wherever a pod can set it.
        (IdKind::Group, 0) => out.weaker(
            &loc,
            format!("is 0 (the root group){who}"),
            format!(
                "{remove} or use an allowed GID ({}): the root group can read and write \
                 every file the image or a volume gives to group root",
                allowed_ids_text(cfg, IdKind::Group)
            ),
        ),
        (kind, id) if id_allowed(cfg, kind, id) => {}
        (kind, id) => out.weaker(
            &loc,
            format!("is {id}, which is not an allowed {noun}{who}"),
            format!(
                "{remove} or use an allowed {noun} ({})",
                allowed_ids_text(cfg, kind)
            ),
        ),
    }
}

fn container_note(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" (container \"{name}\")")
    }
}

fn hardened_container_context(profile: ContainerProfile, cfg: &HardeningConfig) -> Value {
    let mut sc = json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": { "drop": ["ALL"] },
    });
    if profile == ContainerProfile::SparkMain
        && let Some(map) = sc.as_object_mut()
    {
        map.insert("runAsUser".into(), json!(cfg.run_as_user));
        map.insert("runAsGroup".into(), json!(cfg.run_as_group));
        map.insert("seccompProfile".into(), json!({ "type": "RuntimeDefault" }));
    }
    sc
}

fn inspect_capabilities(loc: &Loc, sc: &SecurityContext, who: &str, out: &mut Findings) {
    let caps_loc = loc.key("capabilities");
    let Some(caps) = sc.capabilities.as_ref() else {
        out.add(caps_loc, json!({ "drop": ["ALL"] }));
        return;
    };
    if let Some(add) = caps.add.as_ref().filter(|a| !a.is_empty()) {
        out.weaker(
            &caps_loc.key("add"),
            format!("adds {}{who}", add.join(", ")),
            "remove capabilities.add: Spark needs no Linux capabilities",
        );
    }
    // Container runtimes (containerd, CRI-O) match `ALL` case-insensitively, so a lower-case
    // `all` does drop everything; but Pod Security "restricted" requires the exact string
    // `ALL` in `capabilities.drop` (and PodSecurity admission compares case-sensitively), so
    // such a pod fails the profile. It is rewritten in place, never denied; the validating
    // pass, seeing only this finding, reports a lower-case `all` that is still there.
    let drop_loc = caps_loc.key("drop");
    match caps.drop.as_ref() {
        None => out.add(drop_loc.clone(), json!(["ALL"])),
        Some(drop) if drop.iter().any(|c| c == "ALL") => {}
        Some(drop) => match drop.iter().position(|c| c.eq_ignore_ascii_case("ALL")) {
            Some(i) => out.rewrite(
                &drop_loc.index(i),
                json!("ALL"),
                format!(
                    "is '{}'{who}: Pod Security \"restricted\" accepts only upper-case ALL",
                    drop[i]
                ),
            ),
            None => out.add(drop_loc.append(), json!("ALL")),
        },
    }
}

fn inspect_seccomp(
    loc: &Loc,
    profile: Option<&SeccompProfile>,
    required: bool,
    who: &str,
    out: &mut Findings,
) {
    match profile.map(|p| p.type_.as_str()) {
        Some("RuntimeDefault") | Some("Localhost") => {}
        Some("Unconfined") => out.weaker(
            &loc.key("type"),
            format!("is Unconfined{who}"),
            "remove the seccompProfile or use RuntimeDefault",
        ),
        Some(other) => out.weaker(
            &loc.key("type"),
            format!("is '{other}'{who}"),
            "use RuntimeDefault or Localhost",
        ),
        None if required => out.add(loc.clone(), json!({ "type": "RuntimeDefault" })),
        None => {}
    }
}

fn inspect_selinux(loc: &Loc, se: Option<&SELinuxOptions>, who: &str, out: &mut Findings) {
    let Some(se) = se else { return };
    let loc = loc.key("seLinuxOptions");
    if let Some(t) = se.type_.as_deref().filter(|t| !t.is_empty())
        && !SELINUX_TYPES.contains(&t)
    {
        out.weaker(
            &loc.key("type"),
            format!("is '{t}'{who}"),
            format!("use one of {} or remove it", SELINUX_TYPES.join(", ")),
        );
    }
    for (key, value) in [("user", &se.user), ("role", &se.role)] {
        if value.as_deref().is_some_and(|v| !v.is_empty()) {
            out.weaker(
                &loc.key(key),
                format!("is set{who}"),
                "remove it: custom SELinux users and roles are not allowed",
            );
        }
    }
}

fn inspect_windows(
    loc: &Loc,
    w: Option<&WindowsSecurityContextOptions>,
    who: &str,
    out: &mut Findings,
) {
    if w.and_then(|w| w.host_process) == Some(true) {
        out.weaker(
            &loc.key("windowsOptions").key("hostProcess"),
            format!("is true{who}"),
            "remove it: host processes are not allowed",
        );
    }
}

fn inspect_apparmor(loc: &Loc, p: Option<&AppArmorProfile>, who: &str, out: &mut Findings) {
    if p.is_some_and(|p| p.type_ == "Unconfined") {
        out.weaker(
            &loc.key("appArmorProfile").key("type"),
            format!("is Unconfined{who}"),
            "remove it or use RuntimeDefault",
        );
    }
}

/// Inspects a pod-level security context at `spec` (`spec.securityContext`, or
/// `spec.driver.podSecurityContext` with `key = "podSecurityContext"`).
pub fn inspect_pod_context(
    parent: &Loc,
    key: &str,
    psc: Option<&PodSecurityContext>,
    cfg: &HardeningConfig,
    out: &mut Findings,
) {
    let loc = parent.key(key);
    let Some(psc) = psc else {
        out.add(
            loc,
            json!({
                "runAsNonRoot": true,
                "runAsUser": cfg.run_as_user,
                "runAsGroup": cfg.run_as_group,
                "fsGroup": cfg.fs_group,
                "seccompProfile": { "type": "RuntimeDefault" },
            }),
        );
        return;
    };
    match psc.run_as_non_root {
        Some(false) => out.weaker(
            &loc.key("runAsNonRoot"),
            "is false",
            "remove it: Spark jobs run as a non-root user",
        ),
        Some(true) => {}
        None => out.add(loc.key("runAsNonRoot"), json!(true)),
    }
    let ids = [
        (IdField::user(Some(cfg.run_as_user)), psc.run_as_user),
        (
            IdField::group("runAsGroup", Some(cfg.run_as_group)),
            psc.run_as_group,
        ),
        (IdField::group("fsGroup", Some(cfg.fs_group)), psc.fs_group),
    ];
    for (field, value) in ids {
        match (value, field.default) {
            (Some(id), _) => inspect_id(&loc, &field, id, "", cfg, out),
            (None, Some(default)) => out.add(loc.key(field.key), json!(default)),
            (None, None) => {}
        }
    }
    let groups_loc = loc.key("supplementalGroups");
    for (i, gid) in psc.supplemental_groups.iter().flatten().enumerate() {
        inspect_id(
            &groups_loc.index(i),
            &IdField::group("", None),
            *gid,
            "",
            cfg,
            out,
        );
    }
    inspect_seccomp(
        &loc.key("seccompProfile"),
        psc.seccomp_profile.as_ref(),
        true,
        "",
        out,
    );
    for (i, sysctl) in psc.sysctls.iter().flatten().enumerate() {
        if !SAFE_SYSCTLS.contains(&sysctl.name.as_str()) {
            out.weaker(
                &loc.key("sysctls").index(i),
                format!("sets the unsafe sysctl {}", sysctl.name),
                "remove it: only namespaced safe sysctls are allowed",
            );
        }
    }
    inspect_selinux(&loc, psc.se_linux_options.as_ref(), "", out);
    inspect_windows(&loc, psc.windows_options.as_ref(), "", out);
    inspect_apparmor(&loc, psc.app_armor_profile.as_ref(), "", out);
}

/// Denies host namespaces (`hostNetwork`, `hostPID`, `hostIPC`) set to true.
pub fn inspect_host_namespaces(spec: &Loc, flags: [(&str, Option<bool>); 3], out: &mut Findings) {
    for (key, value) in flags {
        if value == Some(true) {
            out.weaker(
                &spec.key(key),
                "is true",
                "remove it: Spark pods must not share the host's namespaces",
            );
        }
    }
}

/// Denies `shareProcessNamespace: true` on a pod (or on what becomes one).
pub fn inspect_process_namespace(spec: &Loc, share: Option<bool>, out: &mut Findings) {
    if share == Some(true) {
        out.weaker(
            &spec.key("shareProcessNamespace"),
            "is true",
            "remove it: in a shared process namespace every container sees the others' \
             processes and can read their environment and files through /proc, the Spark \
             container's credentials included",
        );
    }
}

/// Denies host ports.
pub fn inspect_ports(container: &Loc, name: &str, ports: &[ContainerPort], out: &mut Findings) {
    for (i, port) in ports.iter().enumerate() {
        if port.host_port.is_some_and(|p| p != 0) {
            deny_host_port(container, i, name, out);
        }
    }
}

/// The denial of a host port at `ports[i]` of the container at `container`.
fn deny_host_port(container: &Loc, i: usize, name: &str, out: &mut Findings) {
    out.weaker(
        &container.key("ports").index(i).key("hostPort"),
        format!("is set{}", container_note(name)),
        "remove hostPort: use a Service to expose the port",
    );
}

/// Denies hostPath and other volume types the restricted profile does not allow.
pub fn inspect_volumes(volumes: &Loc, list: &[Volume], out: &mut Findings) {
    for (i, volume) in list.iter().enumerate() {
        for source in &volume.sources {
            if source == "hostPath" {
                out.weaker(
                    &volumes.index(i).key("hostPath"),
                    format!("mounts a host directory (volume \"{}\")", volume.name),
                    "remove it: use an emptyDir for scratch space or a persistentVolumeClaim",
                );
            } else if !ALLOWED_VOLUME_TYPES.contains(&source.as_str()) {
                out.weaker(
                    &volumes.index(i).key(source),
                    format!("is not an allowed volume type (volume \"{}\")", volume.name),
                    format!(
                        "use one of {} (for example a persistentVolumeClaim)",
                        ALLOWED_VOLUME_TYPES.join(", ")
                    ),
                );
            }
        }
    }
}

/// A pod's volumes must name a source. kube-apiserver gives a volume without one an
/// `emptyDir` while it decodes the request, so a pod under review never lacks one; a review
/// that has one (not from an API server) is refused rather than admitted with a volume of no
/// known type. (SparkApplication volumes are not checked: spark-operator copies them into pods,
/// where that defaulting applies.)
pub fn inspect_pod_volume_sources(volumes: &Loc, list: &[Volume], out: &mut Findings) {
    for (i, volume) in list.iter().enumerate() {
        if volume.sources.is_empty() {
            out.weaker(
                &volumes.index(i),
                format!("has no volume source (volume \"{}\")", volume.name),
                "give it one, for example emptyDir: {} for scratch space",
            );
        }
    }
}

/// The name of the emptyDir volume sparkward adds for a writable directory:
/// `sparkward-` plus the path with every non-alphanumeric run turned into `-`.
pub fn writable_volume_name(dir: &str) -> String {
    let mut name = String::with_capacity("sparkward".len() + dir.len() + 1);
    name.push_str("sparkward");
    for part in dir
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
    {
        name.push('-');
        name.extend(part.chars().map(|c| c.to_ascii_lowercase()));
    }
    // Volume names are DNS labels: at most 63 characters (all ASCII here), not ending in '-'.
    name.truncate(63);
    let end = name.trim_end_matches('-').len();
    name.truncate(end);
    name
}

/// Adds emptyDir volumes for the writable directories (when no volume of that name exists).
pub fn plan_writable_volumes(
    volumes_loc: &Loc,
    volumes: Option<&[Volume]>,
    cfg: &HardeningConfig,
    out: &mut Findings,
) {
    let mut to_add = Vec::new();
    for dir in &cfg.writable_dirs {
        let name = writable_volume_name(dir);
        let exists = volumes.is_some_and(|v| v.iter().any(|v| v.name == name));
        if !exists && !to_add.iter().any(|(n, _)| n == &name) {
            to_add.push((name.clone(), json!({ "name": name, "emptyDir": {} })));
        }
    }
    if to_add.is_empty() {
        return;
    }
    match volumes {
        None => out.add_convenience(
            volumes_loc.clone(),
            Value::Array(to_add.into_iter().map(|(_, v)| v).collect()),
        ),
        Some(_) => {
            for (_, v) in to_add {
                out.add_convenience(volumes_loc.append(), v);
            }
        }
    }
}

/// Adds a mount of each writable directory to a container that does not mount that path yet.
pub fn plan_writable_mounts(
    mounts_loc: &Loc,
    mounts: Option<&[crate::core::objects::VolumeMount]>,
    cfg: &HardeningConfig,
    out: &mut Findings,
) {
    let to_add: Vec<Value> = cfg
        .writable_dirs
        .iter()
        .filter(|dir| !mounts.is_some_and(|m| m.iter().any(|m| paths_equal(&m.mount_path, dir))))
        .map(|dir| json!({ "name": writable_volume_name(dir), "mountPath": dir }))
        .collect();
    if to_add.is_empty() {
        return;
    }
    match mounts {
        None => out.add_convenience(mounts_loc.clone(), Value::Array(to_add)),
        Some(_) => {
            for v in to_add {
                out.add_convenience(mounts_loc.append(), v);
            }
        }
    }
}

fn paths_equal(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Inspects every container of a list (`containers`, `initContainers`, `ephemeralContainers`,
/// `sidecars`): security context, host ports, writable mounts. `only` restricts the inspection to
/// the containers with these names (new ephemeral containers).
pub fn inspect_containers(
    list_loc: &Loc,
    containers: &[Container],
    profile: ContainerProfile,
    cfg: &HardeningConfig,
    only: Option<&[&str]>,
    out: &mut Findings,
) {
    for (i, c) in containers.iter().enumerate() {
        if only.is_some_and(|names| !names.contains(&c.name.as_str())) {
            continue;
        }
        let loc = list_loc.index(i);
        inspect_container(
            &loc,
            &c.name,
            c.security_context.as_ref(),
            profile,
            cfg,
            out,
        );
        inspect_ports(&loc, &c.name, &c.ports, out);
        let mounts = (!c.volume_mounts.is_empty()).then_some(c.volume_mounts.as_slice());
        plan_writable_mounts(&loc.key("volumeMounts"), mounts, cfg, out);
    }
}

/// Reads a pod template (`spec.driver.template`, kept loosely typed by the CRD) and denies the
/// settings that are explicitly weaker. Spark merges the template into the pods it creates, and
/// the pod webhook would deny those pods later; denying here tells the user at submission.
pub fn inspect_template(
    template_loc: &Loc,
    template: &Template,
    cfg: &HardeningConfig,
    out: &mut Findings,
) {
    let spec_loc = template_loc.key("spec");
    let Some(spec) = &template.spec else {
        return;
    };
    inspect_host_namespaces(
        &spec_loc,
        [
            ("hostNetwork", loose_flag(&spec.host_network)),
            ("hostPID", loose_flag(&spec.host_pid)),
            ("hostIPC", loose_flag(&spec.host_ipc)),
        ],
        out,
    );
    inspect_process_namespace(&spec_loc, loose_flag(&spec.share_process_namespace), out);
    if let Some(psc) = &spec.security_context {
        let loc = spec_loc.key("securityContext");
        loose_context(&loc, psc, "", out);
        let ids = [
            (IdField::user(Some(cfg.run_as_user)), &psc.run_as_user),
            (
                IdField::group("runAsGroup", Some(cfg.run_as_group)),
                &psc.run_as_group,
            ),
            (IdField::group("fsGroup", Some(cfg.fs_group)), &psc.fs_group),
        ];
        loose_ids(&loc, &ids, "", cfg, out);
        match &psc.supplemental_groups {
            None => {}
            Some(LooseList::List(groups)) => {
                let groups_loc = loc.key("supplementalGroups");
                for (i, gid) in groups.iter().enumerate() {
                    if let Some(gid) = gid {
                        loose_id(
                            &groups_loc.index(i),
                            &IdField::group("", None),
                            gid,
                            "",
                            cfg,
                            out,
                        );
                    }
                }
            }
            Some(LooseList::Not(other)) => out.weaker(
                &loc.key("supplementalGroups"),
                format!("is {other}, not a list of GIDs"),
                "write a list of integer GIDs, or remove it",
            ),
        }
    }
    for (list, containers) in [
        ("containers", &spec.containers),
        ("initContainers", &spec.init_containers),
    ] {
        for (i, c) in containers.iter().enumerate() {
            let loc = spec_loc.key(list).index(i);
            let name = c.name();
            if let Some(sc) = &c.security_context {
                let sc_loc = loc.key("securityContext");
                let who = container_note(name);
                loose_context(&sc_loc, sc, &who, out);
                let ids = [
                    (IdField::user(None), &sc.run_as_user),
                    (IdField::group("runAsGroup", None), &sc.run_as_group),
                ];
                loose_ids(&sc_loc, &ids, &who, cfg, out);
            }
            // Each port on its own: one of another shape no longer hides the others.
            for (j, port) in c.ports.iter().enumerate() {
                if port
                    .host_port
                    .as_ref()
                    .and_then(Loose::get)
                    .is_some_and(|p| *p != 0)
                {
                    deny_host_port(&loc, j, name, out);
                }
            }
        }
    }
    inspect_volumes(&spec_loc.key("volumes"), &spec.volumes, out);
}

/// A loosely typed flag: its value when it is a JSON boolean, else unset (`Value::as_bool`).
fn loose_flag(flag: &Option<Loose<bool>>) -> Option<bool> {
    flag.as_ref().and_then(Loose::get).copied()
}

/// The weaker-setting checks on a security context of a pod template.
fn loose_context(loc: &Loc, sc: &LooseContext, who: &str, out: &mut Findings) {
    if loose_flag(&sc.privileged) == Some(true) {
        out.weaker(&loc.key("privileged"), format!("is true{who}"), "remove it");
    }
    if loose_flag(&sc.allow_privilege_escalation) == Some(true) {
        out.weaker(
            &loc.key("allowPrivilegeEscalation"),
            format!("is true{who}"),
            "set it to false or remove it",
        );
    }
    if loose_flag(&sc.read_only_root_filesystem) == Some(false) {
        out.weaker(
            &loc.key("readOnlyRootFilesystem"),
            format!("is false{who}"),
            "remove it: the root filesystem is read-only",
        );
    }
    if loose_flag(&sc.run_as_non_root) == Some(false) {
        out.weaker(
            &loc.key("runAsNonRoot"),
            format!("is false{who}"),
            "remove it",
        );
    }
    if sc.capabilities.as_ref().is_some_and(|c| c.add) {
        out.weaker(
            &loc.key("capabilities").key("add"),
            format!("adds capabilities{who}"),
            "remove capabilities.add",
        );
    }
    let seccomp = sc.seccomp_profile.as_ref().and_then(|p| p.kind.as_ref());
    if seccomp.and_then(Loose::get).map(String::as_str) == Some("Unconfined") {
        out.weaker(
            &loc.key("seccompProfile").key("type"),
            format!("is Unconfined{who}"),
            "remove it or use RuntimeDefault",
        );
    }
}

/// The id checks of typed contexts, on a loosely typed one: each of `fields` that is set.
fn loose_ids(
    loc: &Loc,
    fields: &[(IdField, &Option<Loose<i64>>)],
    who: &str,
    cfg: &HardeningConfig,
    out: &mut Findings,
) {
    for (field, value) in fields {
        if let Some(value) = value {
            loose_id(
                &loc.key(field.key),
                &IdField { key: "", ..*field },
                value,
                who,
                cfg,
                out,
            );
        }
    }
}

/// One loosely typed id at `loc` (`null` is read as unset before it gets here). Anything but
/// an integer is denied: the template is read by Spark's Kubernetes client, not by the API
/// server, and a lenient reader may turn a string "0" into root; only a plain integer can be
/// checked.
fn loose_id(
    loc: &Loc,
    field: &IdField,
    value: &Loose<i64>,
    who: &str,
    cfg: &HardeningConfig,
    out: &mut Findings,
) {
    match value {
        Loose::Is(id) => inspect_id(loc, field, *id, who, cfg, out),
        Loose::Not(value) => out.weaker(
            loc,
            format!("is {value}, not an integer id{who}"),
            "write the id as a plain integer, or remove it",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_render_pointer_and_message_paths() {
        let root = Loc::root();
        let labels = root.key("metadata").key("labels");
        let key = labels.key("sparkward.io/job-id");
        assert_eq!(
            key.pointer().as_str(),
            "/metadata/labels/sparkward.io~1job-id"
        );
        assert_eq!(key.human(), "metadata.labels[\"sparkward.io/job-id\"]");
        let odd = labels.key("a~b/c~1");
        assert_eq!(odd.pointer().as_str(), "/metadata/labels/a~0b~1c~01");
        assert_eq!(odd.human(), "metadata.labels[\"a~b/c~1\"]");
        // Escapes at either end, side by side, and next to characters of more than one byte.
        for (token, text) in [
            ("~/é~", "~0~1é~0"),
            ("/", "~1"),
            ("~~", "~0~0"),
            ("ü/ß", "ü~1ß"),
            ("", ""),
        ] {
            let loc = root.key(token);
            assert_eq!(loc.pointer().as_str(), format!("/{text}"), "{token}");
            assert_eq!(loc.tokens().collect::<Vec<_>>(), [token]);
        }
        let c = root
            .key("spec")
            .key("containers")
            .index(12)
            .key("env")
            .index(0);
        assert_eq!(c.pointer().as_str(), "/spec/containers/12/env/0");
        assert_eq!(c.human(), "spec.containers[12].env[0]");
        // A key of digits stays a key; the end of an array is left out of messages.
        let data = root.key("data").key("0");
        assert_eq!(data.human(), "data.0");
        let end = root.key("spec").key("volumes").append();
        assert_eq!(end.pointer().as_str(), "/spec/volumes/-");
        assert_eq!(end.human(), "spec.volumes");
        // The first key is written as is, dots included; the root is empty.
        assert_eq!(root.key("a.b").key("c").human(), "a.b.c");
        assert_eq!(root.human(), "");
        assert_eq!(root.pointer().as_str(), "");
        assert_eq!(root.index(3).human(), "[3]");
        // Deeper than serde_json nests: still a valid pointer.
        let deep = (0..200).fold(Loc::root(), |l, i| l.index(i));
        assert!(deep.pointer().as_str().ends_with("/199"));
        assert!(deep.human().starts_with("[0][1]"));
    }
    use k8s_openapi::api::core::v1::Capabilities;

    fn cfg() -> HardeningConfig {
        crate::config::Config::default().hardening
    }

    /// A pod template view of `t`, read from its JSON text as the webhook reads it.
    fn mk_template(t: Value) -> Template {
        serde_json::from_str(&t.to_string()).unwrap()
    }

    fn ops_json(f: &Findings) -> Vec<Value> {
        f.ops()
            .map(|op| serde_json::to_value(op).unwrap())
            .collect()
    }

    #[test]
    fn findings_keep_the_first_violations_and_count_the_rest() {
        let volumes: Vec<Volume> = (0..MAX_VIOLATIONS + 5)
            .map(|i| Volume {
                name: format!("v{i}"),
                ..Volume::default()
            })
            .collect();
        let mut f = Findings::default();
        inspect_pod_volume_sources(&Loc::root().key("spec").key("volumes"), &volumes, &mut f);
        assert_eq!(f.weaker.len(), MAX_VIOLATIONS);
        assert_eq!(f.weaker_omitted, 5);
        let listed = f.into_violations();
        assert_eq!(listed.len(), MAX_VIOLATIONS + 1);
        assert_eq!(listed[0].field, "spec.volumes[0]");
        assert_eq!(
            listed[MAX_VIOLATIONS].to_string(),
            "and 5 more not listed: fix the settings above and resubmit to see the rest"
        );
    }

    #[test]
    fn missing_context_is_added_whole() {
        let mut f = Findings::default();
        let c = Loc::root().key("spec").key("containers").index(0);
        inspect_container(&c, "spark", None, ContainerProfile::Pod, &cfg(), &mut f);
        assert!(f.weaker.is_empty());
        assert_eq!(
            ops_json(&f),
            vec![
                json!({"op":"add","path":"/spec/containers/0/securityContext","value":{
                "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}}})
            ]
        );
    }

    #[test]
    fn each_weaker_container_setting_is_reported_with_its_field() {
        let base = SecurityContext::default();
        let cases: Vec<(SecurityContext, &str)> = vec![
            (
                SecurityContext {
                    privileged: Some(true),
                    ..base.clone()
                },
                "securityContext.privileged",
            ),
            (
                SecurityContext {
                    allow_privilege_escalation: Some(true),
                    ..base.clone()
                },
                "securityContext.allowPrivilegeEscalation",
            ),
            (
                SecurityContext {
                    read_only_root_filesystem: Some(false),
                    ..base.clone()
                },
                "securityContext.readOnlyRootFilesystem",
            ),
            (
                SecurityContext {
                    run_as_non_root: Some(false),
                    ..base.clone()
                },
                "securityContext.runAsNonRoot",
            ),
            (
                SecurityContext {
                    run_as_user: Some(0),
                    ..base.clone()
                },
                "securityContext.runAsUser",
            ),
            (
                SecurityContext {
                    capabilities: Some(Capabilities {
                        add: Some(vec!["NET_ADMIN".into()]),
                        drop: None,
                    }),
                    ..base.clone()
                },
                "securityContext.capabilities.add",
            ),
            (
                SecurityContext {
                    seccomp_profile: Some(SeccompProfile {
                        type_: "Unconfined".into(),
                        localhost_profile: None,
                    }),
                    ..base.clone()
                },
                "securityContext.seccompProfile.type",
            ),
            (
                SecurityContext {
                    proc_mount: Some("Unmasked".into()),
                    ..base.clone()
                },
                "securityContext.procMount",
            ),
        ];
        for (sc, field) in cases {
            let mut f = Findings::default();
            let c = Loc::root().key("spec").key("containers").index(2);
            inspect_container(&c, "x", Some(&sc), ContainerProfile::Pod, &cfg(), &mut f);
            assert_eq!(f.weaker.len(), 1, "{field}: {:?}", f.weaker);
            assert_eq!(f.weaker[0].field, format!("spec.containers[2].{field}"));
            assert!(f.weaker[0].to_string().contains("container \"x\""));
        }
    }

    #[test]
    fn partial_context_gets_only_the_missing_fields() {
        let sc = SecurityContext {
            capabilities: Some(Capabilities {
                add: None,
                drop: Some(vec!["NET_RAW".into()]),
            }),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        };
        let mut f = Findings::default();
        let c = Loc::root().key("spec").key("containers").index(0);
        inspect_container(&c, "", Some(&sc), ContainerProfile::Pod, &cfg(), &mut f);
        let paths: Vec<String> = ops_json(&f)
            .iter()
            .map(|o| o["path"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            paths,
            vec![
                "/spec/containers/0/securityContext/allowPrivilegeEscalation",
                "/spec/containers/0/securityContext/runAsNonRoot",
                "/spec/containers/0/securityContext/capabilities/drop/-",
            ]
        );
    }

    #[test]
    fn hardened_context_has_no_findings() {
        let sc: SecurityContext = serde_json::from_value(hardened_container_context(
            ContainerProfile::SparkMain,
            &cfg(),
        ))
        .unwrap();
        let mut f = Findings::default();
        inspect_container(
            &Loc::root(),
            "",
            Some(&sc),
            ContainerProfile::SparkMain,
            &cfg(),
            &mut f,
        );
        assert!(f.missing.is_empty() && f.weaker.is_empty(), "{f:?}");
    }

    #[test]
    fn volumes_are_checked_by_type() {
        let vols: Vec<Volume> = serde_json::from_value(json!([
            {"name":"a","emptyDir":{}}, {"name":"b","hostPath":{"path":"/"}}, {"name":"c","nfs":{"server":"x","path":"/"}},
            {"name":"d","projected":{"sources":[]}}
        ])).unwrap();
        let mut f = Findings::default();
        inspect_volumes(&Loc::root().key("spec").key("volumes"), &vols, &mut f);
        let fields: Vec<&str> = f.weaker.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["spec.volumes[1].hostPath", "spec.volumes[2].nfs"]
        );
    }

    #[test]
    fn writable_volume_names_are_dns_labels() {
        assert_eq!(writable_volume_name("/tmp"), "sparkward-tmp");
        assert_eq!(
            writable_volume_name("/opt/spark/work-dir"),
            "sparkward-opt-spark-work-dir"
        );
        assert_eq!(writable_volume_name("/a//B_c/"), "sparkward-a-b-c");
        assert!(writable_volume_name(&format!("/{}", "x".repeat(100))).len() <= 63);
        assert_eq!(
            writable_volume_name(&format!("/{}/y", "x".repeat(52))),
            format!("sparkward-{}", "x".repeat(52)),
            "cut at 63 characters, without the '-' left at the end"
        );
        assert_eq!(writable_volume_name("/"), "sparkward");
    }

    #[test]
    fn template_settings_that_are_weaker_are_denied() {
        let t = mk_template(
            json!({"spec": {"hostNetwork": true, "securityContext": {"runAsUser": 0},
            "containers": [{"name": "c", "securityContext": {"privileged": true}, "ports": [{"containerPort": 1, "hostPort": 80}]}],
            "volumes": [{"name":"h","hostPath":{"path":"/"}}]}}),
        );
        let mut f = Findings::default();
        inspect_template(
            &Loc::root().key("spec").key("driver").key("template"),
            &t,
            &cfg(),
            &mut f,
        );
        let fields: Vec<&str> = f.weaker.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.driver.template.spec.hostNetwork",
                "spec.driver.template.spec.securityContext.runAsUser",
                "spec.driver.template.spec.containers[0].securityContext.privileged",
                "spec.driver.template.spec.containers[0].ports[0].hostPort",
                "spec.driver.template.spec.volumes[0].hostPath",
            ]
        );
    }

    #[test]
    fn a_template_item_of_another_shape_no_longer_hides_the_weaker_ones_beside_it() {
        // Read as one typed list, a volume named 1 or a port "80" hid every other item.
        let t = mk_template(json!({"spec": {
            "volumes": [{"name": 1}, "x", {"name": "h", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "ports": [{"hostPort": "80"}, {"hostPort": 0}, {"hostPort": 80}]}]}}));
        let mut f = Findings::default();
        inspect_template(&Loc::root().key("t"), &t, &cfg(), &mut f);
        let found: Vec<String> = f.weaker.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            vec![
                "t.spec.containers[0].ports[2].hostPort is set (container \"c\"): remove \
                 hostPort: use a Service to expose the port",
                "t.spec.volumes[2].hostPath mounts a host directory (volume \"h\"): remove it: \
                 use an emptyDir for scratch space or a persistentVolumeClaim",
            ]
        );
    }

    #[test]
    fn template_flags_of_another_type_are_read_as_unset_as_before() {
        // As `Value::as_bool` read them: only a JSON boolean is a setting. Spark's client
        // (Jackson) may coerce "true" to true; the pod it then creates is denied by the pod
        // webhook, which reads typed pods.
        let t = mk_template(json!({"spec": {"hostNetwork": "true", "hostPID": 1,
            "shareProcessNamespace": [true],
            "securityContext": {"privileged": "true", "seccompProfile": {"type": ["Unconfined"]}},
            "containers": [{"securityContext": {"allowPrivilegeEscalation": "true",
                "readOnlyRootFilesystem": "false", "runAsNonRoot": 0,
                "capabilities": {"add": "SYS_ADMIN"}}}]}}));
        let mut f = Findings::default();
        inspect_template(&Loc::root().key("t"), &t, &cfg(), &mut f);
        assert!(f.weaker.is_empty(), "{:?}", f.weaker);
    }

    #[test]
    fn a_template_id_of_a_huge_value_is_denied_with_its_text_cut() {
        let huge = json!(vec![json!({"a": 0}); 10_000]);
        for context in [
            json!({"runAsUser": huge}),
            json!({"supplementalGroups": {"a": huge}}),
        ] {
            let f = inspect_at(Level::TemplatePod, context, &cfg());
            assert_eq!(f.weaker.len(), 1);
            let problem = &f.weaker[0].problem;
            assert!(
                problem.starts_with(r#"is [{"a":0},{"a":0}"#)
                    || problem.starts_with(r#"is {"a":[{"a":0}"#),
                "{problem:.60}"
            );
            assert!(problem.len() < 1100, "{}", problem.len());
            assert!(
                problem.ends_with("..., not an integer id")
                    || problem.ends_with("..., not a list of GIDs"),
                "{problem}"
            );
        }
    }

    /// (allowedIds as (min, max) pairs, the id set, whether it is admitted).
    type IdCase = (&'static [(i64, i64)], i64, bool);
    /// (capabilities.drop, capabilities.add, the expected operation, the denied field).
    type CapCase = (
        Option<Value>,
        Option<Value>,
        Option<Value>,
        Option<&'static str>,
    );

    fn cfg_allowing(ranges: &[(i64, i64)]) -> HardeningConfig {
        HardeningConfig {
            allowed_ids: ranges
                .iter()
                .map(|&(min, max)| crate::config::IdRange { min, max })
                .collect(),
            ..cfg()
        }
    }

    /// Where an id can be set, as (level, field path prefix, how to inspect it).
    #[derive(Clone, Copy, Debug)]
    enum Level {
        /// `spec.securityContext` of a pod (or `podSecurityContext` of a SparkApplication).
        Pod,
        /// A container of a pod.
        Container,
        /// `spec.driver.securityContext` of a SparkApplication.
        SparkMain,
        /// `spec.securityContext` of a pod template.
        TemplatePod,
        /// A container of a pod template.
        TemplateContainer,
    }

    /// Inspects `context` (JSON) at `level` and returns the findings.
    fn inspect_at(level: Level, context: Value, cfg: &HardeningConfig) -> Findings {
        let mut f = Findings::default();
        let spec = Loc::root().key("spec");
        match level {
            Level::Pod => {
                let psc: PodSecurityContext = serde_json::from_value(context).unwrap();
                inspect_pod_context(&spec, "securityContext", Some(&psc), cfg, &mut f);
            }
            Level::Container | Level::SparkMain => {
                let sc: SecurityContext = serde_json::from_value(context).unwrap();
                let (loc, profile) = match level {
                    Level::Container => (spec.key("containers").index(0), ContainerProfile::Pod),
                    _ => (spec.key("driver"), ContainerProfile::SparkMain),
                };
                inspect_container(&loc, "", Some(&sc), profile, cfg, &mut f);
            }
            Level::TemplatePod => {
                let t = mk_template(json!({"spec": {"securityContext": context}}));
                inspect_template(&spec.key("template"), &t, cfg, &mut f);
            }
            Level::TemplateContainer => {
                let t = mk_template(
                    json!({"spec": {"containers": [{"name": "c", "securityContext": context}]}}),
                );
                inspect_template(&spec.key("template"), &t, cfg, &mut f);
            }
        }
        f
    }

    fn prefix(level: Level) -> &'static str {
        match level {
            Level::Pod => "spec.securityContext",
            Level::Container => "spec.containers[0].securityContext",
            Level::SparkMain => "spec.driver.securityContext",
            Level::TemplatePod => "spec.template.spec.securityContext",
            Level::TemplateContainer => "spec.template.spec.containers[0].securityContext",
        }
    }

    /// Every field that holds a group id, at every level that has it.
    fn group_fields() -> Vec<(Level, &'static str)> {
        let mut out = Vec::new();
        for level in [Level::Pod, Level::TemplatePod] {
            out.push((level, "runAsGroup"));
            out.push((level, "fsGroup"));
            out.push((level, "supplementalGroups"));
        }
        for level in [Level::Container, Level::SparkMain, Level::TemplateContainer] {
            out.push((level, "runAsGroup"));
        }
        out
    }

    /// `{key: id}`, or `{supplementalGroups: [185, id]}` (so the entry checked is index 1).
    fn with_id(key: &str, id: Value) -> (Value, String) {
        if key == "supplementalGroups" {
            (json!({key: [185, id]}), format!("{key}[1]"))
        } else {
            (json!({key: id}), key.to_string())
        }
    }

    #[test]
    fn the_root_group_is_denied_in_every_group_field_at_every_level() {
        for (level, key) in group_fields() {
            let (context, field) = with_id(key, json!(0));
            let f = inspect_at(level, context, &cfg_allowing(&[(1, 65535)]));
            let want = format!("{}.{field}", prefix(level));
            let hits: Vec<&Violation> = f.weaker.iter().filter(|v| v.field == want).collect();
            assert_eq!(hits.len(), 1, "{level:?} {key}: {:?}", f.weaker);
            assert!(hits[0].problem.contains("root group"), "{}", hits[0]);
            assert!(hits[0].fix.starts_with("remove it"), "{}", hits[0]);
            // Nothing else is wrong with these contexts.
            assert_eq!(f.weaker.len(), 1, "{level:?} {key}: {:?}", f.weaker);
        }
    }

    #[test]
    fn explicit_ids_must_be_configured_or_allowed_at_every_level() {
        // (allowedIds, id, admitted) for group fields; the configured ids are 185.
        let group_cases: &[IdCase] = &[
            (&[], 185, true),
            (&[], 186, false),
            (&[], 1000, false),
            (&[(1000, 1999)], 999, false),
            (&[(1000, 1999)], 1000, true),
            (&[(1000, 1999)], 1999, true),
            (&[(1000, 1999)], 2000, false),
            (&[(100, 100)], 100, true),
            (&[(100, 100)], 99, false),
            (&[(100, 100)], 101, false),
            (&[(100, 100), (5000, 5001)], 5001, true),
            (&[(1, 2147483647)], -1, false),
        ];
        for (level, key) in group_fields() {
            for &(ranges, id, admitted) in group_cases {
                let (context, field) = with_id(key, json!(id));
                let f = inspect_at(level, context, &cfg_allowing(ranges));
                let want = format!("{}.{field}", prefix(level));
                let hit = f.weaker.iter().find(|v| v.field == want);
                assert_eq!(
                    hit.is_none(),
                    admitted,
                    "{level:?} {key}={id} allowed {ranges:?}: {:?}",
                    f.weaker
                );
                if let Some(v) = hit {
                    assert!(
                        v.problem
                            .starts_with(&format!("is {id}, which is not an allowed GID")),
                        "{v}"
                    );
                    assert!(v.fix.contains("185"), "{v}");
                    let listed = ranges.iter().all(|r| {
                        v.fix
                            .contains(&crate::config::IdRange { min: r.0, max: r.1 }.to_string())
                    });
                    assert!(listed && v.fix.contains("hardening.allowedIds"), "{v}");
                }
            }
        }
        // The same for runAsUser, at every level that has it; 0 keeps its own message.
        let user_cases: &[IdCase] = &[
            (&[], 185, true),
            (&[], 1000, false),
            (&[(1000, 1999)], 1000, true),
            (&[(1000, 1999)], 1999, true),
            (&[(1000, 1999)], 2000, false),
            (&[(1, 2147483647)], 0, false),
        ];
        for level in [
            Level::Pod,
            Level::Container,
            Level::SparkMain,
            Level::TemplatePod,
            Level::TemplateContainer,
        ] {
            for &(ranges, id, admitted) in user_cases {
                let f = inspect_at(level, json!({"runAsUser": id}), &cfg_allowing(ranges));
                let want = format!("{}.runAsUser", prefix(level));
                let hit = f.weaker.iter().find(|v| v.field == want);
                assert_eq!(
                    hit.is_none(),
                    admitted,
                    "{level:?} runAsUser={id}: {:?}",
                    f.weaker
                );
                if let Some(v) = hit {
                    let problem = if id == 0 {
                        "is 0 (root)".to_string()
                    } else {
                        format!("is {id}, which is not an allowed UID")
                    };
                    assert!(v.problem.starts_with(&problem), "{v}");
                }
            }
        }
    }

    #[test]
    fn user_and_group_fields_accept_their_own_configured_ids() {
        let cfg = HardeningConfig {
            run_as_user: 185,
            run_as_group: 186,
            fs_group: 187,
            ..cfg()
        };
        let denied = |context: Value| -> Vec<String> {
            inspect_at(Level::Pod, context, &cfg)
                .weaker
                .into_iter()
                .map(|v| v.field)
                .collect()
        };
        // A group field may use the configured GID or fsGroup (the process holds both).
        assert!(
            denied(json!({"runAsGroup": 187, "fsGroup": 186, "supplementalGroups": [186, 187]}))
                .is_empty()
        );
        // A UID is not a GID, and the other way round.
        assert_eq!(
            denied(json!({"runAsUser": 186})),
            vec!["spec.securityContext.runAsUser"]
        );
        assert_eq!(
            denied(json!({"runAsGroup": 185})),
            vec!["spec.securityContext.runAsGroup"]
        );
    }

    #[test]
    fn the_fix_names_what_sparkward_sets_where_it_sets_something() {
        let fix = |level, context| inspect_at(level, context, &cfg()).weaker[0].fix.clone();
        assert!(fix(Level::Pod, json!({"fsGroup": 7})).starts_with("remove it (sparkward sets 185) or use an allowed GID (185; the platform team can allow others in hardening.allowedIds)"));
        // A container inherits the pod's ids: nothing is set there.
        assert!(fix(Level::Container, json!({"runAsGroup": 7})).starts_with("remove it or use"));
        assert!(
            fix(Level::Pod, json!({"supplementalGroups": [7]})).starts_with("remove it or use")
        );
        let fix = inspect_at(
            Level::Pod,
            json!({"runAsUser": 7}),
            &cfg_allowing(&[(1000, 1999), (100, 100)]),
        )
        .weaker[0]
            .fix
            .clone();
        assert_eq!(
            fix,
            "remove it (sparkward sets 185) or use an allowed UID (185, or 1000-1999, 100 from hardening.allowedIds)"
        );
    }

    #[test]
    fn template_ids_that_are_not_integers_are_denied() {
        for (level, key) in [
            (Level::TemplatePod, "runAsUser"),
            (Level::TemplatePod, "fsGroup"),
            (Level::TemplateContainer, "runAsGroup"),
        ] {
            for bad in [json!("0"), json!(0.5), json!(true)] {
                let f = inspect_at(level, json!({key: bad}), &cfg());
                assert_eq!(f.weaker.len(), 1, "{key}={bad}");
                assert_eq!(f.weaker[0].field, format!("{}.{key}", prefix(level)));
                assert!(
                    f.weaker[0].problem.contains("not an integer id"),
                    "{}",
                    f.weaker[0]
                );
            }
        }
        let f = inspect_at(Level::TemplatePod, json!({"supplementalGroups": 0}), &cfg());
        assert_eq!(
            f.weaker[0].field,
            "spec.template.spec.securityContext.supplementalGroups"
        );
        // Absent or null ids in a template are left to the pod webhook.
        let f = inspect_at(
            Level::TemplatePod,
            json!({"runAsUser": null, "supplementalGroups": null}),
            &cfg(),
        );
        assert!(f.weaker.is_empty(), "{:?}", f.weaker);
    }

    #[test]
    fn unset_groups_get_the_configured_ids() {
        let f = inspect_at(Level::Pod, json!({"runAsUser": 185}), &cfg());
        assert!(f.weaker.is_empty());
        let added: Vec<Value> = ops_json(&f);
        assert!(
            added.contains(
                &json!({"op": "add", "path": "/spec/securityContext/runAsGroup", "value": 185})
            ),
            "{added:?}"
        );
        assert!(
            added.contains(
                &json!({"op": "add", "path": "/spec/securityContext/fsGroup", "value": 185})
            ),
            "{added:?}"
        );
        let f = inspect_at(Level::SparkMain, json!({"runAsUser": 185}), &cfg());
        assert!(ops_json(&f).contains(
            &json!({"op": "add", "path": "/spec/driver/securityContext/runAsGroup", "value": 185})
        ));
        // A pod's container gets no ids of its own: the pod's apply.
        let f = inspect_at(Level::Container, json!({}), &cfg());
        assert!(
            ops_json(&f)
                .iter()
                .all(|o| !o["path"].as_str().unwrap().contains("runAsUser")
                    && !o["path"].as_str().unwrap().contains("runAsGroup")),
            "{:?}",
            ops_json(&f)
        );
    }

    #[test]
    fn capability_names_are_compared_case_insensitively_and_all_is_written_upper_case() {
        // (drop, add, expected operation, denied field)
        let cases: Vec<CapCase> = vec![
            (Some(json!(["ALL"])), None, None, None),
            (
                Some(json!(["all"])),
                None,
                Some(
                    json!({"op": "replace", "path": "/c/securityContext/capabilities/drop/0", "value": "ALL"}),
                ),
                None,
            ),
            (
                Some(json!(["NET_RAW", "All"])),
                None,
                Some(
                    json!({"op": "replace", "path": "/c/securityContext/capabilities/drop/1", "value": "ALL"}),
                ),
                None,
            ),
            // Only the first spelling is rewritten: one ALL is enough.
            (
                Some(json!(["aLL", "all"])),
                None,
                Some(
                    json!({"op": "replace", "path": "/c/securityContext/capabilities/drop/0", "value": "ALL"}),
                ),
                None,
            ),
            (Some(json!(["all", "ALL"])), None, None, None),
            (
                Some(json!(["net_raw"])),
                None,
                Some(
                    json!({"op": "add", "path": "/c/securityContext/capabilities/drop/-", "value": "ALL"}),
                ),
                None,
            ),
            (
                None,
                Some(json!([])),
                Some(
                    json!({"op": "add", "path": "/c/securityContext/capabilities/drop", "value": ["ALL"]}),
                ),
                None,
            ),
            (
                Some(json!(["all"])),
                Some(json!(["net_raw"])),
                None,
                Some("c.securityContext.capabilities.add"),
            ),
            (
                Some(json!(["ALL"])),
                Some(json!(["Net_Bind_Service"])),
                None,
                Some("c.securityContext.capabilities.add"),
            ),
        ];
        for (drop, add, op, denied) in cases {
            let mut caps = json!({});
            if let Some(d) = &drop {
                caps["drop"] = d.clone();
            }
            if let Some(a) = &add {
                caps["add"] = a.clone();
            }
            let sc: SecurityContext = serde_json::from_value(json!({
                "capabilities": caps, "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true, "runAsNonRoot": true,
            }))
            .unwrap();
            let mut f = Findings::default();
            inspect_container(
                &Loc::root().key("c"),
                "",
                Some(&sc),
                ContainerProfile::Pod,
                &cfg(),
                &mut f,
            );
            let fields: Vec<&str> = f.weaker.iter().map(|v| v.field.as_str()).collect();
            assert_eq!(
                fields,
                denied.into_iter().collect::<Vec<_>>(),
                "{drop:?} {add:?}"
            );
            if denied.is_none() {
                assert_eq!(
                    ops_json(&f),
                    op.into_iter().collect::<Vec<_>>(),
                    "{drop:?} {add:?}"
                );
            }
        }
    }

    #[test]
    fn a_lower_case_all_that_survived_is_a_violation_of_the_validating_pass() {
        let sc: SecurityContext =
            serde_json::from_value(json!({"capabilities": {"drop": ["all"]}})).unwrap();
        let mut f = Findings::default();
        let c = Loc::root().key("spec").key("containers").index(0);
        inspect_container(
            &c,
            "spark",
            Some(&sc),
            ContainerProfile::Pod,
            &cfg(),
            &mut f,
        );
        let v: Vec<Violation> = f
            .missing_as_violations()
            .into_iter()
            .filter(|v| v.field.contains("capabilities"))
            .collect();
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(
            v[0].field,
            "spec.containers[0].securityContext.capabilities.drop[0]"
        );
        assert!(
            v[0].problem.contains("'all'") && v[0].problem.contains("upper-case ALL"),
            "{}",
            v[0]
        );
        assert!(v[0].problem.contains("container \"spark\""), "{}", v[0]);
    }

    #[test]
    fn a_shared_process_namespace_is_denied_in_pods_and_templates() {
        let mut f = Findings::default();
        inspect_process_namespace(&Loc::root().key("spec"), Some(true), &mut f);
        inspect_process_namespace(&Loc::root().key("spec"), Some(false), &mut f);
        inspect_process_namespace(&Loc::root().key("spec"), None, &mut f);
        let t = mk_template(json!({"spec": {"shareProcessNamespace": true}}));
        inspect_template(
            &Loc::root().key("spec").key("executor").key("template"),
            &t,
            &cfg(),
            &mut f,
        );
        let fields: Vec<&str> = f.weaker.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.shareProcessNamespace",
                "spec.executor.template.spec.shareProcessNamespace"
            ]
        );
        assert!(f.weaker[0].fix.contains("/proc"), "{}", f.weaker[0]);
    }
}
