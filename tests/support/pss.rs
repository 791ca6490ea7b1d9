//! An independent checker of the Pod Security Standard "restricted" profile (Kubernetes 1.33),
//! written from the standard's text, not from sparkward's code: tests hold sparkward's output
//! to it.

use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};

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

/// Every way `pod` breaks the restricted profile; empty when it complies.
pub fn restricted_violations(pod: &Pod) -> Vec<String> {
    let mut out = Vec::new();
    let Some(spec) = &pod.spec else {
        return vec!["no spec".into()];
    };
    let psc = spec.security_context.clone().unwrap_or_default();
    // Baseline: host namespaces.
    for (name, v) in [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ] {
        if v == Some(true) {
            out.push(format!("{name} is true"));
        }
    }
    if psc.windows_options.as_ref().and_then(|w| w.host_process) == Some(true) {
        out.push("pod windowsOptions.hostProcess".into());
    }
    for s in psc.sysctls.iter().flatten() {
        if !SAFE_SYSCTLS.contains(&s.name.as_str()) {
            out.push(format!("unsafe sysctl {}", s.name));
        }
    }
    // Restricted: volume types.
    for v in spec.volumes.iter().flatten() {
        let allowed = v.config_map.is_some()
            || v.csi.is_some()
            || v.downward_api.is_some()
            || v.empty_dir.is_some()
            || v.ephemeral.is_some()
            || v.persistent_volume_claim.is_some()
            || v.projected.is_some()
            || v.secret.is_some();
        if !allowed {
            out.push(format!("volume {} has a disallowed type", v.name));
        }
    }
    let pod_non_root = psc.run_as_non_root == Some(true);
    let pod_seccomp = psc.seccomp_profile.as_ref().map(|p| p.type_.as_str());
    if pod_seccomp == Some("Unconfined") {
        out.push("pod seccomp Unconfined".into());
    }
    if psc.run_as_user == Some(0) {
        out.push("pod runAsUser 0".into());
    }
    if let Some(se) = &psc.se_linux_options {
        check_selinux("pod", se, &mut out);
    }
    let all: Vec<(&str, &Container)> = spec
        .containers
        .iter()
        .map(|c| ("container", c))
        .chain(
            spec.init_containers
                .iter()
                .flatten()
                .map(|c| ("initContainer", c)),
        )
        .collect();
    let mut kinds: Vec<(String, Option<SecurityContext>, Vec<Option<i32>>)> = all
        .iter()
        .map(|(kind, c)| {
            (
                format!("{kind} {}", c.name),
                c.security_context.clone(),
                c.ports.iter().flatten().map(|p| p.host_port).collect(),
            )
        })
        .collect();
    for e in spec.ephemeral_containers.iter().flatten() {
        kinds.push((
            format!("ephemeralContainer {}", e.name),
            e.security_context.clone(),
            e.ports.iter().flatten().map(|p| p.host_port).collect(),
        ));
    }
    for (who, sc, host_ports) in kinds {
        if host_ports.iter().any(|p| p.is_some_and(|p| p != 0)) {
            out.push(format!("{who}: hostPort"));
        }
        let sc = sc.unwrap_or_default();
        if sc.privileged == Some(true) {
            out.push(format!("{who}: privileged"));
        }
        if sc.allow_privilege_escalation != Some(false) {
            out.push(format!("{who}: allowPrivilegeEscalation not false"));
        }
        let caps = sc.capabilities.clone().unwrap_or_default();
        if !caps.drop.iter().flatten().any(|c| c == "ALL") {
            out.push(format!("{who}: capabilities.drop lacks ALL"));
        }
        if caps.add.iter().flatten().any(|c| c != "NET_BIND_SERVICE") {
            out.push(format!("{who}: adds capabilities"));
        }
        let non_root = match sc.run_as_non_root {
            Some(v) => v,
            None => pod_non_root,
        };
        if !non_root {
            out.push(format!("{who}: runAsNonRoot not true"));
        }
        if sc.run_as_user == Some(0) {
            out.push(format!("{who}: runAsUser 0"));
        }
        let seccomp = sc
            .seccomp_profile
            .as_ref()
            .map(|p| p.type_.as_str())
            .or(pod_seccomp);
        if !matches!(seccomp, Some("RuntimeDefault") | Some("Localhost")) {
            out.push(format!("{who}: seccomp not RuntimeDefault/Localhost"));
        }
        if sc.proc_mount.as_deref().is_some_and(|p| p != "Default") {
            out.push(format!("{who}: procMount"));
        }
        if sc.windows_options.as_ref().and_then(|w| w.host_process) == Some(true) {
            out.push(format!("{who}: hostProcess"));
        }
        if sc
            .app_armor_profile
            .as_ref()
            .is_some_and(|p| p.type_ == "Unconfined")
        {
            out.push(format!("{who}: AppArmor Unconfined"));
        }
        if let Some(se) = &sc.se_linux_options {
            check_selinux(&who, se, &mut out);
        }
    }
    out
}

fn check_selinux(
    who: &str,
    se: &k8s_openapi::api::core::v1::SELinuxOptions,
    out: &mut Vec<String>,
) {
    let allowed = [
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ];
    if !allowed.contains(&se.type_.as_deref().unwrap_or("")) {
        out.push(format!("{who}: SELinux type"));
    }
    if se.user.as_deref().is_some_and(|u| !u.is_empty())
        || se.role.as_deref().is_some_and(|r| !r.is_empty())
    {
        out.push(format!("{who}: SELinux user/role"));
    }
}

/// Containers (regular and init) that do not mount each writable directory: the root
/// filesystem is read-only, so Spark needs somewhere to write.
pub fn writable_dirs_missing(pod: &Pod, dirs: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(spec) = &pod.spec else { return out };
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for dir in dirs {
            if !c
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == *dir)
            {
                out.push(format!("container {} does not mount {dir}", c.name));
            }
        }
    }
    out
}
