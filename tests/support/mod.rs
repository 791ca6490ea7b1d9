//! Shared test support: the stand-in API server, a real control plane (`cluster`), the running
//! binary, review builders, a test identity provider, the restricted-profile checker and the
//! upstream schemas.
#![allow(dead_code, unused_imports)]

pub mod apiserver;
pub mod cli;
pub mod cluster;
pub mod idp;
pub mod pss;
pub mod reviews;
pub mod scenario;
pub mod testhook;
pub mod upstream;
pub mod webhook;
