//! Everything that talks to the Kubernetes API (and its local stand-ins): lookups for admission,
//! policy apply, the JWKS fetcher, the lifecycle controller.

pub mod cache;
pub mod jwks;
pub mod lease;
pub mod lifecycle;
pub mod local;
pub mod policy;
pub mod secrets;
pub mod state;

use kube::core::ApiResource;

fn crd_resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: format!("{group}/{version}"),
        kind: kind.to_string(),
        plural: plural.to_string(),
    }
}

/// sparkoperator.k8s.io/v1beta2 SparkApplication.
pub fn spark_application_resource() -> ApiResource {
    crd_resource(
        "sparkoperator.k8s.io",
        "v1beta2",
        "SparkApplication",
        "sparkapplications",
    )
}

/// sparkoperator.k8s.io/v1beta2 ScheduledSparkApplication.
pub fn scheduled_spark_application_resource() -> ApiResource {
    crd_resource(
        "sparkoperator.k8s.io",
        "v1beta2",
        "ScheduledSparkApplication",
        "scheduledsparkapplications",
    )
}

/// cilium.io/v2 CiliumNetworkPolicy.
pub fn cilium_network_policy_resource() -> ApiResource {
    crd_resource(
        "cilium.io",
        "v2",
        "CiliumNetworkPolicy",
        "ciliumnetworkpolicies",
    )
}
