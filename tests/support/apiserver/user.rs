//! Who a request comes from: the user the stand-in authenticates (a bearer token it knows, or its
//! default administrator), and impersonation on top, resolved the way kube-apiserver's
//! impersonation filter resolves it. The result is the `userInfo` every admission review carries.
//!
//! Impersonation headers: `Impersonate-User`, `Impersonate-Group` (repeated), `Impersonate-Uid`
//! and `Impersonate-Extra-<key>` (repeated; the key percent-escaped, as client-go and kube-rs send
//! it). Without `Impersonate-User` the other headers are ignored (the real server refuses them),
//! and every user may impersonate anyone (no RBAC here).

use std::collections::{BTreeMap, HashMap};

use http::HeaderMap;

/// A Kubernetes user as admission webhooks see it in `request.userInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    /// `userInfo.extra`: keys as the server reports them (header keys arrive lower-cased).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The group every authenticated, non-anonymous user belongs to.
pub const AUTHENTICATED: &str = "system:authenticated";
const SA_PREFIX: &str = "system:serviceaccount:";

impl User {
    /// A user with no groups of its own; when impersonated, the server adds
    /// `system:authenticated` (and the service-account groups for `system:serviceaccount:..`).
    pub fn new(username: &str) -> Self {
        Self {
            username: username.to_string(),
            ..Self::default()
        }
    }

    /// The stand-in's default identity for requests without a known token: a cluster admin, like
    /// the client-certificate user of an envtest control plane.
    pub fn admin() -> Self {
        Self::new("system:admin").group("system:masters")
    }

    /// `system:serviceaccount:<namespace>:<name>`.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self::new(&format!("{SA_PREFIX}{namespace}:{name}"))
    }

    /// A service account whose token is bound to a pod, with the extras kube-apiserver derives
    /// from such a token (`authentication.kubernetes.io/pod-name` and `.../pod-uid`).
    pub fn bound_to_pod(namespace: &str, service_account: &str, pod: &str, pod_uid: &str) -> Self {
        Self::service_account(namespace, service_account)
            .extra("authentication.kubernetes.io/pod-name", &[pod])
            .extra("authentication.kubernetes.io/pod-uid", &[pod_uid])
    }

    pub fn group(mut self, group: &str) -> Self {
        self.groups.push(group.to_string());
        self
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.to_string());
        self
    }

    pub fn extra(mut self, key: &str, values: &[&str]) -> Self {
        self.extra
            .entry(key.to_string())
            .or_default()
            .extend(values.iter().map(|v| v.to_string()));
        self
    }

    /// The user as the server resolves it after authentication or impersonation: service
    /// accounts without explicit groups get `system:serviceaccounts` and
    /// `system:serviceaccounts:<namespace>`, and `system:authenticated` is appended.
    pub fn resolved(mut self) -> Self {
        if self.groups.is_empty()
            && let Some(rest) = self.username.strip_prefix(SA_PREFIX)
            && let Some((namespace, _)) = rest.split_once(':')
        {
            self.groups = vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{namespace}"),
            ];
        }
        if self.username != "system:anonymous" && !self.groups.iter().any(|g| g == AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.to_string());
        }
        self
    }

    /// `userInfo` as JSON in kube-apiserver's field order (username, uid, groups, extra; empty
    /// fields left out).
    pub(crate) fn to_json(&self) -> String {
        let mut out = String::from("{");
        let mut field = |name: &str, value: String| {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&format!("\"{name}\":{value}"));
        };
        field("username", json_string(&self.username));
        if let Some(uid) = self.uid.as_deref().filter(|u| !u.is_empty()) {
            field("uid", json_string(uid));
        }
        if !self.groups.is_empty() {
            field(
                "groups",
                serde_json::to_string(&self.groups).unwrap_or_default(),
            );
        }
        if !self.extra.is_empty() {
            field(
                "extra",
                serde_json::to_string(&self.extra).unwrap_or_default(),
            );
        }
        out.push('}');
        out
    }

    /// `userInfo` as a JSON value.
    pub(crate) fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.to_json()).unwrap_or_default()
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Percent-decodes an extra key from its header name.
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The requesting user: the bearer token's user (or the default admin), then impersonation.
pub(crate) fn from_headers(headers: &HeaderMap, tokens: &HashMap<String, User>) -> User {
    let text = |v: &http::HeaderValue| v.to_str().ok().map(str::to_string);
    let authenticated = headers
        .get(http::header::AUTHORIZATION)
        .and_then(text)
        .and_then(|a| a.strip_prefix("Bearer ").map(|t| t.trim().to_string()))
        .and_then(|token| tokens.get(&token).cloned())
        .unwrap_or_else(User::admin);
    let Some(username) = headers.get("impersonate-user").and_then(text) else {
        return authenticated.resolved();
    };
    let mut user = User::new(&username);
    user.groups = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(text)
        .collect();
    user.uid = headers.get("impersonate-uid").and_then(text);
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-")
            && let Some(value) = text(value)
        {
            user.extra.entry(unescape(key)).or_default().push(value);
        }
    }
    user.resolved()
}
