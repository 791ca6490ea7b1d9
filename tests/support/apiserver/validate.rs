//! What the API server checks on every write besides the CRD schema: object metadata (names,
//! labels, annotations, ownerReferences) and a decode into the built-in types.

use serde_json::Value;

use super::resource::{
    CONFIG_MAP, LEASE, NAMESPACE, NETWORK_POLICY, POD, Resource, SECRET, SERVICE_ACCOUNT,
};
use super::status::ApiError;
use crate::support::upstream::Violation;

fn invalid(field: &str, value: &str, why: &str) -> Violation {
    Violation {
        field: field.to_string(),
        reason: "FieldValueInvalid",
        message: format!("Invalid value: \"{value}\": {why}"),
    }
}

fn required(field: &str, why: &str) -> Violation {
    Violation {
        field: field.to_string(),
        reason: "FieldValueRequired",
        message: if why.is_empty() {
            "Required value".into()
        } else {
            format!("Required value: {why}")
        },
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A label value, or the name part of a qualified key.
fn is_label_name(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && s.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name, false),
        None => is_label_name(key, false),
    }
}

const LABEL_NAME_HELP: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Checks `metadata` the way the real API server does.
pub(crate) fn check_metadata(resource: &Resource, object: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or("");
    let name_ok = if resource.crd.is_some() {
        // Custom resources only need a valid path segment.
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%'])
    } else if *resource == NAMESPACE {
        is_dns_label(name)
    } else {
        is_dns_subdomain(name)
    };
    if name.is_empty() {
        out.push(required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if !name_ok {
        out.push(invalid(
            "metadata.name",
            name,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ));
    }
    for (field, shape_ok) in [
        ("labels", Value::is_object as fn(&Value) -> bool),
        ("annotations", Value::is_object),
        ("ownerReferences", Value::is_array),
        ("finalizers", Value::is_array),
    ] {
        if let Some(v) = meta.get(field)
            && !v.is_null()
            && !shape_ok(v)
        {
            out.push(invalid(
                &format!("metadata.{field}"),
                &v.to_string(),
                "wrong type",
            ));
        }
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (key, value) in labels {
            if !is_qualified_name(key) {
                out.push(invalid("metadata.labels", key, LABEL_NAME_HELP));
            }
            match value.as_str() {
                Some(v) if is_label_name(v, true) => {}
                Some(v) => out.push(invalid("metadata.labels", v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters")),
                None => out.push(invalid("metadata.labels", &value.to_string(), "label values must be strings")),
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let mut size = 0;
        for (key, value) in annotations {
            size += key.len() + value.as_str().map_or(0, str::len);
            if !is_qualified_name(key) {
                out.push(invalid("metadata.annotations", key, LABEL_NAME_HELP));
            }
            if !value.is_string() {
                out.push(invalid(
                    "metadata.annotations",
                    &value.to_string(),
                    "annotation values must be strings",
                ));
            }
        }
        if size > 256 * 1024 {
            out.push(Violation {
                field: "metadata.annotations".into(),
                reason: "FieldValueTooLong",
                message: "Too long: must have at most 262144 bytes".into(),
            });
        }
    }
    if let Some(owners) = meta.get("ownerReferences").and_then(Value::as_array) {
        for (i, owner) in owners.iter().enumerate() {
            for field in ["apiVersion", "kind", "name", "uid"] {
                if owner[field].as_str().is_none_or(str::is_empty) {
                    out.push(required(
                        &format!("metadata.ownerReferences[{i}].{field}"),
                        "",
                    ));
                }
            }
        }
    }
    out
}

/// What the Secret strategy does before validation: `stringData` is merged into `data` (base64)
/// and dropped, and `type` defaults to `Opaque`.
pub(crate) fn normalize_secret(object: &mut Value) {
    use base64::Engine;
    if let Some(map) = object.as_object_mut() {
        if let Some(Value::Object(strings)) = map.remove("stringData") {
            let data = map
                .entry("data")
                .or_insert_with(|| Value::Object(Default::default()));
            if !data.is_object() {
                *data = Value::Object(Default::default());
            }
            for (k, v) in strings {
                let text = v.as_str().unwrap_or_default();
                data[k.as_str()] =
                    Value::String(base64::engine::general_purpose::STANDARD.encode(text));
            }
        }
        if map.get("type").is_none_or(Value::is_null) {
            map.insert("type".into(), Value::String("Opaque".into()));
        }
    }
}

/// Built-in types: the body must decode into the Kubernetes type (else 400, as a decode error
/// is), and a few required fields are checked (else 422).
pub(crate) fn check_builtin(
    resource: &Resource,
    object: &Value,
) -> Result<Vec<Violation>, ApiError> {
    let decoded = if *resource == POD {
        serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(object.clone()).map(drop)
    } else if *resource == NAMESPACE {
        serde_json::from_value::<k8s_openapi::api::core::v1::Namespace>(object.clone()).map(drop)
    } else if *resource == LEASE {
        serde_json::from_value::<k8s_openapi::api::coordination::v1::Lease>(object.clone())
            .map(drop)
    } else if *resource == SECRET {
        serde_json::from_value::<k8s_openapi::api::core::v1::Secret>(object.clone()).map(drop)
    } else if *resource == CONFIG_MAP {
        serde_json::from_value::<k8s_openapi::api::core::v1::ConfigMap>(object.clone()).map(drop)
    } else if *resource == SERVICE_ACCOUNT {
        serde_json::from_value::<k8s_openapi::api::core::v1::ServiceAccount>(object.clone())
            .map(drop)
    } else if *resource == NETWORK_POLICY {
        serde_json::from_value::<k8s_openapi::api::networking::v1::NetworkPolicy>(object.clone())
            .map(drop)
    } else {
        Ok(())
    };
    decoded.map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            resource.kind, resource.version, resource.kind
        ))
    })?;
    let mut out = Vec::new();
    if *resource == POD {
        match object["spec"]["containers"].as_array() {
            Some(containers) if !containers.is_empty() => {
                for (i, c) in containers.iter().enumerate() {
                    for field in ["name", "image"] {
                        if c[field].as_str().is_none_or(str::is_empty) {
                            out.push(required(&format!("spec.containers[{i}].{field}"), ""));
                        }
                    }
                }
            }
            _ => out.push(required("spec.containers", "")),
        }
    }
    Ok(out)
}
