//! Everything that talks to the Kubernetes API (or stands in for it in local mode): applying
//! job policies today; caches and the lifecycle loop join here.

pub mod local;
pub mod policy;
