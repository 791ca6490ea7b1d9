//! Shared test support: the running binary, review builders, (and the stand-in API server).
#![allow(dead_code)]

pub mod cli;
pub mod idp;
pub mod pss;
pub mod reviews;
pub mod scenario;
pub mod webhook;
