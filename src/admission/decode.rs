//! Decoding an AdmissionReview v1 request body into typed parts.
//!
//! The request is parsed once into borrowed typed structs; `object` and `oldObject` stay raw
//! until the router knows which view to parse them into. A body that is not a usable review is
//! classified: when its `request.uid` can still be read it gets a denial with that uid (HTTP
//! 200), otherwise a 400 (`Unusable`).
//!
//! Fast path: a Pod CREATE's object (the review sent for every Spark pod) is parsed into the
//! typed `Pod` view during the envelope pass instead of being captured raw and parsed again,
//! which halves the JSON work of an executor pod review. Any failure on that path (a bad object,
//! an unusual field order, a malformed envelope) falls back to the plain two-step decode, so
//! every answer and every message is exactly the plain path's.
//!
//! Second fast path, for the validating webhook only (`decode_for` with `Mode::Validate`): the
//! `object` and `oldObject` of a Pod UPDATE (no subresource, `status` or `resize`) are read
//! into `PodParts` in the same pass: the typed metadata, what an UPDATE compares, and the raw
//! `spec` (a slice of the body), parsed into the typed view later only where it is read. The
//! objects are then not kept raw; a failure falls back to the plain decode here too.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::admission::review::Mode;
use crate::core::json::{nesting_depth, raw_differs};
use crate::core::objects::{Meta, ObjectOnly, OwnerRef, Pod, PodStatus, capped_list};

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
    /// The object of a Pod CREATE, already parsed by the fast path (`object` is then `None`).
    /// Taken once by the pipeline (`take_pod`).
    #[serde(skip)]
    pub pod: Mutex<Option<Box<Pod>>>,
    /// The new and old pod of a validating Pod UPDATE, read by the second fast path
    /// (`object` and `oldObject` are then `None`).
    #[serde(skip)]
    pub pod_update: Option<Box<PodUpdate<'a>>>,
    /// The whole review body, for the rare check that needs the object's text when the fast
    /// path kept none (`admission::tokens`, and the plain re-decode of `pod_update`'s fallback).
    #[serde(skip)]
    pub body: &'a [u8],
    /// `body` as text, checked once by decode (empty if it is not UTF-8, which a body that
    /// decoded is not: every JSON string in it was checked).
    #[serde(skip)]
    pub body_text: &'a str,
}

/// `object` and `oldObject` of a validating Pod UPDATE, each read in one pass.
#[derive(Debug)]
pub struct PodUpdate<'a> {
    pub new: PodParts<'a>,
    pub old: PodParts<'a>,
}

/// What the validating UPDATE of a pod reads from one of its objects, collected in one walk
/// (it used to parse each object twice: the typed `Pod`, then the shape `update_actions`
/// compares). The typed spec is not parsed here: `spec` stays raw, so that a spec that is not
/// read is not parsed (a `status` write reads none of the new pod's spec and only `nodeName`
/// of the old one).
///
/// Invariant: a `PodParts` is only made from an object that the plain path would also read
/// without error as far as these fields go (the typed metadata and status, and
/// `update_actions`' metadata shape); anything stricter or unusual fails the fast path.
#[derive(Debug)]
pub struct PodParts<'a> {
    /// As the typed `Pod` reads it.
    pub meta: Meta,
    /// `metadata.finalizers` and `metadata.ownerReferences` as `update_actions` compares them:
    /// a change to either is a metadata change.
    pub finalizers: Option<Vec<String>>,
    pub owners: Option<&'a RawValue>,
    /// `spec`, raw: compared as text, parsed where it is read. Always a JSON object. `None`
    /// where decode read the spec for `nodeName` alone (the old pod of a `status` write).
    pub spec: Option<&'a RawValue>,
    /// `spec.nodeName`, where decode read the spec for it alone (`spec` is then `None`).
    pub spec_node_name: Option<Option<String>>,
    pub status: Option<PodStatus>,
}

/// `spec.nodeName` alone: the old pod's spec of a `status` write, or of any UPDATE whose new
/// spec differs (the old spec is not read otherwise).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecNodeName {
    #[serde(default)]
    pub node_name: Option<String>,
}

/// How `PodParts` reads `spec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpecRead {
    /// Kept raw (`PodParts::spec`).
    Raw,
    /// Only `nodeName` read, in the same pass (`PodParts::spec_node_name`): what a `status`
    /// write reads of the old pod.
    NodeName,
}

impl PodParts<'_> {
    /// The metadata an UPDATE compares for its `Metadata` action: labels, annotations,
    /// finalizers and owners (`job::update_actions`' shape).
    pub fn same_metadata_shape(&self, other: &PodParts<'_>) -> bool {
        self.meta.labels == other.meta.labels
            && self.meta.annotations == other.meta.annotations
            && self.finalizers == other.finalizers
            && !raw_differs(self.owners, other.owners)
    }
}

/// `metadata` of a `PodParts`: the typed `Meta`'s fields plus what the UPDATE compares.
/// `ownerReferences` is kept raw so that `null` stays distinguishable from absent (the typed
/// view refuses `null`, the shape reads it as absent).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PartsMeta<'a> {
    name: Option<String>,
    generate_name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    finalizers: Option<Vec<String>>,
    #[serde(borrow, deserialize_with = "raw_present")]
    owner_references: Option<&'a RawValue>,
}

/// A present field's raw text, `null` included (`Option<&RawValue>` would read `null` as
/// absent).
fn raw_present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// serde_json's nesting limit (128) minus the levels the plain path's shape parse of an owner
/// reference sits below (the object and its metadata): a deeper `ownerReferences` is left to
/// the plain path, which refuses it.
const OWNERS_MAX_DEPTH: usize = 120;

/// Reads one object of a validating Pod UPDATE into `PodParts`.
struct PartsSeed<'a>(SpecRead, std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> de::DeserializeSeed<'de> for PartsSeed<'a> {
    type Value = PodParts<'a>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(PartsVisitor(self.0, self.1))
    }
}

struct PartsVisitor<'a>(SpecRead, std::marker::PhantomData<&'a ()>);

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum PodField {
    Metadata,
    Spec,
    Status,
    #[serde(other)]
    Other,
}

impl<'de: 'a, 'a> Visitor<'de> for PartsVisitor<'a> {
    type Value = PodParts<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct Pod")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut meta: Option<PartsMeta<'a>> = None;
        let mut spec: Option<&'a RawValue> = None;
        let mut node_name: Option<Option<String>> = None;
        let mut status: Option<Option<PodStatus>> = None;
        while let Some(field) = map.next_key::<PodField>()? {
            match field {
                PodField::Metadata => {
                    let m = map.next_value::<ObjectOnly<PartsMeta<'a>>>()?.0;
                    once(&mut meta, m, "metadata")?;
                }
                // The typed view reads `spec` only from a JSON object (`map_only`), so do both.
                PodField::Spec if self.0 == SpecRead::NodeName => {
                    let read = map.next_value::<ObjectOnly<SpecNodeName>>()?.0;
                    once(&mut node_name, read.node_name, "spec")?;
                }
                PodField::Spec => {
                    let raw: &'a RawValue = map.next_value()?;
                    if !raw.get().starts_with('{') {
                        return Err(de::Error::custom("spec is not a JSON object"));
                    }
                    once(&mut spec, raw, "spec")?;
                }
                PodField::Status => once(&mut status, map.next_value()?, "status")?,
                PodField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let m = meta.ok_or_else(|| de::Error::missing_field("metadata"))?;
        if spec.is_none() && node_name.is_none() {
            return Err(de::Error::missing_field("spec"));
        }
        let (owner_references, owners) = match m.owner_references {
            None => (Vec::new(), None),
            Some(raw) => {
                // Capped as the typed `Meta` caps it, and read before the shape's `Value`.
                let typed: Vec<OwnerRef> =
                    capped_list(&mut serde_json::Deserializer::from_str(raw.get()))
                        .map_err(de::Error::custom)?;
                if nesting_depth(raw.get()) > OWNERS_MAX_DEPTH {
                    return Err(de::Error::custom("ownerReferences nest too deep"));
                }
                (typed, Some(raw))
            }
        };
        Ok(PodParts {
            meta: Meta {
                name: m.name,
                generate_name: m.generate_name,
                namespace: m.namespace,
                uid: m.uid,
                labels: m.labels,
                annotations: m.annotations,
                owner_references,
            },
            finalizers: m.finalizers,
            owners,
            spec,
            spec_node_name: node_name,
            status: status.flatten(),
        })
    }
}

impl Request<'_> {
    /// The pre-parsed Pod of a Pod CREATE, if the fast path parsed it (at most once).
    pub fn take_pod(&self) -> Option<Pod> {
        let mut slot = self
            .pod
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.take().map(|p| *p)
    }

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

/// The envelope of the fast paths, read by hand to hand the mode down to `request`.
struct FastEnvelope<'a> {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<FastRequest<'a>>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum EnvelopeField {
    ApiVersion,
    Kind,
    Request,
    #[serde(other)]
    Other,
}

struct EnvelopeSeed<'a>(Mode, std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> de::DeserializeSeed<'de> for EnvelopeSeed<'a> {
    type Value = FastEnvelope<'a>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for EnvelopeSeed<'a> {
    type Value = FastEnvelope<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct AdmissionReview")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut api_version: Option<Option<String>> = None;
        let mut kind: Option<Option<String>> = None;
        let mut request: Option<Option<FastRequest<'a>>> = None;
        while let Some(field) = map.next_key::<EnvelopeField>()? {
            match field {
                EnvelopeField::ApiVersion => {
                    once(&mut api_version, map.next_value()?, "apiVersion")?
                }
                EnvelopeField::Kind => once(&mut kind, map.next_value()?, "kind")?,
                EnvelopeField::Request => {
                    // `null` is no request, as `Option<Request>` reads it.
                    let r = map.next_value_seed(OptionSeed(FastSeed(self.0, self.1)))?;
                    once(&mut request, r, "request")?
                }
                EnvelopeField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(FastEnvelope {
            api_version: api_version.flatten(),
            kind: kind.flatten(),
            request: request.flatten(),
        })
    }
}

/// `Option<T>` for a seed.
struct OptionSeed<S>(S);

impl<'de, S: de::DeserializeSeed<'de>> de::DeserializeSeed<'de> for OptionSeed<S> {
    type Value = Option<S::Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_option(self)
    }
}

impl<'de, S: de::DeserializeSeed<'de>> Visitor<'de> for OptionSeed<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an optional value")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(de).map(Some)
    }
}

/// `request`, read by hand so the object can be parsed by what precedes it (kube-apiserver
/// sends `kind`, `subResource` and `operation` before `object`). Field semantics are the
/// derived `Request`'s; anything it would handle differently is an error here, which sends the
/// body down the plain path.
struct FastRequest<'a>(Request<'a>);

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Field {
    Uid,
    Kind,
    Resource,
    SubResource,
    Name,
    Namespace,
    Operation,
    UserInfo,
    Object,
    OldObject,
    DryRun,
    #[serde(other)]
    Other,
}

/// `request` read in the mode `FastEnvelope` was given (see `FastSeed`).
struct FastSeed<'a>(Mode, std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> de::DeserializeSeed<'de> for FastSeed<'a> {
    type Value = FastRequest<'a>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(FastVisitor(self.0, std::marker::PhantomData))
    }
}

struct FastVisitor<'a>(Mode, std::marker::PhantomData<&'a ()>);

/// Stores a field once; a second occurrence is an error, as in derived code.
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de: 'a, 'a> Visitor<'de> for FastVisitor<'a> {
    type Value = FastRequest<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct Request")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut uid: Option<String> = None;
        let mut kind: Option<Gvk> = None;
        let mut resource: Option<Gvr> = None;
        let mut sub_resource: Option<Option<String>> = None;
        let mut name: Option<Option<String>> = None;
        let mut namespace: Option<Option<String>> = None;
        let mut operation: Option<Operation> = None;
        let mut user_info: Option<UserInfo> = None;
        let mut object: Option<Option<&'a RawValue>> = None;
        let mut pod: Option<Option<Box<Pod>>> = None;
        let mut old_object: Option<Option<&'a RawValue>> = None;
        let mut dry_run: Option<Option<bool>> = None;
        // The two objects of a validating Pod UPDATE, and the subresource they were read for.
        let (mut new_parts, mut old_parts) = (None, None);
        let mut parts_sub: Option<String> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Uid => once(&mut uid, map.next_value()?, "uid")?,
                Field::Kind => once(&mut kind, map.next_value()?, "kind")?,
                Field::Resource => once(&mut resource, map.next_value()?, "resource")?,
                Field::SubResource => once(&mut sub_resource, map.next_value()?, "subResource")?,
                Field::Name => once(&mut name, map.next_value()?, "name")?,
                Field::Namespace => once(&mut namespace, map.next_value()?, "namespace")?,
                Field::Operation => once(&mut operation, map.next_value()?, "operation")?,
                Field::UserInfo => once(&mut user_info, map.next_value()?, "userInfo")?,
                Field::OldObject => {
                    if old_object.is_some() || old_parts.is_some() {
                        return Err(de::Error::duplicate_field("oldObject"));
                    }
                    match validating_pod_update(self.0, &kind, operation, &sub_resource) {
                        Some(sub) => {
                            // A status write reads only `nodeName` of the old spec.
                            let read = match sub {
                                "status" => SpecRead::NodeName,
                                _ => SpecRead::Raw,
                            };
                            parts_sub = Some(sub.to_string());
                            let seed = PartsSeed(read, std::marker::PhantomData);
                            old_parts = Some(map.next_value_seed(seed)?);
                        }
                        None => old_object = Some(map.next_value()?),
                    }
                }
                Field::DryRun => once(&mut dry_run, map.next_value()?, "dryRun")?,
                Field::Object => {
                    if object.is_some() || pod.is_some() || new_parts.is_some() {
                        return Err(de::Error::duplicate_field("object"));
                    }
                    if let Some(sub) =
                        validating_pod_update(self.0, &kind, operation, &sub_resource)
                    {
                        parts_sub = Some(sub.to_string());
                        let seed = PartsSeed(SpecRead::Raw, std::marker::PhantomData);
                        new_parts = Some(map.next_value_seed(seed)?);
                        continue;
                    }
                    let pod_create = kind
                        .as_ref()
                        .is_some_and(|k| k.group.is_empty() && k.kind == "Pod")
                        && operation == Some(Operation::Create)
                        && sub_resource
                            .as_ref()
                            .is_none_or(|s| s.as_deref().unwrap_or("").is_empty());
                    if pod_create {
                        pod = Some(
                            map.next_value::<Option<ObjectOnly<Pod>>>()?
                                .map(|p| Box::new(p.0)),
                        );
                    } else {
                        object = Some(map.next_value()?);
                    }
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        // A subresource named after the object would route elsewhere: use the plain path.
        if pod.is_some()
            && sub_resource
                .as_ref()
                .is_some_and(|s| !s.as_deref().unwrap_or("").is_empty())
        {
            return Err(de::Error::custom("subresource after the object"));
        }
        // Both objects read as parts, for the subresource the request has after all (it may
        // come after them, or only one of them may have been read so): else the plain path.
        let pod_update = match (new_parts, old_parts) {
            (None, None) => None,
            (Some(new), Some(old))
                if parts_sub.as_deref()
                    == Some(
                        sub_resource
                            .as_ref()
                            .and_then(|s| s.as_deref())
                            .unwrap_or(""),
                    ) =>
            {
                Some(Box::new(PodUpdate { new, old }))
            }
            _ => return Err(de::Error::custom("pod update objects read inconsistently")),
        };
        Ok(FastRequest(Request {
            uid: uid.ok_or_else(|| de::Error::missing_field("uid"))?,
            kind: kind.ok_or_else(|| de::Error::missing_field("kind"))?,
            resource: resource.unwrap_or_default(),
            sub_resource: sub_resource.flatten(),
            name: name.flatten(),
            namespace: namespace.flatten(),
            operation: operation.ok_or_else(|| de::Error::missing_field("operation"))?,
            user_info: user_info.unwrap_or_default(),
            object: object.flatten(),
            old_object: old_object.flatten(),
            dry_run: dry_run.flatten(),
            pod: Mutex::new(pod.flatten()),
            pod_update,
            body: &[],
            body_text: "",
        }))
    }
}

/// The subresource (`""`, `status` or `resize`) when the object about to be read belongs to a
/// validating Pod UPDATE that `PodParts` covers, judged by the fields read so far.
fn validating_pod_update<'s>(
    mode: Mode,
    kind: &Option<Gvk>,
    operation: Option<Operation>,
    sub_resource: &'s Option<Option<String>>,
) -> Option<&'s str> {
    let pod = kind
        .as_ref()
        .is_some_and(|k| k.group.is_empty() && k.kind == "Pod");
    if mode != Mode::Validate || !pod || operation != Some(Operation::Update) {
        return None;
    }
    let sub = sub_resource
        .as_ref()
        .and_then(|s| s.as_deref())
        .unwrap_or("");
    matches!(sub, "" | "status" | "resize").then_some(sub)
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

/// Decodes an AdmissionReview v1 body (the mutating webhook's decode: `decode_for` in
/// `Mode::Mutate`).
pub fn decode(body: &[u8]) -> Result<Request<'_>, DecodeError> {
    decode_for(body, Mode::Mutate)
}

/// Decodes an AdmissionReview v1 body for the webhook `mode`: the validating webhook's Pod
/// UPDATEs are read into `PodParts` (see the module comment); everything else is decoded the
/// same in both modes.
pub fn decode_for(body: &[u8], mode: Mode) -> Result<Request<'_>, DecodeError> {
    let (mut request, text) = match decode_fast(body, mode) {
        Ok(decoded) => decoded,
        Err(()) => (decode_plain(body)?, std::str::from_utf8(body).unwrap_or("")),
    };
    request.body = body;
    request.body_text = text;
    Ok(request)
}

/// The single-pass decode, with the body as the text it checked; `Err(())` sends the body
/// down the plain path.
fn decode_fast(body: &[u8], mode: Mode) -> Result<(Request<'_>, &str), ()> {
    // One UTF-8 check of the whole body instead of one per string (serde_json's slice reader
    // validates every string it reads; its str reader trusts the checked text).
    let text = std::str::from_utf8(body).map_err(|_| ())?;
    let mut de = serde_json::Deserializer::from_str(text);
    let envelope =
        de::DeserializeSeed::deserialize(EnvelopeSeed(mode, std::marker::PhantomData), &mut de)
            .map_err(|_| ())?;
    // As `from_str`: nothing but whitespace may follow.
    de.end().map_err(|_| ())?;
    if envelope.kind.as_deref() != Some("AdmissionReview")
        || envelope.api_version.as_deref() != Some(API_VERSION)
    {
        return Err(());
    }
    match envelope.request {
        Some(FastRequest(request)) if !request.uid.is_empty() => Ok((request, text)),
        _ => Err(()),
    }
}

/// The two-step decode: the envelope with the object kept raw (parsed later by the router).
fn decode_plain(body: &[u8]) -> Result<Request<'_>, DecodeError> {
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
            "object":{"metadata":{},"spec":{"containers":[]}},"oldObject":null,"dryRun":false}"#,
        );
        let r = decode(body.as_bytes()).unwrap();
        assert_eq!(r.uid, "u1");
        assert_eq!(r.kind.kind, "Pod");
        assert_eq!(r.operation, Operation::Create);
        // The fast path parsed the Pod in the envelope pass.
        assert!(r.object().is_none());
        assert!(r.take_pod().is_some());
        assert!(r.take_pod().is_none(), "taken once");
        assert!(r.old_object().is_none());
        assert_eq!(r.user_info.bound_pod(), Some(("drv", None)));
        assert_eq!(r.user_info.service_account(), Some(("ns", "spark")));
    }

    #[test]
    fn objects_the_fast_path_cannot_take_stay_raw() {
        let cases = [
            // Not a Pod CREATE.
            r#"{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"UPDATE","object":{"metadata":{}}}"#,
            // A subresource, before or after the object.
            r#"{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","subResource":"ephemeralcontainers","object":{"metadata":{}}}"#,
            r#"{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{}},"subResource":"x"}"#,
            // The object before the fields that route it.
            r#"{"uid":"u","object":{"metadata":{}},"kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE"}"#,
            // An object that is not a valid Pod: the router reports it, with the plain message.
            r#"{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{"labels":[]}}}"#,
        ];
        for request in cases {
            let body = review(request);
            let r = decode(body.as_bytes()).unwrap();
            assert!(r.take_pod().is_none(), "{request}");
            assert!(r.object().is_some(), "{request}");
        }
    }

    #[test]
    fn fast_and_plain_decodes_agree() {
        let body = review(
            r#"{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},"name":"p",
            "resource":{"group":"","version":"v1","resource":"pods"},"namespace":"ns","operation":"CREATE",
            "userInfo":{"username":"alice","groups":["g"]},"requestKind":{"kind":"Pod"},
            "object":{"metadata":{"name":"p","labels":{"a":"b"}},"spec":{"containers":[{"name":"c"}]}},
            "oldObject":null,"dryRun":true}"#,
        );
        let fast = decode(body.as_bytes()).unwrap();
        let plain = decode_plain(body.as_bytes()).unwrap();
        assert_eq!(
            (
                &fast.uid,
                &fast.kind,
                &fast.resource,
                &fast.name,
                &fast.namespace
            ),
            (
                &plain.uid,
                &plain.kind,
                &plain.resource,
                &plain.name,
                &plain.namespace
            )
        );
        assert_eq!(
            (
                fast.operation,
                &fast.user_info,
                fast.dry_run,
                &fast.sub_resource
            ),
            (
                plain.operation,
                &plain.user_info,
                plain.dry_run,
                &plain.sub_resource
            )
        );
        let pod = fast.take_pod().unwrap();
        let raw: Pod = serde_json::from_str(plain.object().unwrap().get()).unwrap();
        assert_eq!(pod.metadata.labels, raw.metadata.labels);
        assert_eq!(pod.spec.containers.len(), raw.spec.containers.len());
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

    fn pod_update(fields_before: &str, fields_after: &str) -> String {
        review(&format!(
            r#"{{"uid":"u","kind":{{"group":"","version":"v1","kind":"Pod"}},{fields_before}"operation":"UPDATE",
            "object":{{"metadata":{{"name":"p","labels":{{"a":"1"}},"finalizers":["f"],"ownerReferences":[{{"kind":"K","name":"n","uid":"x","controller":true}}]}},"spec":{{"nodeName":"n1","containers":[]}},"status":{{"phase":"Running"}}}},
            "oldObject":{{"metadata":{{"name":"p"}},"spec":{{"containers":[]}}}}{fields_after}}}"#
        ))
    }

    #[test]
    fn the_validating_webhook_reads_a_pod_updates_objects_into_parts() {
        for sub in [
            "",
            r#""subResource":"status","#,
            r#""subResource":"resize","#,
        ] {
            let body = pod_update(sub, "");
            let r = decode_for(body.as_bytes(), Mode::Validate).unwrap();
            assert!(r.object().is_none() && r.old_object().is_none(), "{sub}");
            let parts = r.pod_update.as_deref().unwrap();
            assert_eq!(parts.new.meta.label("a"), Some("1"));
            assert_eq!(parts.new.finalizers, Some(vec!["f".to_string()]));
            assert_eq!(parts.new.meta.owner_references[0].controller, Some(true));
            assert!(parts.new.owners.is_some_and(|o| o.get().starts_with('[')));
            assert_eq!(
                parts.new.spec.map(RawValue::get),
                Some(r#"{"nodeName":"n1","containers":[]}"#)
            );
            // A status write reads the old spec's nodeName alone.
            assert_eq!(parts.old.spec.is_none(), sub.contains("status"));
            assert_eq!(parts.old.spec_node_name.is_some(), sub.contains("status"));
            assert_eq!(
                parts.new.status.as_ref().unwrap().phase.as_deref(),
                Some("Running")
            );
            assert!(parts.old.owners.is_none() && parts.old.meta.labels.is_none());
            assert!(!parts.new.same_metadata_shape(&parts.old));
            // The mutating webhook keeps the objects raw (it passes pod updates unread).
            let r = decode(body.as_bytes()).unwrap();
            assert!(r.pod_update.is_none() && r.object().is_some() && r.old_object().is_some());
        }
    }

    #[test]
    fn pod_updates_the_parts_cannot_take_stay_raw() {
        let cases = [
            // Debug containers read both specs whole: the plain path.
            pod_update(r#""subResource":"ephemeralcontainers","#, ""),
            // The subresource after the objects.
            pod_update("", r#","subResource":"status""#),
            pod_update("", r#","subResource":"ephemeralcontainers""#),
            // Objects the typed view or the update's shape would refuse.
            pod_update("", "").replace(r#""finalizers":["f"]"#, r#""finalizers":[1]"#),
            pod_update("", "").replace(
                r#""ownerReferences":[{"#,
                r#""ownerReferences":null,"x":[{"#,
            ),
            pod_update("", "").replace(r#""spec":{"containers":[]}"#, r#""spec":null"#),
            pod_update("", "").replace(r#""labels":{"a":"1"}"#, r#""labels":{"a":1}"#),
            pod_update("", "")
                .replace(r#""status":{"phase":"Running"}"#, r#""status":{"phase":1}"#),
            pod_update("", "").replace(r#""name":"p"}"#, r#""name":"p"},"metadata":{}"#),
        ];
        for body in &cases {
            let r = decode_for(body.as_bytes(), Mode::Validate).unwrap();
            assert!(r.pod_update.is_none(), "{body}");
            assert!(r.object().is_some(), "{body}");
        }
        // Nested deeper than the plain path's owner references may be: the plain path.
        let deep = format!("{}1{}", "[".repeat(125), "]".repeat(125));
        let body =
            pod_update("", "").replace(r#""uid":"x""#, &format!(r#""uid":"x","deep":{deep}"#));
        let r = decode_for(body.as_bytes(), Mode::Validate).unwrap();
        assert!(r.pod_update.is_none());
    }
}
