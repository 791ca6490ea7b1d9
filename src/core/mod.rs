//! Pure, synchronous decision logic: no tokio, hyper, rustls or `kube::Client` in here. Every
//! function takes plain data (and an injected `now` where time matters) and returns plain data,
//! so it is tested with tables of inputs.

pub mod cilium;
pub mod labels;
pub mod policy;
