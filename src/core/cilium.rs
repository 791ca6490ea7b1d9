//! Cilium policy model and the lint applied to scope rules and rendered policies.
//!
//! Work in progress: the full typed model and lint land with the policy issue (#5).

/// Error from the Cilium lint.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct LintError(pub String);

/// Checks one egress rule from the scope mapping.
pub fn lint_egress_rule(rule: &serde_json::Value) -> Result<(), LintError> {
    if !rule.is_object() {
        return Err(LintError("an egress rule must be a mapping".into()));
    }
    Ok(())
}
