//! Approved images (`hardening.images`): which registries and repositories a job may run images
//! from, and whether they must be pinned by digest.
//!
//! An image reference is read the way container runtimes read it (the Docker reference rules
//! of `github.com/distribution/reference`, which the kubelet and containerd use):
//! `name[:tag][@digest]`; a name without a registry host is on Docker Hub (`docker.io`), a
//! single-component Docker Hub name is an official image (`docker.io/library/NAME`); the first
//! component is a registry host only if it contains `.` or `:`, is `localhost`, or has an
//! upper-case letter (repository paths are lower case); `index.docker.io` is `docker.io`.
//! Registry hosts compare case-insensitively.
//!
//! An allowed prefix matches on reference boundaries, never as a raw string prefix: one ending in
//! `/` covers a registry or an organisation path (`registry.corp/`, `docker.io/apache/`), one
//! without covers exactly one repository (`docker.io/apache/spark`, any tag or digest), so
//! `docker.io/apache/spark` allows neither `docker.io/apache/spark-evil` nor
//! `docker.io/apache/spark/evil`. Prefixes are written with their registry host, so nobody
//! allows a Docker Hub organisation by accident when they meant a registry.
//!
//! Everything here is pure: the admission handlers collect the images of an object
//! (`pod_images`, `app_spec_images`) and turn the violations into a denial.

use std::fmt;

use crate::core::hardening::{Loc, Violation};
use crate::core::loose::Loose;
use crate::core::objects::{Container, Pod, PodSpec, SparkAppSpec, Template};

/// Docker Hub's canonical registry host.
const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's legacy host, read as `docker.io`.
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// Where Docker Hub's official (single-component) images live.
const OFFICIAL_PREFIX: &str = "library/";
/// The longest repository path the reference grammar accepts.
const MAX_PATH: usize = 255;

/// The Spark properties that name the driver's and executors' images (Spark's `Config.scala`:
/// the role-specific ones fall back to `spark.kubernetes.container.image`).
pub const SPARK_IMAGE_PROPERTIES: [&str; 3] = [
    "spark.kubernetes.container.image",
    "spark.kubernetes.driver.container.image",
    "spark.kubernetes.executor.container.image",
];

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host (with its port), lower case; `docker.io` for Docker Hub.
    pub domain: String,
    /// The repository path below the registry, e.g. `library/busybox`.
    pub path: String,
    pub tag: Option<String>,
    /// `algorithm:hex`, e.g. `sha256:…`.
    pub digest: Option<String>,
}

impl ImageRef {
    /// The full repository name, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

/// Parses an image reference as a container runtime would, or says why it is not one.
pub fn parse_image(text: &str) -> Result<ImageRef, String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace".into());
    }
    let (name_tag, digest) = match text.split_once('@') {
        Some((name, digest)) => {
            check_digest(digest)?;
            (name, Some(digest.to_string()))
        }
        None => (text, None),
    };
    // The tag follows the last `:` after the last `/` (a `:` before it is a registry port).
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => {
            let tag = &name_tag[last_slash + i + 1..];
            check_tag(tag)?;
            (&name_tag[..last_slash + i], Some(tag.to_string()))
        }
        None => (name_tag, None),
    };
    if name.is_empty() {
        return Err("it has no repository name".into());
    }
    if name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("it is an image id (64 hex digits), not a reference to a registry".into());
    }
    let (domain, path) = split_domain(name);
    check_host(domain)?;
    let domain = canonical_host(domain);
    let path = if domain == DOCKER_HUB && !path.contains('/') {
        format!("{OFFICIAL_PREFIX}{path}")
    } else {
        path.to_string()
    };
    check_path(&path)?;
    Ok(ImageRef {
        domain,
        path,
        tag,
        digest,
    })
}

/// Splits a name into its registry host and repository path (Docker's rules).
fn split_domain(name: &str) -> (&str, &str) {
    let Some((first, rest)) = name.split_once('/') else {
        return (DOCKER_HUB, name);
    };
    let is_host = first == "localhost"
        || first.contains(['.', ':'])
        || first.chars().any(|c| c.is_ascii_uppercase());
    if is_host {
        (first, rest)
    } else {
        (DOCKER_HUB, name)
    }
}

/// The host lower-cased, with Docker Hub's legacy name replaced.
fn canonical_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    if host == DOCKER_HUB_LEGACY {
        DOCKER_HUB.to_string()
    } else {
        host
    }
}

/// `host[:port]`, the host a DNS name, an IPv4 address or a bracketed IPv6 address.
fn check_host(domain: &str) -> Result<(), String> {
    let bad = || format!("'{domain}' is not a registry host");
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(bad());
        }
        (None, after)
    } else {
        let end = domain.find(':').unwrap_or(domain.len());
        (Some(&domain[..end]), &domain[end..])
    };
    if !port.is_empty() {
        let digits = port.strip_prefix(':').ok_or_else(bad)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    for label in host.into_iter().flat_map(|h| h.split('.')) {
        let ok = !label.is_empty()
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

/// A repository path: components of lower-case letters and digits, joined inside a component by
/// `.`, `_`, `__` or a run of `-`.
fn check_path(path: &str) -> Result<(), String> {
    if path.len() > MAX_PATH {
        return Err(format!(
            "the repository path is longer than {MAX_PATH} characters"
        ));
    }
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "the repository path '{path}' has upper-case letters (it must be lower case)"
        ));
    }
    for component in path.split('/') {
        if !path_component_ok(component) {
            return Err(format!(
                "'{component}' is not a valid repository path component (lower-case letters and \
                 digits, joined by '.', '_', '__' or '-')"
            ));
        }
    }
    Ok(())
}

fn path_component_ok(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let (Some(first), Some(last)) = (component.chars().next(), component.chars().last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Every run of separators between two alphanumeric runs must be one separator.
    let mut run = String::new();
    for c in component.chars() {
        if alnum(c) {
            let ok = run.is_empty()
                || run == "."
                || run == "_"
                || run == "__"
                || run.chars().all(|s| s == '-');
            if !ok {
                return false;
            }
            run.clear();
        } else if matches!(c, '.' | '_' | '-') {
            run.push(c);
        } else {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = tag.len() <= 128
        && tag.chars().next().is_some_and(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("the tag '{tag}' is not valid"))
    }
}

/// A digest container runtimes accept: `sha256`, `sha384` or `sha512` with the matching number
/// of lower-case hex digits.
fn check_digest(digest: &str) -> Result<(), String> {
    let hex_len = match digest.split_once(':') {
        Some(("sha256", _)) => 64,
        Some(("sha384", _)) => 96,
        Some(("sha512", _)) => 128,
        _ => 0,
    };
    let hex = digest.split_once(':').map_or("", |(_, h)| h);
    if hex_len == 0
        || hex.len() != hex_len
        || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(format!(
            "the digest '{digest}' is not sha256:<64 lower-case hex digits>"
        ));
    }
    Ok(())
}

/// One entry of `hardening.images.allowed`, normalised like an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePrefix {
    domain: String,
    /// Without a trailing `/`; empty for a whole registry.
    path: String,
    /// Written with a trailing `/`: everything below `domain/path`.
    subtree: bool,
}

impl ImagePrefix {
    /// Parses a prefix from the config; the error says what is wrong and how to write it.
    pub fn parse(text: &str) -> Result<Self, String> {
        const FORMS: &str = "write a registry (registry.corp/), an organisation or path \
                             (docker.io/apache/) or one repository (docker.io/apache/spark)";
        if text.is_empty() {
            return Err(format!("is empty: {FORMS}"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("'{text}' contains whitespace: {FORMS}"));
        }
        if text.contains('@') {
            return Err(format!(
                "'{text}' has a digest: a prefix names repositories, not one image; remove \
                 '@...' (hardening.images.requireDigest asks for digests)"
            ));
        }
        let Some((first, _)) = text.split_once('/') else {
            return Err(format!(
                "'{text}' does not name a registry host: {FORMS} (a registry ends with '/')"
            ));
        };
        let after_slash = text.rfind('/').map_or(text, |i| &text[i + 1..]);
        if after_slash.contains(':') {
            return Err(format!(
                "'{text}' has a tag: a prefix names repositories, not one image; remove ':...'"
            ));
        }
        if !(first.eq_ignore_ascii_case("localhost") || first.contains(['.', ':'])) {
            return Err(format!(
                "'{text}' does not start with a registry host (one with a '.' or a port, or \
                 localhost): write docker.io/{text} for Docker Hub, or the registry's host"
            ));
        }
        let subtree = text.ends_with('/');
        let body = text.strip_suffix('/').unwrap_or(text);
        if body.ends_with('/') {
            return Err(format!("'{text}' has an empty path component: {FORMS}"));
        }
        let (domain, path) = body.split_once('/').unwrap_or((body, ""));
        check_host(domain).map_err(|e| format!("'{text}': {e}"))?;
        let domain = canonical_host(domain);
        if path.is_empty() && !subtree {
            return Err(format!("'{text}' has no repository: {FORMS}"));
        }
        let path = if domain == DOCKER_HUB && !subtree && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path.to_string()
        };
        if !path.is_empty() {
            check_path(&path).map_err(|e| format!("'{text}': {e}"))?;
        }
        Ok(Self {
            domain,
            path,
            subtree,
        })
    }

    /// Whether the image's repository is this one, or lies below it (on component boundaries).
    pub fn matches(&self, image: &ImageRef) -> bool {
        if image.domain != self.domain {
            return false;
        }
        if !self.subtree {
            return image.path == self.path;
        }
        self.path.is_empty()
            || image
                .path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl fmt::Display for ImagePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.domain)?;
        if !self.path.is_empty() {
            write!(f, "/{}", self.path)?;
        }
        if self.subtree {
            f.write_str("/")?;
        }
        Ok(())
    }
}

/// `hardening.images`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImagePolicy {
    /// Empty: any registry and repository.
    pub allowed: Vec<ImagePrefix>,
    pub require_digest: bool,
}

impl ImagePolicy {
    /// Whether any image rule applies; without one no image is inspected at all, so the default
    /// configuration behaves as before images were checked.
    pub fn is_active(&self) -> bool {
        !self.allowed.is_empty() || self.require_digest
    }

    fn allowed_list(&self) -> String {
        self.allowed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The violations of one image at `field`.
    fn check(&self, field: &str, image: &str, out: &mut Vec<Violation>) {
        let shown = shorten(image);
        let parsed = match parse_image(image) {
            Ok(parsed) => parsed,
            Err(why) => {
                out.push(Violation {
                    field: field.to_string(),
                    problem: format!("is '{shown}', which is not a valid image reference ({why})"),
                    fix: "write a reference such as registry.corp/spark/app:1.0 or \
                          docker.io/apache/spark@sha256:<64 hex digits>"
                        .into(),
                });
                return;
            }
        };
        if !self.allowed.is_empty() && !self.allowed.iter().any(|p| p.matches(&parsed)) {
            out.push(Violation {
                field: field.to_string(),
                problem: format!(
                    "is '{shown}' (repository {}), which is not under an allowed prefix: {}",
                    parsed.repository(),
                    self.allowed_list()
                ),
                fix: "use an image from one of them; the platform team lists approved \
                      registries and repositories in hardening.images.allowed"
                    .into(),
            });
        }
        if self.require_digest && parsed.digest.is_none() {
            out.push(Violation {
                field: field.to_string(),
                problem: format!("is '{shown}', which is not pinned by digest"),
                fix: format!(
                    "pin it: {}@sha256:<64 hex digits> (a tag may stay before the digest; \
                     `docker buildx imagetools inspect` or `crane digest` shows it); \
                     hardening.images.requireDigest is on",
                    parsed.repository()
                ),
            });
        }
    }
}

/// An image value for messages: long ones are cut.
fn shorten(image: &str) -> String {
    const MAX: usize = 200;
    if image.chars().count() <= MAX {
        image.to_string()
    } else {
        let cut: String = image.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

/// One place in an object that names an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageField {
    /// kubectl-style path, e.g. `spec.initContainers[0].image`.
    pub field: String,
    pub value: ImageValue,
}

/// What the field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageValue {
    Text(String),
    /// Not a string (a loosely typed pod template): its JSON text, cut at
    /// `loose::MAX_RENDERED` bytes.
    NotText(String),
}

/// The violations of every field under `policy` (none when the policy is inactive).
pub fn check_images(policy: &ImagePolicy, fields: &[ImageField]) -> Vec<Violation> {
    let mut out = Vec::new();
    if !policy.is_active() {
        return out;
    }
    for f in fields {
        match &f.value {
            ImageValue::Text(image) => policy.check(&f.field, image, &mut out),
            ImageValue::NotText(json) => out.push(Violation {
                field: f.field.clone(),
                problem: format!("is {}, not an image reference", shorten(json)),
                fix: "write the image as a string".into(),
            }),
        }
    }
    out
}

/// The fields of `new` that `old` does not hold with the same value: what an update adds or
/// changes (an image swap, a new ephemeral container). Images admitted earlier stay admitted.
pub fn changed_images(new: Vec<ImageField>, old: &[ImageField]) -> Vec<ImageField> {
    new.into_iter().filter(|n| !old.contains(n)).collect()
}

fn containers(loc: &Loc, list: &[Container], out: &mut Vec<ImageField>) {
    for (i, c) in list.iter().enumerate() {
        out.push(ImageField {
            field: loc.index(i).key("image").human(),
            // The API server requires an image on every pod container; a missing one is empty.
            value: ImageValue::Text(c.image.clone().unwrap_or_default()),
        });
    }
}

/// Every image of a pod: containers, init containers, ephemeral containers.
pub fn pod_images(pod: &Pod) -> Vec<ImageField> {
    pod_spec_images(&pod.spec)
}

/// `pod_images` of a pod's spec.
pub fn pod_spec_images(pod_spec: &PodSpec) -> Vec<ImageField> {
    let spec = Loc::root().key("spec");
    let mut out = Vec::new();
    for (key, list) in [
        ("containers", &pod_spec.containers),
        ("initContainers", &pod_spec.init_containers),
        ("ephemeralContainers", &pod_spec.ephemeral_containers),
    ] {
        containers(&spec.key(key), list, &mut out);
    }
    out
}

/// Every image a SparkApplication spec (at `spec_loc`: `spec`, or `spec.template` of a
/// ScheduledSparkApplication) names: `image`, the driver's and executor's `image`, their sidecars
/// and init containers, the containers of their pod templates, and the image properties in
/// `sparkConf`. Unset fields are left out: spark-operator then falls back to the next one, and
/// each pod it finally creates is checked again.
pub fn app_spec_images(spec_loc: &Loc, spec: &SparkAppSpec) -> Vec<ImageField> {
    let mut out = Vec::new();
    let text = |loc: &Loc, image: &str| ImageField {
        field: loc.human(),
        value: ImageValue::Text(image.to_string()),
    };
    if let Some(image) = &spec.image {
        out.push(text(&spec_loc.key("image"), image));
    }
    for (role, pod) in [("driver", &spec.driver), ("executor", &spec.executor)] {
        let Some(pod) = pod else { continue };
        let loc = spec_loc.key(role);
        if let Some(image) = &pod.image {
            out.push(text(&loc.key("image"), image));
        }
        containers(&loc.key("sidecars"), &pod.sidecars, &mut out);
        containers(&loc.key("initContainers"), &pod.init_containers, &mut out);
        if let Some(template) = &pod.template {
            template_images(&loc.key("template"), template, &mut out);
        }
    }
    let conf = spec_loc.key("sparkConf");
    for key in SPARK_IMAGE_PROPERTIES {
        if let Some(image) = spec.spark_conf.as_ref().and_then(|c| c.get(key)) {
            out.push(text(&conf.key(key), image));
        }
    }
    out
}

/// The images of a pod template (kept as loose JSON by the CRD): a container without one, or
/// with `null`, names none.
fn template_images(loc: &Loc, template: &Template, out: &mut Vec<ImageField>) {
    let Some(spec) = &template.spec else {
        return;
    };
    let spec_loc = loc.key("spec");
    for (list, containers) in [
        ("containers", &spec.containers),
        ("initContainers", &spec.init_containers),
        ("ephemeralContainers", &spec.ephemeral_containers),
    ] {
        for (i, c) in containers.iter().enumerate() {
            let value = match &c.image {
                None => continue,
                Some(Loose::Is(s)) => ImageValue::Text(s.clone()),
                Some(Loose::Not(text)) => ImageValue::NotText(text.clone()),
            };
            out.push(ImageField {
                field: spec_loc.key(list).index(i).key("image").human(),
                value,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn repo(image: &str) -> String {
        parse_image(image)
            .unwrap_or_else(|e| panic!("{image}: {e}"))
            .repository()
    }

    #[test]
    fn references_are_normalised_like_container_runtimes_do() {
        for (image, want) in [
            ("busybox", "docker.io/library/busybox"),
            ("busybox:1.36", "docker.io/library/busybox"),
            ("apache/spark:4.0.0", "docker.io/apache/spark"),
            ("docker.io/busybox", "docker.io/library/busybox"),
            ("index.docker.io/apache/spark", "docker.io/apache/spark"),
            ("Docker.IO/apache/spark", "docker.io/apache/spark"),
            ("localhost/spark", "localhost/spark"),
            ("localhost:5000/spark:1", "localhost:5000/spark"),
            ("registry.corp/spark/app:1.0", "registry.corp/spark/app"),
            ("Registry.Corp:443/spark/app", "registry.corp:443/spark/app"),
            ("10.0.0.1:5000/a/b/c", "10.0.0.1:5000/a/b/c"),
            ("[::1]:5000/spark", "[::1]:5000/spark"),
            (
                "ghcr.io/org/spark-py_3.x__v2",
                "ghcr.io/org/spark-py_3.x__v2",
            ),
            // A first component without '.', ':' or localhost is a Docker Hub organisation.
            ("myregistry/spark", "docker.io/myregistry/spark"),
            // An upper-case first component can only be a host (paths are lower case).
            ("MyHost/spark", "myhost/spark"),
        ] {
            assert_eq!(repo(image), want, "{image}");
        }
        let r = parse_image(&format!("registry.corp:5000/spark/app:3.5@{SHA}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("3.5"));
        assert_eq!(r.digest.as_deref(), Some(SHA));
        assert_eq!(r.domain, "registry.corp:5000");
    }

    #[test]
    fn malformed_references_are_refused_with_the_reason() {
        for (image, why) in [
            ("", "empty"),
            ("docker.io/apache/spark :1", "whitespace"),
            (" busybox", "whitespace"),
            ("docker.io/Apache/spark", "lower case"),
            ("apache/Spark", "lower case"),
            ("busybox@sha256:abc", "digest"),
            (&format!("busybox@{}", SHA.to_uppercase()), "digest"),
            ("busybox@md5:0123456789abcdef0123456789abcdef", "digest"),
            ("busybox@@sha256:1", "digest"),
            ("busybox:", "tag"),
            ("busybox:-x", "tag"),
            ("registry.corp/", "path component"),
            ("registry.corp//x", "path component"),
            ("docker.io/apache/spark-", "path component"),
            ("docker.io/apache/spark..x", "path component"),
            ("docker.io/apache/${image}", "path component"),
            ("docker.io/apache/spark:${env:TAG}", "tag"),
            ("bad_host.io:x/spark", "registry host"),
            ("-bad.io/spark", "registry host"),
            (":5000/spark", "registry host"),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "image id",
            ),
        ] {
            let err = parse_image(image).expect_err(image);
            assert!(err.contains(why), "{image}: {err}");
        }
        let long = format!("registry.corp/{}", "a".repeat(300));
        assert!(parse_image(&long).unwrap_err().contains("longer"));
    }

    fn policy(allowed: &[&str], require_digest: bool) -> ImagePolicy {
        ImagePolicy {
            allowed: allowed
                .iter()
                .map(|p| ImagePrefix::parse(p).unwrap_or_else(|e| panic!("{p}: {e}")))
                .collect(),
            require_digest,
        }
    }

    fn violations(policy: &ImagePolicy, image: &str) -> Vec<Violation> {
        check_images(
            policy,
            &[ImageField {
                field: "spec.containers[1].image".into(),
                value: ImageValue::Text(image.into()),
            }],
        )
    }

    #[test]
    fn a_repository_prefix_matches_that_repository_only() {
        let p = policy(&["docker.io/apache/spark"], false);
        for ok in [
            "docker.io/apache/spark",
            "apache/spark:4.0.0",
            "index.docker.io/apache/spark:3.5.1",
            &format!("apache/spark:4.0.0@{SHA}"),
        ] {
            assert!(violations(&p, ok).is_empty(), "{ok}");
        }
        // The boundary attacks: a longer name, a nested repository, another registry.
        for attack in [
            "docker.io/apache/spark-evil",
            "docker.io/apache/sparkx:1",
            "docker.io/apache/spark/evil:1",
            "docker.io/apache/spar",
            "evil.io/docker.io/apache/spark",
            "registry-1.docker.io/apache/spark",
            "docker.io.evil.io/apache/spark",
            "spark",
        ] {
            let v = violations(&p, attack);
            assert_eq!(v.len(), 1, "{attack}: {v:?}");
            assert!(
                v[0].problem
                    .contains("which is not under an allowed prefix: docker.io/apache/spark"),
                "{attack}: {}",
                v[0]
            );
        }
    }

    #[test]
    fn a_prefix_ending_in_a_slash_covers_a_registry_or_a_path() {
        let p = policy(
            &["registry.corp/", "docker.io/apache/", "localhost:5000/ml/"],
            false,
        );
        for ok in [
            "registry.corp/anything/at/all:1",
            "REGISTRY.corp/x",
            "apache/spark",
            "docker.io/apache/spark-py:3.5",
            "localhost:5000/ml/trainer",
        ] {
            assert!(violations(&p, ok).is_empty(), "{ok}");
        }
        for attack in [
            "registry.corp.evil.io/x",
            "registry.corp:5000/x",
            "docker.io/apachex/spark",
            "docker.io/apache",
            "busybox",
            "localhost:5000/mlx/trainer",
            "localhost/ml/trainer",
        ] {
            assert_eq!(violations(&p, attack).len(), 1, "{attack}");
        }
        // Docker Hub official images through `docker.io/library/`; a single-component
        // repository prefix on Docker Hub is an official image too.
        let p = policy(&["docker.io/library/", "docker.io/busybox"], false);
        assert!(violations(&p, "busybox:1.36").is_empty());
        assert!(violations(&p, "python").is_empty());
        let p = policy(&["docker.io/busybox"], false);
        assert!(violations(&p, "docker.io/library/busybox").is_empty());
        assert_eq!(violations(&p, "python").len(), 1);
    }

    #[test]
    fn digest_pinning_counts_the_digest_not_the_tag() {
        let p = policy(&[], true);
        assert!(p.is_active());
        assert!(violations(&p, &format!("busybox@{SHA}")).is_empty());
        assert!(violations(&p, &format!("busybox:1.36@{SHA}")).is_empty());
        for unpinned in ["busybox", "busybox:1.36", "busybox:sha256"] {
            let v = violations(&p, unpinned);
            assert_eq!(v.len(), 1, "{unpinned}");
            assert!(v[0].problem.contains("not pinned by digest"), "{}", v[0]);
            assert!(
                v[0].fix.contains("docker.io/library/busybox@sha256:"),
                "{}",
                v[0]
            );
        }
        // Both rules at once report both problems.
        let p = policy(&["registry.corp/"], true);
        let v = violations(&p, "docker.io/evil/x:1");
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(
            v[0].to_string(),
            "spec.containers[1].image is 'docker.io/evil/x:1' (repository docker.io/evil/x), \
             which is not under an allowed prefix: registry.corp/: use an image from one of \
             them; the platform team lists approved registries and repositories in \
             hardening.images.allowed"
        );
    }

    #[test]
    fn without_rules_nothing_is_checked() {
        let p = ImagePolicy::default();
        assert!(!p.is_active());
        assert!(violations(&p, "not a reference at all").is_empty());
    }

    #[test]
    fn malformed_images_are_denied_under_any_rule() {
        let p = policy(&["registry.corp/"], false);
        let v = violations(&p, "registry.corp/Spark");
        assert_eq!(v.len(), 1);
        assert!(
            v[0].problem.contains("not a valid image reference"),
            "{}",
            v[0]
        );
        let v = check_images(
            &p,
            &[ImageField {
                field: "spec.driver.template.spec.containers[0].image".into(),
                value: ImageValue::NotText("42".into()),
            }],
        );
        assert_eq!(
            v[0].to_string(),
            "spec.driver.template.spec.containers[0].image is 42, not an image reference: write \
             the image as a string"
        );
    }

    #[test]
    fn prefixes_are_checked_at_load_with_the_form_to_write() {
        for (prefix, word) in [
            ("", "empty"),
            ("registry.corp/ spark/", "whitespace"),
            ("docker.io/apache/spark:4.0.0", "tag"),
            (&format!("docker.io/apache/spark@{SHA}"), "digest"),
            ("registry.corp", "registry host"),
            ("apache/spark", "docker.io/apache/spark"),
            ("myregistry/", "registry host"),
            ("docker.io/Apache/", "lower case"),
            ("docker.io//", "path component"),
            ("bad_host.io/", "registry host"),
            ("registry.corp:x/", "registry host"),
        ] {
            let err = ImagePrefix::parse(prefix).expect_err(prefix);
            assert!(err.contains(word), "{prefix}: {err}");
        }
        for (prefix, shown) in [
            ("registry.corp/", "registry.corp/"),
            ("Registry.Corp:5000/spark/", "registry.corp:5000/spark/"),
            ("index.docker.io/apache/spark", "docker.io/apache/spark"),
            ("docker.io/busybox", "docker.io/library/busybox"),
            ("docker.io/apache/", "docker.io/apache/"),
            ("localhost/", "localhost/"),
        ] {
            assert_eq!(ImagePrefix::parse(prefix).unwrap().to_string(), shown);
        }
    }

    #[test]
    fn pod_and_application_images_are_collected_with_their_fields() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {},
            "spec": {
                "containers": [{"name": "a", "image": "busybox"}, {"name": "b"}],
                "initContainers": [{"name": "i", "image": "init:1"}],
                "ephemeralContainers": [{"name": "d", "image": "debug:1"}],
            }
        }))
        .unwrap();
        let fields: Vec<(String, ImageValue)> = pod_images(&pod)
            .into_iter()
            .map(|f| (f.field, f.value))
            .collect();
        let text = |s: &str| ImageValue::Text(s.into());
        assert_eq!(
            fields,
            vec![
                ("spec.containers[0].image".into(), text("busybox")),
                ("spec.containers[1].image".into(), text("")),
                ("spec.initContainers[0].image".into(), text("init:1")),
                ("spec.ephemeralContainers[0].image".into(), text("debug:1")),
            ]
        );

        let spec: SparkAppSpec = serde_json::from_value(serde_json::json!({
            "image": "apache/spark:4.0.0",
            "driver": {"image": "d:1", "sidecars": [{"name": "s", "image": "side:1"}],
                "template": {"spec": {"containers": [{"name": "spark"}, {"name": "x", "image": "tpl:1"}],
                    "initContainers": [{"name": "y", "image": 7}]}}},
            "executor": {"image": "e:1", "initContainers": [{"name": "i", "image": "init:1"}]},
            "sparkConf": {"spark.kubernetes.executor.container.image": "conf:1",
                "spark.kubernetes.container.image.pullPolicy": "Always"},
        }))
        .unwrap();
        let fields: Vec<(String, ImageValue)> =
            app_spec_images(&Loc::root().key("spec").key("template"), &spec)
                .into_iter()
                .map(|f| (f.field, f.value))
                .collect();
        assert_eq!(
            fields,
            vec![
                ("spec.template.image".into(), text("apache/spark:4.0.0")),
                ("spec.template.driver.image".into(), text("d:1")),
                (
                    "spec.template.driver.sidecars[0].image".into(),
                    text("side:1")
                ),
                (
                    "spec.template.driver.template.spec.containers[1].image".into(),
                    text("tpl:1")
                ),
                (
                    "spec.template.driver.template.spec.initContainers[0].image".into(),
                    ImageValue::NotText("7".into())
                ),
                ("spec.template.executor.image".into(), text("e:1")),
                (
                    "spec.template.executor.initContainers[0].image".into(),
                    text("init:1")
                ),
                (
                    "spec.template.sparkConf[\"spark.kubernetes.executor.container.image\"]".into(),
                    text("conf:1")
                ),
            ]
        );
    }

    #[test]
    fn an_update_is_checked_for_the_images_it_adds_or_changes() {
        let field = |f: &str, v: &str| ImageField {
            field: f.into(),
            value: ImageValue::Text(v.into()),
        };
        let old = vec![
            field("spec.containers[0].image", "legacy/app:1"),
            field("spec.containers[1].image", "busybox"),
        ];
        let new = vec![
            field("spec.containers[0].image", "legacy/app:1"),
            field("spec.containers[1].image", "evil/x"),
            field("spec.ephemeralContainers[0].image", "debug:1"),
        ];
        assert_eq!(
            changed_images(new, &old),
            vec![
                field("spec.containers[1].image", "evil/x"),
                field("spec.ephemeralContainers[0].image", "debug:1"),
            ]
        );
    }
}
