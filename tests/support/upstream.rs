//! Access to the pinned upstream CRD schemas and SparkApplication examples, which live beside the
//! checkout (`../shared` by default) and are never copied into the project.
//!
//! The validator here applies what the real API server applies to a custom resource, in the same
//! order — drop `null`s of non-nullable fields, fill `default`s, check the `openAPIV3Schema` — plus
//! one deliberate difference: unknown fields are REJECTED (like `fieldValidation=Strict`) instead of
//! pruned, because a silently pruned CiliumNetworkPolicy field is a silently broken policy.
//! Both the stand-in API server and any other test use this one implementation.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use serde_json::{Map, Value, json};

/// Where the upstream files are: `SPARKWARD_UPSTREAM_DIR`, default `<crate>/../shared`.
/// `None` (with a one-time note on stderr) when its schemas are missing; a panic instead when
/// `SPARKWARD_REQUIRE_UPSTREAM=1`, so CI fails rather than silently skipping.
pub fn upstream_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("SPARKWARD_UPSTREAM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
        if dir.join("schemas/ciliumnetworkpolicies.yaml").is_file() {
            return Some(dir);
        }
        if std::env::var("SPARKWARD_REQUIRE_UPSTREAM").as_deref() == Ok("1") {
            panic!(
                "SPARKWARD_REQUIRE_UPSTREAM=1 but upstream CRD schemas were not found at {}",
                dir.display()
            );
        }
        None
    })
    .clone()
    .or_else(|| {
        note_skipped();
        None
    })
}

fn note_skipped() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dir = std::env::var_os("SPARKWARD_UPSTREAM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
        // Straight to stderr, past libtest's capture of `eprintln!`: a skip must be visible.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: upstream CRD schemas and examples not found at {}; run scripts/fetch-upstream <dir> and set SPARKWARD_UPSTREAM_DIR=<dir>",
            dir.display()
        );
    });
}

/// The upstream example manifests (`examples/*.yaml`), sorted; empty without the upstream dir.
pub fn example_files() -> Vec<PathBuf> {
    let Some(dir) = upstream_dir() else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("examples"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Every document of a (multi-document) YAML file as JSON values; empty documents are skipped.
pub fn load_yaml_documents(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The custom resources whose upstream schema is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Crd {
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
    SparkApplication,
    ScheduledSparkApplication,
}

impl Crd {
    pub const ALL: [Crd; 4] = [
        Crd::CiliumNetworkPolicy,
        Crd::CiliumClusterwideNetworkPolicy,
        Crd::SparkApplication,
        Crd::ScheduledSparkApplication,
    ];

    /// File name under `schemas/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Crd::CiliumNetworkPolicy => "ciliumnetworkpolicies.yaml",
            Crd::CiliumClusterwideNetworkPolicy => "ciliumclusterwidenetworkpolicies.yaml",
            Crd::SparkApplication => "sparkoperator.k8s.io_sparkapplications.yaml",
            Crd::ScheduledSparkApplication => {
                "sparkoperator.k8s.io_scheduledsparkapplications.yaml"
            }
        }
    }

    /// The served version whose schema is used.
    pub fn version(self) -> &'static str {
        match self {
            Crd::CiliumNetworkPolicy | Crd::CiliumClusterwideNetworkPolicy => "v2",
            Crd::SparkApplication | Crd::ScheduledSparkApplication => "v1beta2",
        }
    }
}

/// One schema violation, in the API server's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Field path as the API server writes it: `spec.specs[0].egress[1].toPorts`.
    pub field: String,
    /// A `metav1.CauseType`: `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`,
    /// `FieldValueTypeInvalid` or `FieldValueUnknown` (our name for a field the schema lacks).
    pub reason: &'static str,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A compiled CRD schema plus the raw OpenAPI schema (needed for defaulting and strictness).
pub struct CrdValidator {
    crd: Crd,
    openapi: Value,
    compiled: jsonschema::Validator,
}

/// The validator for one CRD, compiled once per process; `None` without the upstream dir.
/// Panics if the upstream file exists but cannot be used: that is a broken test setup.
pub fn crd_validator(crd: Crd) -> Option<&'static CrdValidator> {
    match try_crd_validator(crd) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// Like [`crd_validator`], but a schema that cannot be loaded is an `Err` (the stand-in answers
/// it with 500 instead of dropping the connection from a panicking task).
pub fn try_crd_validator(crd: Crd) -> Result<Option<&'static CrdValidator>, String> {
    static CELLS: [OnceLock<Result<Option<CrdValidator>, String>>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let index = Crd::ALL.iter().position(|c| *c == crd).unwrap_or(0);
    CELLS[index]
        .get_or_init(|| {
            let Some(dir) = upstream_dir() else {
                return Ok(None);
            };
            CrdValidator::load(crd, &dir.join("schemas").join(crd.file_name()))
                .map(Some)
                .map_err(|e| format!("cannot load the {crd:?} schema: {e}"))
        })
        .as_ref()
        .map(Option::as_ref)
        .map_err(Clone::clone)
}

impl CrdValidator {
    /// Reads a CRD manifest and compiles the `openAPIV3Schema` of `crd.version()`.
    pub fn load(crd: Crd, path: &Path) -> Result<Self, String> {
        let docs = load_yaml_documents(path)?;
        let schema = docs
            .iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .flat_map(|d| {
                d["spec"]["versions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|v| v["name"] == crd.version())
            .map(|v| v["schema"]["openAPIV3Schema"].clone())
            .filter(Value::is_object)
            .ok_or_else(|| {
                format!(
                    "{}: no openAPIV3Schema for {}",
                    path.display(),
                    crd.version()
                )
            })?;
        let compiled = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(true)
            .with_format("cidr", is_cidr)
            .with_keyword(GO_PATTERN, go_pattern)
            .build(&to_json_schema(&schema))
            .map_err(|e| format!("{}: schema does not compile: {e}", path.display()))?;
        Ok(Self {
            crd,
            openapi: schema,
            compiled,
        })
    }

    pub fn crd(&self) -> Crd {
        self.crd
    }

    /// Checks an object without changing it: `Err` lists every violation as `field: message`.
    pub fn validate(&self, object: &Value) -> Result<(), Vec<String>> {
        let mut copy = object.clone();
        let violations = self.admit(&mut copy);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations.iter().map(ToString::to_string).collect())
        }
    }

    /// What the API server does on write: prune `null`s of non-nullable fields, apply defaults
    /// (both in place), then report unknown fields and schema violations.
    pub fn admit(&self, object: &mut Value) -> Vec<Violation> {
        let mut violations = Vec::new();
        normalize(object, &self.openapi, &mut String::new(), &mut violations);
        for error in self.compiled.iter_errors(object) {
            violations.push(violation_from(&error));
        }
        violations
    }
}

/// OpenAPI v3 (as used by CRDs) → JSON Schema draft 4: `nullable`, `x-kubernetes-int-or-string`
/// and formats the API server does not check (it ignores `int32`, `int64`, `idn-hostname`).
fn to_json_schema(node: &Value) -> Value {
    let Value::Object(map) = node else {
        return node.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let converted = match key.as_str() {
            "properties" | "patternProperties" | "definitions" => Value::Object(
                value
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), to_json_schema(v)))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            "items" | "additionalProperties" | "not" if value.is_object() => to_json_schema(value),
            "allOf" | "anyOf" | "oneOf" => Value::Array(
                value
                    .as_array()
                    .map(|a| a.iter().map(to_json_schema).collect())
                    .unwrap_or_default(),
            ),
            "format" if !matches!(value.as_str(), Some("date-time" | "cidr")) => continue,
            "pattern" => {
                out.insert(GO_PATTERN.into(), value.clone());
                continue;
            }
            "nullable" | "description" | "default" | "example" => continue,
            k if k.starts_with("x-kubernetes-") => continue,
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    let nullable = map.get("nullable") == Some(&Value::Bool(true));
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        out.remove("type");
        let mut options = vec![json!({"type": "integer"}), json!({"type": "string"})];
        if nullable {
            options.push(json!({"type": "null"}));
        }
        out.insert("anyOf".into(), Value::Array(options));
    } else if nullable && let Some(Value::String(t)) = out.get("type").cloned() {
        out.insert("type".into(), json!([t, "null"]));
    }
    out.into_iter().collect()
}

/// CRD patterns are Go RE2 syntax (`^\\PC*$` in the CNP schema), which the draft meta-schema's
/// ECMA-262 `regex` format rejects; the `regex` crate speaks RE2, so `pattern` is checked by this
/// custom keyword instead.
const GO_PATTERN: &str = "x-sparkward-go-pattern";

struct GoPattern {
    regex: regex::Regex,
    source: String,
}

impl<'i> jsonschema::Keyword<'i> for GoPattern {
    fn validate(&self, instance: &'i Value) -> Result<(), jsonschema::ValidationError<'i>> {
        if self.is_valid(instance) {
            Ok(())
        } else {
            Err(jsonschema::ValidationError::custom(format!(
                "should match '{}'",
                self.source
            )))
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        instance.as_str().is_none_or(|s| self.regex.is_match(s))
    }
}

fn go_pattern<'a>(
    _parent: &'a Map<String, Value>,
    value: &'a Value,
    _path: jsonschema::paths::Location,
) -> Result<Box<dyn for<'i> jsonschema::Keyword<'i>>, jsonschema::ValidationError<'a>> {
    let source = value.as_str().unwrap_or_default().to_string();
    let regex = regex::Regex::new(&source).map_err(|e| {
        jsonschema::ValidationError::custom(format!("pattern {source:?} does not compile: {e}"))
    })?;
    Ok(Box::new(GoPattern { regex, source }))
}

/// Walks value and schema together: removes `null`s where the schema is not nullable, fills
/// defaults of absent properties, and reports keys the schema does not declare.
fn normalize(value: &mut Value, schema: &Value, path: &mut String, out: &mut Vec<Violation>) {
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve =
                schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            let embedded = schema.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true));
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child_schema = properties
                    .and_then(|p| p.get(&key))
                    .or(additional.filter(|a| a.is_object()));
                let len = path.len();
                push_field(path, &key);
                match child_schema {
                    Some(child) => {
                        if map.get(&key).is_some_and(Value::is_null)
                            && child.get("nullable") != Some(&Value::Bool(true))
                        {
                            map.remove(&key);
                        } else if let Some(v) = map.get_mut(&key) {
                            normalize(v, child, path, out);
                        }
                    }
                    None => {
                        // Only schemas that declare their properties are closed: `type: object`
                        // alone (like `metadata` in every CRD) leaves the shape open.
                        let closed = properties.is_some()
                            && !preserve
                            && additional != Some(&Value::Bool(true))
                            && !(embedded
                                && matches!(key.as_str(), "apiVersion" | "kind" | "metadata"));
                        if closed {
                            out.push(Violation {
                                field: path.clone(),
                                reason: "FieldValueUnknown",
                                message: format!("unknown field \"{path}\""),
                            });
                        }
                    }
                }
                path.truncate(len);
            }
            if let Some(properties) = properties {
                for (key, child) in properties {
                    if let Some(default) = child.get("default")
                        && !map.contains_key(key)
                    {
                        map.insert(key.clone(), default.clone());
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    normalize(item, item_schema, path, out);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

fn push_field(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn violation_from(error: &jsonschema::ValidationError<'_>) -> Violation {
    let mut field = String::new();
    for segment in error.instance_path().iter() {
        match segment {
            LocationSegment::Property(p) => push_field(&mut field, &p),
            LocationSegment::Index(i) => field.push_str(&format!("[{i}]")),
        }
    }
    let shown = |f: &str| {
        if f.is_empty() {
            "<root>".to_string()
        } else {
            f.to_string()
        }
    };
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| property.to_string());
            push_field(&mut field, &name);
            Violation {
                message: "Required value".into(),
                field,
                reason: "FieldValueRequired",
            }
        }
        ValidationErrorKind::Type { .. } => Violation {
            message: format!(
                "Invalid value: \"{}\": {} in body {error}",
                json_type(error.instance()),
                shown(&field)
            ),
            field,
            reason: "FieldValueTypeInvalid",
        },
        ValidationErrorKind::Enum { options } => Violation {
            message: format!(
                "Unsupported value: {}: supported values: {}",
                error.instance(),
                options
                    .as_array()
                    .map(|o| o
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            ),
            field,
            reason: "FieldValueNotSupported",
        },
        ValidationErrorKind::Custom { message, .. } => Violation {
            message: format!(
                "Invalid value: {}: {} in body {message}",
                error.instance(),
                shown(&field)
            ),
            field,
            reason: "FieldValueInvalid",
        },
        _ => Violation {
            message: format!("Invalid value: {}: {error}", error.instance()),
            field,
            reason: "FieldValueInvalid",
        },
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The API server's `cidr` format: an IP address, `/`, a prefix length that fits it.
fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let (Ok(ip), Ok(bits)) = (ip.parse::<IpAddr>(), bits.parse::<u8>()) else {
        return false;
    };
    bits <= if ip.is_ipv4() { 32 } else { 128 }
}
