//! The private cluster's file-system side: finding the server programs, checking that
//! PostgreSQL's OS user can reach a folder, writing private files safely when run as root, and
//! the launcher's lock file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::{io, DevDbError, RunAs, DEBIAN_PG_ROOT};

/// Opens `path` for writing, created mode 0600 if missing, never through a symbolic link.
fn open_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Takes the exclusive launcher lock at `path`, creating the file if needed.
pub(super) fn lock(path: &Path) -> Result<Flock<File>, DevDbError> {
    let file = open_private(path).map_err(io(format!("opening {}", path.display())))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| io(format!("locking {}", path.display()))(e.into()))
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has the server programs.
pub(super) fn find_bin_dir(configured: Option<&Path>) -> Result<PathBuf, DevDbError> {
    let has_tools = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|t| dir.join(t).is_file())
    };
    if let Some(dir) = configured {
        return if has_tools(dir) {
            Ok(dir.to_path_buf())
        } else {
            Err(DevDbError::BinariesMissing(format!(
                " nor in {}",
                dir.display()
            )))
        };
    }
    let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir(DEBIAN_PG_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates
        .pop()
        .map(|(_, dir)| dir)
        .ok_or_else(|| DevDbError::BinariesMissing(String::new()))
}

/// Every folder above `path` must be searchable by the cluster's OS user.
pub(super) fn check_reachable(path: &Path, run_as: &RunAs) -> Result<(), DevDbError> {
    for dir in path.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(dir) else {
            continue;
        };
        let mode = meta.mode();
        let searchable = mode & 0o001 != 0
            || (meta.uid() == run_as.uid.as_raw() && mode & 0o100 != 0)
            || (meta.gid() == run_as.gid.as_raw() && mode & 0o010 != 0);
        if !searchable {
            return Err(DevDbError::NotReachable {
                user: run_as.name.clone(),
                path: path.display().to_string(),
                dir: dir.display().to_string(),
            });
        }
    }
    Ok(())
}

/// Writes a private (0600) file. When we are root, the folders it goes into belong to
/// PostgreSQL's user, who could have planted a link there: so links are refused (O_NOFOLLOW),
/// the file must be a plain file with one name, it is emptied only after those checks, and it
/// is handed over through the open descriptor, never by path.
pub(super) fn write_private(
    path: &Path,
    content: &str,
    owner: Option<&RunAs>,
) -> Result<(), DevDbError> {
    let what = || format!("writing {}", path.display());
    let mut f = open_private(path).map_err(io(what()))?;
    let meta = f.metadata().map_err(io(what()))?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return Err(DevDbError::Io {
            what: what(),
            source: std::io::Error::other("not a plain file of its own; refusing to write it"),
        });
    }
    f.set_len(0).map_err(io(what()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io(what()))?;
    f.write_all(content.as_bytes()).map_err(io(what()))?;
    if let Some(run_as) = owner {
        std::os::unix::fs::fchown(&f, Some(run_as.uid.as_raw()), Some(run_as.gid.as_raw()))
            .map_err(io(format!("handing {} over", path.display())))?;
    }
    Ok(())
}
