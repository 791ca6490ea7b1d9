//! Child processes of the control plane, and the guarantee that they die with the test binary.
//!
//! The control plane lives in a `static` (one per test binary), and statics are never dropped,
//! so "kill on drop" cannot be the mechanism. Instead one small `sh` reaper is started per test
//! binary with a pipe on its stdin; every process the harness starts, and every directory it
//! creates, is written to that pipe. When the test binary ends — normally, by a panic that
//! aborts, or by SIGKILL — the kernel closes the pipe, the reaper reads end-of-file, kills the
//! recorded process ids and removes the recorded directories. (`prctl(PR_SET_PDEATHSIG)` would
//! need `unsafe`, which the crate forbids.)

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Reads `pid N` / `dir PATH` lines until EOF, then kills and removes them.
const REAPER: &str = r#"
pids=
dirs=
while IFS= read -r line; do
  case "$line" in
    "pid "*) pids="$pids ${line#pid }" ;;
    "dir "*) dirs="$dirs
${line#dir }" ;;
  esac
done
[ -n "$pids" ] && kill -9 $pids 2>/dev/null
IFS='
'
for d in $dirs; do [ -n "$d" ] && rm -rf -- "$d"; done
exit 0
"#;

struct Reaper {
    stdin: Mutex<ChildStdin>,
    /// Kept (never waited for): the reaper must outlive everything it watches.
    _child: Child,
}

fn reaper() -> &'static Reaper {
    static REAPER_PROCESS: OnceLock<Reaper> = OnceLock::new();
    REAPER_PROCESS.get_or_init(|| {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(REAPER)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the sh reaper of the test control plane");
        let stdin = child.stdin.take().expect("reaper stdin");
        Reaper {
            stdin: Mutex::new(stdin),
            _child: child,
        }
    })
}

fn tell(line: String) {
    let mut stdin = reaper().stdin.lock().expect("reaper lock");
    let _ = writeln!(stdin, "{line}");
    let _ = stdin.flush();
}

/// Kill `pid` when the test binary exits.
pub fn kill_at_exit(pid: u32) {
    tell(format!("pid {pid}"));
}

/// Remove `dir` when the test binary exits (unless `SPARKWARD_KUBE_KEEP=1`, for debugging).
pub fn remove_at_exit(dir: &Path) {
    if std::env::var("SPARKWARD_KUBE_KEEP").as_deref() != Ok("1") {
        tell(format!("dir {}", dir.display()));
    }
}

/// One started binary: stdout and stderr go to `<log_dir>/<name>.log`.
pub struct Process {
    pub name: &'static str,
    pub log: PathBuf,
    child: Mutex<Child>,
}

impl Process {
    pub fn spawn(name: &'static str, mut cmd: Command, log_dir: &Path) -> Result<Self, String> {
        let log = log_dir.join(format!("{name}.log"));
        let file = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err_file = file.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err_file));
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        kill_at_exit(child.id());
        Ok(Self {
            name,
            log,
            child: Mutex::new(child),
        })
    }

    /// `Err` with the log's tail if the process has exited.
    pub fn check_running(&self) -> Result<(), String> {
        let status = self.child.lock().expect("child lock").try_wait();
        match status {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited with {status}; last lines of {}:\n{}",
                self.name,
                self.log.display(),
                self.tail(40)
            )),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    /// The last `lines` lines of the log.
    pub fn tail(&self, lines: usize) -> String {
        tail_of(&self.log, lines)
    }
}

/// The last `lines` lines of a file (empty when unreadable).
pub fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A free TCP port on 127.0.0.1 (bound and released; the kernel does not hand it out again
/// right away).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}
