//! sparkward: a Kubernetes admission webhook that ties every Spark job to the verified identity
//! of its submitter, hardens its pods and gives it its own CiliumNetworkPolicy.
#![forbid(unsafe_code)]

pub mod config;
pub mod core;
pub mod k8s;
