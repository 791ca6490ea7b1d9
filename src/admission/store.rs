//! The policy store the pipeline applies a new job's CiliumNetworkPolicy through, and the
//! errors it reports. Declared here, implemented in `k8s/` (server-side apply, local files, an
//! in-memory collector), so the arrows point from the runtime down to admission.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::core::cilium::CiliumNetworkPolicy;
use crate::core::spark::RpcSecret;

/// Where jobs' RPC Secrets go: created once, before the job is admitted; a Secret of that name
/// that already exists (a retried call of the same request) is left as it is.
pub trait SecretStore: Send + Sync {
    fn create<'a>(&'a self, secret: &'a RpcSecret) -> BoxFuture<'a, Result<(), ApplyError>>;
}

/// Where job policies go. Object-safe so the pipeline can hold an `Arc<dyn PolicyStore>`.
pub trait PolicyStore: Send + Sync {
    /// Creates or updates the policy; returns once it is stored (or definitely is not).
    fn apply<'a>(
        &'a self,
        policy: &'a CiliumNetworkPolicy,
    ) -> BoxFuture<'a, Result<(), ApplyError>>;
}

/// Why a policy was not stored. The admission is denied with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The API did not confirm the policy within `policy.applyTimeout`.
    Timeout {
        namespace: String,
        name: String,
        after: Duration,
        last_error: Option<String>,
    },
    /// The API refused the policy (a 4xx other than 401/403/409/429); retrying cannot help.
    Rejected {
        namespace: String,
        name: String,
        status: u16,
        reason: String,
        message: String,
    },
    /// sparkward may not write the policy (401/403): credentials or RBAC.
    Forbidden {
        namespace: String,
        name: String,
        status: u16,
        message: String,
    },
    /// The API kept failing transiently until the retries or the time ran out.
    Unavailable {
        namespace: String,
        name: String,
        attempts: u32,
        error: String,
    },
    /// The policy cannot be sent at all (no name or namespace).
    Invalid {
        namespace: String,
        name: String,
        reason: String,
    },
    /// Local mode: the policy file could not be written.
    Write {
        namespace: String,
        name: String,
        path: String,
        error: String,
    },
}

impl ApplyError {
    /// Fixed label for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ApplyError::Timeout { .. } => "timeout",
            ApplyError::Rejected { .. } => "rejected",
            ApplyError::Forbidden { .. } => "forbidden",
            ApplyError::Unavailable { .. } => "unavailable",
            ApplyError::Invalid { .. } => "invalid",
            ApplyError::Write { .. } => "write",
        }
    }

    fn target(&self) -> (&str, &str) {
        match self {
            ApplyError::Timeout {
                namespace, name, ..
            }
            | ApplyError::Rejected {
                namespace, name, ..
            }
            | ApplyError::Forbidden {
                namespace, name, ..
            }
            | ApplyError::Unavailable {
                namespace, name, ..
            }
            | ApplyError::Invalid {
                namespace, name, ..
            }
            | ApplyError::Write {
                namespace, name, ..
            } => (namespace, name),
        }
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (namespace, name) = self.target();
        let what = if name.ends_with("-rpc") {
            "RPC Secret"
        } else {
            "CiliumNetworkPolicy"
        };
        write!(
            f,
            "the job's {what} {name} in namespace {namespace} could not be created: "
        )?;
        match self {
            ApplyError::Timeout {
                after, last_error, ..
            } => {
                write!(
                    f,
                    "the Kubernetes API did not confirm it within {}",
                    human(*after)
                )?;
                if let Some(e) = last_error {
                    write!(f, " (last error: {e})")?;
                }
            }
            ApplyError::Rejected {
                status,
                reason,
                message,
                ..
            } => write!(
                f,
                "the API server rejected it ({status} {reason}: {message})"
            )?,
            ApplyError::Forbidden {
                status, message, ..
            } => write!(
                f,
                "sparkward is not allowed to write it ({status}: {message}); an administrator \
                 must check sparkward's RBAC"
            )?,
            ApplyError::Unavailable {
                attempts, error, ..
            } => write!(
                f,
                "the Kubernetes API failed {attempts} time(s), last with: {error}"
            )?,
            ApplyError::Invalid { reason, .. } => write!(f, "{reason}")?,
            ApplyError::Write { path, error, .. } => write!(f, "writing {path} failed: {error}")?,
        }
        f.write_str("; nothing was admitted, and retrying the submission is safe")
    }
}

/// `5s`, `1.5s` or `250ms`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }
}
