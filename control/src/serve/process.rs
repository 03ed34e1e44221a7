//! Worker processes at the operating-system level: spawning one (its own process group, its
//! socket, the tenant's database URL in its environment, one end of a socketpair inherited as
//! the control channel), reaping exited ones with `waitpid`, and killing a whole group.
//!
//! Every descriptor control opens is close-on-exec, the channel's socketpair too (std makes
//! it with `SOCK_CLOEXEC`); only in the child, between fork and exec, is that flag cleared on
//! the worker's own end. So each worker inherits its channel and nothing else, and when
//! control dies every channel reaches EOF. (PR_SET_PDEATHSIG would be the other way, but it
//! fires when the *thread* that forked exits, and tokio retires idle threads.)

use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How workers are started: the program and what every worker gets.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    /// The settings file control itself read, so workers read the same one.
    pub config: Option<PathBuf>,
    pub report_interval: Duration,
    /// The daemon's API socket, given to the public site's workers (its sign-up asks
    /// control to provision pharmacies).
    pub control_socket: PathBuf,
    /// Settings for the workers in their environment (`APOTHECA_WORKER__…`), over the file's:
    /// what the daemon knows of the database (`citus`).
    pub env: Vec<(String, String)>,
}

/// A worker just started.
pub struct Spawned {
    pub pid: i32,
    /// Control's end of the channel.
    pub channel: tokio::net::UnixStream,
}

impl WorkerCommand {
    /// `[control.serve] worker_bin`, else `apotheca-worker` beside this binary, else the
    /// name alone (found on PATH).
    pub fn locate(configured: Option<&Path>) -> PathBuf {
        if let Some(p) = configured {
            return p.to_path_buf();
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("apotheca-worker")))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("apotheca-worker"))
    }

    /// Starts a worker for `schema` listening on `socket`, logged in with `db_url`.
    pub fn spawn(&self, schema: &str, socket: &Path, db_url: &str) -> std::io::Result<Spawned> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let fd = theirs.as_raw_fd();
        let mut cmd = Command::new(&self.program);
        cmd.arg("--schema")
            .arg(schema)
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--control-fd")
            .arg(fd.to_string())
            .arg("--report-interval-ms")
            .arg(self.report_interval.as_millis().to_string());
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        if schema == "public" {
            cmd.arg("--control-socket").arg(&self.control_socket);
        }
        for name in super::systemd::ENV {
            cmd.env_remove(name);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        // The URL holds the role's password: in the environment, never in argv (`ps`).
        cmd.env("DATABASE_URL", db_url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0);
        // SAFETY: runs in the child between fork and exec, where only async-signal-safe calls
        // are allowed; fcntl is one, and nothing here allocates.
        unsafe {
            cmd.pre_exec(move || {
                let fd = BorrowedFd::borrow_raw(fd);
                fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        let pid = i32::try_from(child.id()).map_err(std::io::Error::other)?;
        // Reaped by pid (see `reap`), not through this handle, which never waits on drop.
        drop(child);
        ours.set_nonblocking(true)?;
        Ok(Spawned {
            pid,
            channel: tokio::net::UnixStream::from_std(ours)?,
        })
    }
}

/// If worker `pid` has exited, reaps it and says how it ended. Only our own workers' pids are
/// waited for, never "any child": other code in this process (tokio's process driver, for
/// `pg_ctl`) waits for its own children.
pub fn reap(pid: i32) -> Option<String> {
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(format!("exited with status {code}")),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(format!("killed by {}", signal.as_str())),
        Ok(_) => None,
        // Not our child (any more): nothing will ever be reaped for it.
        Err(Errno::ECHILD) => Some("vanished (already reaped)".into()),
        Err(_) => None,
    }
}

/// SIGKILL to the worker's process group (its pid: each worker leads its own group), so
/// nothing it started outlives it. Only for workers not reaped yet, whose pid (and so group
/// id) cannot have been reused.
pub fn kill_group(pid: i32) {
    match killpg(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pid, error = %e, "could not kill a worker's process group"),
    }
}

/// Removes a socket file a worker left behind (a killed worker cannot remove its own);
/// anything that is not a socket is left alone.
pub fn remove_socket(path: &Path) {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
            let _ = std::fs::remove_file(path);
        }
    }
}
