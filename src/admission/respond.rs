//! Building the AdmissionReview v1 response. Every answer is made here, from a decision, so the
//! wire format is right in one place: `response.patch` is a base64 string (the documented
//! format), an empty plan sends no patch, denials carry a Status with a message, and the
//! response always echoes `request.uid`.

use std::collections::BTreeMap;

use base64::Engine;
use json_patch::PatchOperation;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::admission::decode::API_VERSION;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub response: Response,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub code: u16,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<EncodedPatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Response {
    /// An allowed answer without a patch.
    pub fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_string(),
            allowed: true,
            status: None,
            patch: None,
            patch_type: None,
            audit_annotations: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// A denial with the message the user reads and an HTTP-like code (403 policy, 400 bad
    /// input, 503 unavailable, 504 deadline).
    pub fn deny(uid: &str, code: u16, message: impl Into<String>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            403 => "Forbidden",
            504 => "Timeout",
            _ => "ServiceUnavailable",
        };
        Self {
            allowed: false,
            status: Some(Status {
                code,
                message: message.into(),
                reason: Some(reason),
            }),
            ..Self::allow(uid)
        }
    }

    /// Attaches a JSON Patch; an empty one is not sent.
    pub fn with_patch(mut self, ops: &[PatchOperation]) -> Self {
        if ops.is_empty() {
            return self;
        }
        // Serialising patch operations built from plain JSON values cannot fail; if it ever
        // did, answering without the patch would admit an unhardened object, so deny instead.
        match EncodedPatch::new(ops) {
            Ok(patch) => {
                self.patch = Some(patch);
                self.patch_type = Some("JSONPatch");
                self
            }
            Err(e) => Self::deny(&self.uid, 503, format!("failed to encode the patch: {e}")),
        }
    }

    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }

    pub fn with_audit_annotations(mut self, annotations: BTreeMap<&'static str, String>) -> Self {
        self.audit_annotations = annotations;
        self
    }

    pub fn into_review(self) -> ReviewResponse {
        ReviewResponse {
            api_version: API_VERSION,
            kind: "AdmissionReview",
            response: self,
        }
    }
}

/// `response.patch`: the JSON Patch as base64, kept as its finished JSON string token. Base64
/// never needs escaping, so the answer copies these 2–3 KB instead of escaping them byte by byte.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct EncodedPatch(Box<RawValue>);

impl EncodedPatch {
    fn new(ops: &[PatchOperation]) -> Result<Self, serde_json::Error> {
        let json = serde_json::to_vec(ops)?;
        let mut token = String::with_capacity(json.len().div_ceil(3) * 4 + 2);
        token.push('"');
        base64::engine::general_purpose::STANDARD.encode_string(json, &mut token);
        token.push('"');
        RawValue::from_string(token).map(Self)
    }

    /// The base64 text, without the quotes.
    pub fn base64(&self) -> &str {
        let token = self.0.get();
        token.get(1..token.len() - 1).unwrap_or_default()
    }
}

impl PartialEq for EncodedPatch {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl ReviewResponse {
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings, numbers and maps: serialisation cannot fail.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_is_a_base64_string() {
        let op: PatchOperation =
            serde_json::from_value(json!({"op":"add","path":"/a","value":1})).unwrap();
        let r = Response::allow("u").with_patch(&[op]).into_review();
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(v["response"]["patchType"], "JSONPatch");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(v["response"]["patch"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&decoded).unwrap(),
            json!([{"op":"add","path":"/a","value":1}])
        );
        let patch = r.response.patch.as_ref().unwrap();
        assert_eq!(patch.base64(), v["response"]["patch"].as_str().unwrap());
    }

    #[test]
    fn empty_patch_is_not_sent() {
        let r = Response::allow("u").with_patch(&[]);
        assert!(r.patch.is_none() && r.patch_type.is_none());
    }

    #[test]
    fn denial_carries_uid_and_message() {
        let v: serde_json::Value =
            serde_json::from_slice(&Response::deny("u9", 403, "no").into_review().to_json())
                .unwrap();
        assert_eq!(
            v,
            json!({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{
                "uid":"u9","allowed":false,"status":{"code":403,"message":"no","reason":"Forbidden"}}})
        );
    }
}
