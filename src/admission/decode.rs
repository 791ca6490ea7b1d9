//! Decoding an AdmissionReview v1 request body into typed parts.
//!
//! The request is parsed once into borrowed typed structs; `object` and `oldObject` stay raw
//! until the router knows which view to parse them into. A body that is not a usable review is
//! classified: when its `request.uid` can still be read it gets a denial with that uid (HTTP
//! 200), otherwise a 400 (`Unusable`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// API group/version/kind of `request.kind`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

/// `request.resource`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Gvr {
    pub group: String,
    pub version: String,
    pub resource: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// `request.userInfo`: who made the request.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// `userInfo.extra` key set for service-account tokens bound to a pod.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
/// `userInfo.extra` key with the uid of that pod.
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";

impl UserInfo {
    /// The pod a service-account token is bound to, with its uid when the token carries it.
    pub fn bound_pod(&self) -> Option<(&str, Option<&str>)> {
        let name = self.extra.get(EXTRA_POD_NAME)?.first()?;
        let uid = self
            .extra
            .get(EXTRA_POD_UID)
            .and_then(|v| v.first())
            .map(String::as_str);
        Some((name.as_str(), uid))
    }

    /// The namespace and name of the service account, when the requester is one.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        let rest = self.username.strip_prefix("system:serviceaccount:")?;
        rest.split_once(':')
    }
}

/// `request` of an AdmissionReview v1.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    pub uid: String,
    pub kind: Gvk,
    #[serde(default)]
    pub resource: Gvr,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub user_info: UserInfo,
    #[serde(borrow, default)]
    pub object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub old_object: Option<&'a RawValue>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

impl Request<'_> {
    pub fn is_dry_run(&self) -> bool {
        self.dry_run == Some(true)
    }

    /// The object, unless it is absent or JSON `null`.
    pub fn object(&self) -> Option<&RawValue> {
        self.object.filter(|o| o.get() != "null")
    }

    pub fn old_object(&self) -> Option<&RawValue> {
        self.old_object.filter(|o| o.get() != "null")
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(borrow)]
    request: Option<Request<'a>>,
}

/// Only `request.uid`, for answering a body that fails the full decode.
#[derive(Debug, Deserialize)]
struct UidOnly {
    request: UidRequest,
}

#[derive(Debug, Deserialize)]
struct UidRequest {
    uid: String,
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not usable, and no uid to answer with: HTTP 400.
    #[error("{0}")]
    Unusable(String),
    /// Not usable, but a uid was found: answered with a denial.
    #[error("{message}")]
    Denied { uid: String, message: String },
}

pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Decodes an AdmissionReview v1 body.
pub fn decode(body: &[u8]) -> Result<Request<'_>, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Unusable(
            "empty body: send an AdmissionReview (admission.k8s.io/v1) as JSON".into(),
        ));
    }
    let envelope: Envelope<'_> = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => {
            return Err(classify(
                body,
                format!("body is not a valid AdmissionReview: {e}"),
            ));
        }
    };
    if envelope.kind.as_deref() != Some("AdmissionReview") {
        return Err(classify(
            body,
            format!(
                "kind is {}, expected AdmissionReview",
                envelope.kind.as_deref().unwrap_or("missing")
            ),
        ));
    }
    if envelope.api_version.as_deref() != Some(API_VERSION) {
        return Err(classify(
            body,
            format!(
                "apiVersion is {}, only {API_VERSION} is supported: set admissionReviewVersions: [v1] in the webhook configuration",
                envelope.api_version.as_deref().unwrap_or("missing")
            ),
        ));
    }
    let request = envelope
        .request
        .ok_or_else(|| DecodeError::Unusable("AdmissionReview has no request".to_string()))?;
    if request.uid.is_empty() {
        return Err(DecodeError::Unusable("request.uid is empty".into()));
    }
    Ok(request)
}

fn classify(body: &[u8], message: String) -> DecodeError {
    match serde_json::from_slice::<UidOnly>(body) {
        Ok(u) if !u.request.uid.is_empty() => DecodeError::Denied {
            uid: u.request.uid,
            message,
        },
        _ => DecodeError::Unusable(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(request: &str) -> String {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{request}}}"#
        )
    }

    #[test]
    fn decodes_a_pod_create() {
        let body = review(
            r#"{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},
            "resource":{"group":"","version":"v1","resource":"pods"},"namespace":"ns","operation":"CREATE",
            "userInfo":{"username":"system:serviceaccount:ns:spark","extra":{"authentication.kubernetes.io/pod-name":["drv"]}},
            "object":{"metadata":{}},"oldObject":null,"dryRun":false}"#,
        );
        let r = decode(body.as_bytes()).unwrap();
        assert_eq!(r.uid, "u1");
        assert_eq!(r.kind.kind, "Pod");
        assert_eq!(r.operation, Operation::Create);
        assert!(r.object().is_some());
        assert!(r.old_object().is_none());
        assert_eq!(r.user_info.bound_pod(), Some(("drv", None)));
        assert_eq!(r.user_info.service_account(), Some(("ns", "spark")));
    }

    #[test]
    fn classifies_bad_bodies() {
        let cases: &[(&str, bool)] = &[
            ("", false),
            ("   ", false),
            ("{", false),
            ("[]", false),
            (r#"{"foo":1}"#, false),
            (
                r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"x"}}"#,
                true,
            ),
            (
                r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"x","operation":"EXPLODE","kind":{}}}"#,
                true,
            ),
            (
                r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#,
                false,
            ),
        ];
        for (body, has_uid) in cases {
            match decode(body.as_bytes()) {
                Err(DecodeError::Denied { uid, .. }) => assert!(*has_uid && uid == "x", "{body}"),
                Err(DecodeError::Unusable(_)) => assert!(!has_uid, "{body}"),
                Ok(_) => panic!("decoded {body}"),
            }
        }
    }
}
