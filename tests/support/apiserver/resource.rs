//! The resources the stand-in serves, and how a request path maps onto one of them.

use kube::discovery::ApiResource;

use crate::support::upstream::Crd;

/// One served resource type (group/version/plural), with what the stand-in needs to know about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Whether `.status` is a subresource (then writes to the main resource ignore it).
    pub status_subresource: bool,
    /// The upstream CRD whose schema validates writes, if any.
    pub crd: Option<Crd>,
}

pub const POD: Resource = Resource {
    group: "",
    version: "v1",
    plural: "pods",
    kind: "Pod",
    namespaced: true,
    status_subresource: true,
    crd: None,
};
pub const NAMESPACE: Resource = Resource {
    group: "",
    version: "v1",
    plural: "namespaces",
    kind: "Namespace",
    namespaced: false,
    status_subresource: true,
    crd: None,
};
pub const CNP: Resource = Resource {
    group: "cilium.io",
    version: "v2",
    plural: "ciliumnetworkpolicies",
    kind: "CiliumNetworkPolicy",
    namespaced: true,
    status_subresource: true,
    crd: Some(Crd::CiliumNetworkPolicy),
};
pub const SPARK_APP: Resource = Resource {
    group: "sparkoperator.k8s.io",
    version: "v1beta2",
    plural: "sparkapplications",
    kind: "SparkApplication",
    namespaced: true,
    status_subresource: true,
    crd: Some(Crd::SparkApplication),
};
pub const SCHEDULED_SPARK_APP: Resource = Resource {
    group: "sparkoperator.k8s.io",
    version: "v1beta2",
    plural: "scheduledsparkapplications",
    kind: "ScheduledSparkApplication",
    namespaced: true,
    status_subresource: true,
    crd: Some(Crd::ScheduledSparkApplication),
};
pub const LEASE: Resource = Resource {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    kind: "Lease",
    namespaced: true,
    status_subresource: false,
    crd: None,
};

pub const SECRET: Resource = Resource {
    group: "",
    version: "v1",
    plural: "secrets",
    kind: "Secret",
    namespaced: true,
    status_subresource: false,
    crd: None,
};
pub const CONFIG_MAP: Resource = Resource {
    group: "",
    version: "v1",
    plural: "configmaps",
    kind: "ConfigMap",
    namespaced: true,
    status_subresource: false,
    crd: None,
};
pub const SERVICE_ACCOUNT: Resource = Resource {
    group: "",
    version: "v1",
    plural: "serviceaccounts",
    kind: "ServiceAccount",
    namespaced: true,
    status_subresource: false,
    crd: None,
};
/// Kubernetes' own NetworkPolicy (networking.k8s.io/v1).
pub const NETWORK_POLICY: Resource = Resource {
    group: "networking.k8s.io",
    version: "v1",
    plural: "networkpolicies",
    kind: "NetworkPolicy",
    namespaced: true,
    status_subresource: false,
    crd: None,
};

/// Everything the stand-in serves.
pub const RESOURCES: [Resource; 10] = [
    POD,
    NAMESPACE,
    CNP,
    SPARK_APP,
    SCHEDULED_SPARK_APP,
    LEASE,
    SECRET,
    CONFIG_MAP,
    SERVICE_ACCOUNT,
    NETWORK_POLICY,
];

/// Pod subresources that only pass admission and then answer as a server without kubelets does.
pub(crate) const CONNECT_SUBRESOURCES: [&str; 3] = ["exec", "attach", "portforward"];

impl Resource {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `ciliumnetworkpolicies.cilium.io`, as the API server names it in messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Pod` or `CiliumNetworkPolicy.cilium.io`, as used in "is invalid" messages.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// For `Api<DynamicObject>::namespaced_with(client, ns, &CNP.api_resource())`.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.to_string(),
            version: self.version.to_string(),
            api_version: self.api_version(),
            kind: self.kind.to_string(),
            plural: self.plural.to_string(),
        }
    }

    /// Subresources served besides the object itself.
    pub(crate) fn has_subresource(&self, sub: &str) -> bool {
        self.subresource_kind(sub).is_some()
    }

    /// The group, version and kind of what a subresource takes (as discovery and admission
    /// reviews name it), if the resource has that subresource.
    pub(crate) fn subresource_kind(
        &self,
        sub: &str,
    ) -> Option<(&'static str, &'static str, &'static str)> {
        let pod = *self == POD;
        match sub {
            "status" if self.status_subresource => Some((self.group, self.version, self.kind)),
            "ephemeralcontainers" if pod => Some(("", "v1", "Pod")),
            "binding" if pod => Some(("", "v1", "Binding")),
            "eviction" if pod => Some(("policy", "v1", "Eviction")),
            "exec" if pod => Some(("", "v1", "PodExecOptions")),
            "attach" if pod => Some(("", "v1", "PodAttachOptions")),
            "portforward" if pod => Some(("", "v1", "PodPortForwardOptions")),
            "token" if *self == SERVICE_ACCOUNT => {
                Some(("authentication.k8s.io", "v1", "TokenRequest"))
            }
            _ => None,
        }
    }

    /// Every subresource of this resource, for discovery.
    pub(crate) fn subresources(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            "status",
            "ephemeralcontainers",
            "binding",
            "eviction",
            "exec",
            "attach",
            "portforward",
            "token",
        ]
        .into_iter()
        .filter(|s| self.has_subresource(s))
    }

    /// The resource serving objects of this `apiVersion` and `kind`.
    pub fn for_kind(api_version: &str, kind: &str) -> Option<Resource> {
        RESOURCES
            .into_iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
    }

    pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<Resource> {
        RESOURCES
            .into_iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }
}

/// What a resource path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub resource: Resource,
    /// `None`: all namespaces (or a cluster-scoped resource).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses the segments after `/api/v1` or `/apis/{group}/{version}`.
pub(crate) fn parse_target(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let find = |plural: &str| Resource::find(group, version, plural);
    let target =
        |resource, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
            resource,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        };
    match rest {
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|r| r.namespaced) => {
            let resource = find(plural)?;
            match tail {
                [] => Some(target(resource, Some(ns), None, None)),
                [name] => Some(target(resource, Some(ns), Some(name), None)),
                [name, sub] if resource.has_subresource(sub) => {
                    Some(target(resource, Some(ns), Some(name), Some(sub)))
                }
                _ => None,
            }
        }
        [plural, tail @ ..] => {
            let resource = find(plural)?;
            match tail {
                [] => Some(target(resource, None, None, None)),
                [name] if !resource.namespaced => Some(target(resource, None, Some(name), None)),
                [name, sub] if !resource.namespaced && resource.has_subresource(sub) => {
                    Some(target(resource, None, Some(name), Some(sub)))
                }
                _ => None,
            }
        }
        [] => None,
    }
}
