//! Everything that talks to the outside world: the Kubernetes API and the identity provider.

pub mod jwks;
