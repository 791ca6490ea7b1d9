//! Building the AdmissionReview v1 response. Every answer is made here, from a decision, so the
//! wire format is right in one place: `response.patch` is a base64 string (the documented
//! format), an empty plan sends no patch, denials carry a Status with a message, and the
//! response always echoes `request.uid`.

use std::collections::BTreeMap;

use json_patch::PatchOperation;
use serde::Serialize;
use serde_json::Value;

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

/// `response.patch`: the JSON Patch as base64. Base64 never needs escaping, so the answer
/// copies these 2–3 KB into its JSON text (`ReviewResponse::to_json`) instead of escaping them
/// byte by byte.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedPatch(String);

impl Serialize for EncodedPatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl EncodedPatch {
    fn new(ops: &[PatchOperation]) -> Result<Self, serde_json::Error> {
        let json = patch_json(ops)?;
        Ok(Self(base64_simd::STANDARD.encode_to_string(json)))
    }

    /// The base64 text.
    pub fn base64(&self) -> &str {
        &self.0
    }
}

/// The JSON text of a patch, as serde writes it (`[{"op":"add","path":…,"value":…},…]`),
/// with the operation names and keys written as the constant text they are rather than
/// escaped one by one: a review's answer carries 19–28 operations.
fn patch_json(ops: &[PatchOperation]) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(96 * ops.len() + 2);
    out.push(b'[');
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let (name, path, value) = match op {
            PatchOperation::Add(o) => ("add", &o.path, Some(&o.value)),
            PatchOperation::Remove(o) => ("remove", &o.path, None),
            PatchOperation::Replace(o) => ("replace", &o.path, Some(&o.value)),
            PatchOperation::Test(o) => ("test", &o.path, Some(&o.value)),
            // Not built by sparkward: serde's own text.
            other => {
                serde_json::to_writer(&mut out, other)?;
                continue;
            }
        };
        out.extend_from_slice(b"{\"op\":\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\",\"path\":");
        write_str(&mut out, path.as_str())?;
        if let Some(value) = value {
            out.extend_from_slice(b",\"value\":");
            write_value(&mut out, value)?;
        }
        out.push(b'}');
    }
    out.push(b']');
    Ok(out)
}

/// `value` as serde writes it, with its strings and keys through `write_str`.
fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), serde_json::Error> {
    match value {
        Value::String(s) => write_str(out, s),
        Value::Array(items) => write_seq(out, items, write_value),
        Value::Object(map) => write_map(out, map.iter().map(|(k, v)| (k.as_str(), v)), write_value),
        // null, booleans and numbers: serde's text.
        other => serde_json::to_writer(&mut *out, other),
    }
}

/// `[…]`, each item written by `each`.
pub(crate) fn write_seq<I: IntoIterator>(
    out: &mut Vec<u8>,
    items: I,
    mut each: impl FnMut(&mut Vec<u8>, I::Item) -> Result<(), serde_json::Error>,
) -> Result<(), serde_json::Error> {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item)?;
    }
    out.push(b']');
    Ok(())
}

/// `{…}`, keys through `write_str`, each value written by `each`.
fn write_map<'k, V>(
    out: &mut Vec<u8>,
    entries: impl IntoIterator<Item = (&'k str, V)>,
    mut each: impl FnMut(&mut Vec<u8>, V) -> Result<(), serde_json::Error>,
) -> Result<(), serde_json::Error> {
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key)?;
        out.push(b':');
        each(out, value)?;
    }
    out.push(b'}');
    Ok(())
}

/// `s` as a JSON string. Nearly every string of an answer (paths, label values, names) needs
/// no escape: those are copied whole after one pass that looks at eight bytes at a time,
/// instead of serde's byte-by-byte escape loop; the rest are written by serde.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return Ok(());
    }
    serde_json::to_writer(&mut *out, s)
}

/// Whether serde_json would escape any byte of `bytes`: control characters, `"` and `\`
/// (it leaves DEL and everything above ASCII as it is). Eight bytes at a time with the
/// "has a byte less than n / equal to zero" word tricks, which are exact about whether such a
/// byte exists (a borrow can only mark bytes above one that really matches).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGH != 0;
    let equal = |v: u64, b: u8| below(v ^ (ONES * u64::from(b)), 1);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        if below(v, 0x20) || equal(v, b'"') || equal(v, b'\\') {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

impl ReviewResponse {
    /// The answer's JSON text: serde's, with the base64 patch copied in (see `EncodedPatch`).
    pub fn to_json(&self) -> Vec<u8> {
        let r = &self.response;
        let mut out = Vec::with_capacity(
            256 + r.patch.as_ref().map_or(0, |p| p.0.len())
                + r.audit_annotations
                    .values()
                    .map(|v| v.len() + 24)
                    .sum::<usize>(),
        );
        // Plain strings, numbers and maps: serialisation cannot fail.
        match write_review(&mut out, self) {
            Ok(()) => out,
            Err(_) => b"{}".to_vec(),
        }
    }
}

fn write_review(out: &mut Vec<u8>, review: &ReviewResponse) -> Result<(), serde_json::Error> {
    let r = &review.response;
    out.extend_from_slice(b"{\"apiVersion\":");
    write_str(out, review.api_version)?;
    out.extend_from_slice(b",\"kind\":");
    write_str(out, review.kind)?;
    out.extend_from_slice(b",\"response\":{\"uid\":");
    write_str(out, &r.uid)?;
    out.extend_from_slice(if r.allowed {
        b",\"allowed\":true"
    } else {
        b",\"allowed\":false"
    });
    if let Some(status) = &r.status {
        out.extend_from_slice(b",\"status\":");
        serde_json::to_writer(&mut *out, status)?;
    }
    if let Some(patch) = &r.patch {
        out.extend_from_slice(b",\"patch\":\"");
        out.extend_from_slice(patch.0.as_bytes());
        out.push(b'"');
    }
    if let Some(patch_type) = r.patch_type {
        out.extend_from_slice(b",\"patchType\":");
        serde_json::to_writer(&mut *out, patch_type)?;
    }
    if !r.audit_annotations.is_empty() {
        out.extend_from_slice(b",\"auditAnnotations\":");
        let entries = r.audit_annotations.iter().map(|(k, v)| (*k, v.as_str()));
        write_map(out, entries, write_str)?;
    }
    if !r.warnings.is_empty() {
        out.extend_from_slice(b",\"warnings\":");
        serde_json::to_writer(&mut *out, &r.warnings)?;
    }
    out.extend_from_slice(b"}}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
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
    fn the_written_text_is_serdes() {
        // Every operation kind, with values and paths that need escaping.
        let ops: Vec<PatchOperation> = serde_json::from_value(json!([
            {"op":"add","path":"/metadata/labels/sparkward.io~1job-id","value":"sj-\"x\"\\\n"},
            {"op":"add","path":"/spec/securityContext","value":{"runAsUser":185,"b":[true,null,1.5]}},
            {"op":"remove","path":"/metadata/annotations/a\"b"},
            {"op":"replace","path":"/spec/x","value":{}},
            {"op":"test","path":"/é","value":"\u{1}"},
            {"op":"move","from":"/a","path":"/b"},
            {"op":"copy","from":"/a","path":"/c"}
        ]))
        .unwrap();
        assert_eq!(patch_json(&ops).unwrap(), serde_json::to_vec(&ops).unwrap());
        assert_eq!(patch_json(&[]).unwrap(), b"[]");

        // Strings of every length around the 8-byte words, with each byte serde escapes (and
        // its neighbours, which it does not) at the start, in the middle and at the end:
        // written as serde does.
        let specials = [
            "\"", "\\", "\n", "\u{0}", "\u{1f}", "\u{7f}", " ", "!", "#", "[", "]", "é", "/", "~",
        ];
        for len in [0, 1, 6, 7, 8, 9, 15, 16, 17, 23, 24, 25, 40] {
            for special in specials {
                for at in [0, len / 2, len] {
                    let mut text = "a".repeat(len);
                    text.insert_str(at, special);
                    let value = json!({ text.clone(): [text.clone(), {"k": text.clone()}] });
                    let op: Vec<PatchOperation> = serde_json::from_value(
                        json!([{ "op": "add", "path": format!("/{}", text.replace('~', "~0").replace('/', "~1")), "value": value }]),
                    )
                    .unwrap();
                    assert_eq!(patch_json(&op).unwrap(), serde_json::to_vec(&op).unwrap());
                    assert_eq!(
                        needs_escape(text.as_bytes()),
                        serde_json::to_string(&text).unwrap().len() != text.len() + 2,
                        "{text:?}"
                    );
                }
            }
        }

        let mut annotations = BTreeMap::new();
        annotations.insert("decision", "allowed".to_string());
        annotations.insert("subject", "a\"l\\ice\u{7f}".to_string());
        let answers = [
            Response::allow("u1"),
            Response::allow("u\"2")
                .with_patch(&ops)
                .with_audit_annotations(annotations.clone())
                .with_warnings(vec!["w\"1".into(), "w2".into()]),
            Response::deny("u3", 403, "no \"way\"\n").with_audit_annotations(annotations),
            Response::deny("u4", 599, "other"),
        ];
        for answer in answers {
            let review = answer.into_review();
            assert_eq!(
                String::from_utf8(review.to_json()).unwrap(),
                serde_json::to_string(&review).unwrap()
            );
        }
    }

    #[test]
    fn the_patch_is_standard_padded_base64() {
        // The SIMD encoder against the base64 crate's standard engine, for every remainder.
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            assert_eq!(
                base64_simd::STANDARD.encode_to_string(&bytes),
                base64::engine::general_purpose::STANDARD.encode(&bytes),
                "{len} bytes"
            );
        }
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
