//! Pure, synchronous decision logic: no tokio, hyper, rustls or `kube::Client` in here. Every
//! function takes plain data (and an injected `now` where time matters) and returns plain data,
//! so it is tested with tables of inputs.

pub mod cilium;
pub mod decision;
pub mod hardening;
pub mod identity;
pub mod images;
pub mod json;
pub mod keys;
pub mod labels;
pub mod lifecycle;
pub mod loose;
pub mod mutation;
pub mod objects;
pub mod ownership;
pub mod policy;
pub mod spark;
pub mod stamp;
pub mod tokens;
