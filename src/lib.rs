//! sparkward: a Kubernetes admission webhook that ties every Spark job to the verified identity
//! of its submitter, hardens its pods and gives it its own CiliumNetworkPolicy.
//!
//! Layers (one direction): `core` decides on plain data; `admission` turns bytes into a decision
//! and a decision into a review; `server` is TLS and HTTP; `k8s` owns every API call; `app`
//! wires them together.
#![forbid(unsafe_code)]

pub mod admission;
pub mod app;
pub mod certs;
pub mod cli;
pub mod config;
pub mod core;
pub mod devidp;
pub mod k8s;
pub mod plugin;
pub mod server;
pub mod shutdown;
pub mod stamp_keys;
pub mod telemetry;
