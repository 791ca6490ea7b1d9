//! sparkward: a Kubernetes admission webhook that ties every Spark job to the verified identity
//! of its submitter, hardens its pods and gives it its own CiliumNetworkPolicy.
#![forbid(unsafe_code)]
// Cargo.toml denies unwrap/expect; tests may use them (STYLE.md: "outside tests").
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod core;
pub mod k8s;
