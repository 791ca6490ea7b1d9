//! The control-plane binaries: found as `<upstream>/kube/*.xz`, unpacked once per machine into
//! `<target>/kube-bin/<sha256>/<name>` and checked against the sha256 that `kube/README.md`
//! lists. Unpacking writes a private temporary file and renames it into place, so test threads
//! and test binaries that race each other only ever see complete, verified files.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// The unpacked executables.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub apiserver: PathBuf,
    pub controller_manager: PathBuf,
}

/// `SPARKWARD_UPSTREAM_DIR/kube` (default `<crate>/../shared/kube`).
pub fn kube_dir() -> PathBuf {
    std::env::var_os("SPARKWARD_UPSTREAM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
        .join("kube")
}

/// Whether a missing control plane must fail the test (CI) instead of skipping it.
pub fn required() -> bool {
    std::env::var("SPARKWARD_REQUIRE_KUBE").as_deref() == Ok("1")
}

/// `Ok(None)` when the compressed binaries are not there (the caller skips or panics, see
/// [`required`]); `Err` when they are there but cannot be unpacked or do not verify.
pub fn locate() -> Result<Option<Binaries>, String> {
    let dir = kube_dir();
    if !dir.join("kube-apiserver.xz").is_file() {
        return Ok(None);
    }
    let readme = std::fs::read_to_string(dir.join("README.md"))
        .map_err(|e| format!("{}: {e}", dir.join("README.md").display()))?;
    let unpack = |name: &str| -> Result<PathBuf, String> {
        let sha = listed_sha256(&readme, &format!("{name}.xz"))
            .ok_or_else(|| format!("kube/README.md lists no sha256 for {name}.xz"))?;
        unpack(&dir.join(format!("{name}.xz")), name, &sha)
    };
    // The first run on a machine unpacks all three at once (xz and the hashing overlap).
    let (etcd, apiserver, controller_manager) = std::thread::scope(|s| {
        let etcd = s.spawn(|| unpack("etcd"));
        let apiserver = s.spawn(|| unpack("kube-apiserver"));
        let controller_manager = unpack("kube-controller-manager");
        let join = |h: std::thread::ScopedJoinHandle<'_, Result<PathBuf, String>>| {
            h.join()
                .unwrap_or_else(|_| Err("unpacking panicked".into()))
        };
        (join(etcd), join(apiserver), controller_manager)
    });
    Ok(Some(Binaries {
        etcd: etcd?,
        apiserver: apiserver?,
        controller_manager: controller_manager?,
    }))
}

/// The sha256 in the README's table row of `file` (`| \`file\` | ... | <64 hex> |`).
fn listed_sha256(readme: &str, file: &str) -> Option<String> {
    let cell = format!("`{file}`");
    readme
        .lines()
        .filter(|line| line.trim_start().starts_with('|') && line.contains(&cell))
        .flat_map(|line| line.split('|'))
        .map(str::trim)
        .find(|c| c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
}

/// The cache root: beside cargo's `target/tmp`, so `cargo clean` removes it.
fn cache_root() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("kube-bin")
}

fn unpack(source: &Path, name: &str, sha: &str) -> Result<PathBuf, String> {
    let dir = cache_root().join(sha);
    let dest = dir.join(name);
    // Only a verified file is ever renamed to this name.
    if dest.is_file() {
        return Ok(dest);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{name}.{}.{:?}.partial",
        std::process::id(),
        std::thread::current().id()
    ));
    let result = decompress_verified(source, &tmp, sha);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok(dest)
}

/// `xz -dc source > tmp`, hashing on the way; an executable file on success.
fn decompress_verified(source: &Path, tmp: &Path, sha: &str) -> Result<(), String> {
    let mut child = Command::new("xz")
        .arg("-dc")
        .arg(source)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run xz ({e}) to unpack {}: install xz-utils (apt-get install xz-utils)",
                source.display()
            )
        })?;
    let mut out = std::fs::File::create(tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut hasher = Sha256::new();
    let mut stdout = child.stdout.take().ok_or("xz has no stdout")?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = stdout
            .read(&mut buf)
            .map_err(|e| format!("reading xz output: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        let mut err = String::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        return Err(format!(
            "xz -dc {} failed: {status}: {err}",
            source.display()
        ));
    }
    out.sync_all().map_err(|e| e.to_string())?;
    let got = format!("{:x}", hasher.finalize());
    if got != sha {
        return Err(format!(
            "{} unpacks to sha256 {got}, but kube/README.md lists {sha}",
            source.display()
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
