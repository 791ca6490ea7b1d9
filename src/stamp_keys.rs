//! The stamp key file on disk: loading it into the shared `Keyring`, generating one for local
//! mode and for `sparkward stamp-key`, and the poll loop that picks up a rotated Secret.
//!
//! A key file that is missing or invalid never leaves a running replica without keys it already
//! had: the last good set stays in use and the problem is logged. A replica that never had keys
//! stays unready (its /readyz says why) and denies every review that needs a stamp.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::admission::Keyring;
use crate::core::stamp::StampKeys;

/// A file's content digest, to notice changes.
pub type Digest32 = [u8; 32];

/// Reads and parses a key file.
pub fn load(path: &Path) -> Result<StampKeys, String> {
    load_digested(path).0
}

/// Reads and parses a key file, with the digest of the bytes it parsed (`None`: unreadable).
fn load_digested(path: &Path) -> (Result<StampKeys, String>, Option<Digest32>) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return (
                Err(format!(
                    "cannot read the stamp key file {}: {e}",
                    path.display()
                )),
                None,
            );
        }
    };
    let digest = Some(Sha256::digest(&bytes).into());
    let parsed = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{}: not UTF-8 text", path.display()))
        .and_then(|text| StampKeys::parse(text).map_err(|e| format!("{}: {e}", path.display())));
    (parsed, digest)
}

/// A new key-file line `id:base64` from 32 random bytes.
pub fn new_line(id: &str) -> anyhow::Result<String> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random)
        .map_err(|e| anyhow::anyhow!("no random bytes for a stamp key: {e}"))?;
    let line = StampKeys::line_for(id, &random);
    // The id rules live in the parser: check the line it will read.
    StampKeys::parse(&line).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(line)
}

/// Local mode: the key file in `dir` (generated, owner-only, when missing or unusable).
pub fn ensure_dev_key(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("stamp-keys");
    if load(&path).is_ok() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let text = format!(
        "# sparkward development stamp key (local mode only)\n{}\n",
        new_line("dev")?
    );
    write_private(&path, &text)?;
    tracing::info!(path = %path.display(), "local mode: generated a development stamp key");
    Ok(path)
}

/// Writes `text` to `path`, readable by its owner only.
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("failed to write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))
}

/// A keyring loaded from `path`, or empty with the reason (cluster mode keeps polling), and the
/// digest of the file it read (for `reload_loop`).
pub fn keyring(path: &Path) -> (Keyring, Option<Digest32>) {
    let (loaded, digest) = load_digested(path);
    let ring = match loaded {
        Ok(keys) => {
            tracing::info!(path = %path.display(), keys = keys.describe(), "stamp keys loaded");
            Keyring::new(keys)
        }
        Err(why) => {
            tracing::error!(error = %why, "no stamp keys: reviews that create jobs are denied until the key file appears");
            Keyring::empty(why)
        }
    };
    (ring, digest)
}

fn digest(path: &Path) -> Option<Digest32> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

/// Polls the key file (`path()` is read each time, so a config reload can move it) and swaps a
/// changed file in once it parses. `loaded` is the digest of what the keyring was loaded from.
/// `on_reload` reports each attempt (`true`: swapped in).
pub async fn reload_loop(
    path: impl Fn() -> PathBuf + Send + 'static,
    keyring: Keyring,
    loaded: Option<Digest32>,
    interval: Duration,
    on_reload: impl Fn(bool) + Send + 'static,
    shutdown: CancellationToken,
) {
    let mut current = path();
    let mut seen = loaded;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let wanted = path();
        let now = digest(&wanted);
        if wanted == current && (now.is_none() || now == seen) {
            continue;
        }
        current = wanted;
        seen = now;
        match load(&current) {
            Ok(keys) => {
                let described = keys.describe().to_string();
                keyring.set(keys);
                tracing::info!(path = %current.display(), keys = %described, "stamp keys reloaded");
                on_reload(true);
            }
            Err(why) => {
                if keyring.current().is_ok() {
                    tracing::error!(error = %why, "new stamp key file rejected; keeping the previous keys");
                } else {
                    keyring.clear(why.clone());
                    tracing::error!(error = %why, "still no stamp keys");
                }
                on_reload(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_lines_parse_and_differ() {
        let a = new_line("k1").unwrap();
        let b = new_line("k1").unwrap();
        assert_ne!(a, b);
        assert_eq!(StampKeys::parse(&a).unwrap().ids(), vec!["k1"]);
        assert!(new_line("Bad Id").is_err());
    }

    #[test]
    fn dev_key_is_generated_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = ensure_dev_key(dir.path()).unwrap();
        let first = std::fs::read_to_string(&p).unwrap();
        assert_eq!(ensure_dev_key(dir.path()).unwrap(), p);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }

    #[tokio::test]
    async fn a_rotated_file_is_picked_up_and_a_broken_one_keeps_the_last_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, new_line("k1").unwrap()).unwrap();
        let (ring, loaded) = keyring(&path);
        let shutdown = CancellationToken::new();
        let reloads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = reloads.clone();
        let p = path.clone();
        let task = tokio::spawn(reload_loop(
            move || p.clone(),
            ring.clone(),
            loaded,
            Duration::from_millis(20),
            move |ok| r.lock().unwrap().push(ok),
            shutdown.clone(),
        ));
        let wait_for = |n: usize| {
            let reloads = reloads.clone();
            async move {
                while reloads.lock().unwrap().len() < n {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        std::fs::write(
            &path,
            format!("{}\n{}", new_line("k2").unwrap(), new_line("k1").unwrap()),
        )
        .unwrap();
        wait_for(1).await;
        assert_eq!(ring.current().unwrap().ids(), vec!["k2", "k1"]);
        std::fs::write(&path, "k3:short").unwrap();
        wait_for(2).await;
        assert_eq!(ring.current().unwrap().ids(), vec!["k2", "k1"]);
        assert_eq!(*reloads.lock().unwrap(), vec![true, false]);
        shutdown.cancel();
        task.await.unwrap();
    }
}
