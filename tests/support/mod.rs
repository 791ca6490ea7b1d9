//! Test support shared by the integration tests: the stateful stand-in for kube-apiserver and
//! access to the pinned upstream CRD schemas and examples. Each test binary uses a subset.
#![allow(dead_code, unused_imports)]

pub mod apiserver;
pub mod upstream;
