//! The token rules (`core::tokens`) applied to a review: the mutating pass scrubs or refuses
//! copies of the submitter token, the validating pass refuses any token of the identity
//! provider that a create or update would store. The kind handlers call these two methods.

use json_patch::{PatchOperation, RemoveOperation};
use serde_json::value::RawValue;

use crate::admission::decode::{Operation, Request};
use crate::admission::review::{Ctx, Pipeline};
use crate::core::decision::Reason;
use crate::core::objects::Meta;
use crate::core::tokens::{
    Exempt, Remedy, copy_violations, find_issuer_jwts, find_token_copies, issuer_jwt_violations,
    may_hold_jwt, may_hold_other_jwt, may_hold_token_copy,
};

impl Pipeline {
    /// The mutating pass of an object that carries the submitter token (`meta` is its
    /// metadata): the operations that remove the copies spark-submit would spread (the
    /// annotation itself and kubectl's last-applied copy are `plan_metadata`'s), or a denial
    /// that names every other copy. Nothing to do without the token annotation.
    pub(super) fn scrub_token_copies(
        &self,
        ctx: &Ctx<'_>,
        meta: &Meta,
    ) -> Result<Vec<PatchOperation>, Reason> {
        let annotation = self.token_annotation();
        let token = meta.annotation(annotation);
        self.refuse_other_tokens(ctx, token)?;
        let Some(token) = token else {
            return Ok(Vec::new());
        };
        if !may_hold_token_copy(haystack(ctx.req), token) {
            return Ok(Vec::new());
        }
        let (text, _) = object_texts(ctx.req)?;
        let copies = find_token_copies(text, token, annotation).map_err(unreadable)?;
        let denied = copy_violations(&copies, annotation);
        if !denied.is_empty() {
            return Err(Reason::TokenCopy(denied));
        }
        Ok(copies
            .iter()
            .filter(|c| c.remedy == Remedy::Remove)
            .map(|c| {
                PatchOperation::Remove(RemoveOperation {
                    path: c.found.loc.pointer(),
                })
            })
            .collect())
    }

    /// The mutating pass refuses what the validating pass would refuse on the patched object:
    /// a bearer token of the configured issuer other than the submitter's own `token` (whose
    /// copies `scrub_token_copies` removes or names). Allowing it here would let the job's
    /// policy be created for an object the validating webhook then rejects (found by fuzzing:
    /// a second token in `spec.template.image`).
    fn refuse_other_tokens(&self, ctx: &Ctx<'_>, token: Option<&str>) -> Result<(), Reason> {
        let Some(identity) = &self.config.identity else {
            return Ok(());
        };
        if !may_hold_other_jwt(haystack(ctx.req), token) {
            return Ok(());
        }
        let (text, _) = object_texts(ctx.req)?;
        let exempt = token.map_or(Exempt::Nothing, Exempt::Own);
        let found = find_issuer_jwts(text, &identity.issuer, exempt).map_err(unreadable)?;
        if found.is_empty() {
            return Ok(());
        }
        Err(Reason::TokenCopy(issuer_jwt_violations(
            &found,
            &identity.issuer,
        )))
    }

    /// The validating pass: a bearer token of the configured issuer anywhere in the object is
    /// refused. On UPDATE only tokens the old object did not already hold count (objects
    /// stored before this rule must stay updatable, by their owners and by the garbage
    /// collector).
    pub(super) fn refuse_stored_tokens(&self, ctx: &Ctx<'_>) -> Result<(), Reason> {
        let Some(identity) = &self.config.identity else {
            return Ok(());
        };
        if !may_hold_jwt(haystack(ctx.req)) {
            return Ok(());
        }
        let (text, old) = object_texts(ctx.req)?;
        let exempt = match (ctx.req.operation, old) {
            (Operation::Update, Some(old)) => Exempt::Stored(old),
            _ => Exempt::Nothing,
        };
        let found = find_issuer_jwts(text, &identity.issuer, exempt).map_err(unreadable)?;
        if found.is_empty() {
            return Ok(());
        }
        Err(Reason::TokenCopy(issuer_jwt_violations(
            &found,
            &identity.issuer,
        )))
    }
}

/// Text that contains the object, for the cheap first test: the raw object, or the whole body
/// when the fast decode kept no raw object (a Pod CREATE, a validating Pod UPDATE), as the text
/// decode checked. Not UTF-8 cannot happen for a body that decoded; it is then searched as
/// empty, and the typed parse has already failed.
fn haystack<'r>(req: &'r Request<'_>) -> &'r str {
    match req.object() {
        Some(raw) => raw.get(),
        None => req.body_text,
    }
}

/// The object's JSON text and the old object's (`None`: absent or `null`): the raw objects, or
/// those in the body, found again only when the cheap test hit, so the fast decode stays fast
/// for everything else. Both are slices of the body, searched as the API server sent them.
fn object_texts<'r>(req: &'r Request<'_>) -> Result<(&'r str, Option<&'r str>), Reason> {
    if let Some(raw) = req.object() {
        return Ok((raw.get(), req.old_object().map(RawValue::get)));
    }
    #[derive(serde::Deserialize)]
    struct Review<'a> {
        #[serde(borrow)]
        request: Inner<'a>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Inner<'a> {
        #[serde(borrow, default)]
        object: Option<&'a RawValue>,
        #[serde(borrow, default)]
        old_object: Option<&'a RawValue>,
    }
    let inner = serde_json::from_slice::<Review<'_>>(req.body)
        .ok()
        .map(|r| r.request);
    let old = inner
        .as_ref()
        .and_then(|i| i.old_object)
        .map(RawValue::get)
        .filter(|o| *o != "null");
    inner
        .and_then(|i| i.object)
        .map(|text| (text.get(), old))
        .ok_or_else(|| Reason::Malformed("request.object is missing".into()))
}

fn unreadable(e: serde_json::Error) -> Reason {
    Reason::Malformed(format!(
        "request.object could not be searched for bearer tokens: {e}"
    ))
}
