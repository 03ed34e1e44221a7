//! The workspace's binaries, for tests that run them as processes. Cargo builds a crate's own
//! binaries for its tests, never another crate's: a test of control that runs the worker or
//! the proxy would otherwise run whatever build lay in `target/`, perhaps one from before the
//! last edit. [`binary`] refuses a binary that is missing or older than any file it was built
//! from (the list cargo itself keeps beside it, `target/<profile>/<name>.d`: every source,
//! template and migration that went into it), and says how to build it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The workspace's root (this crate's parent).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the test kit lies in the workspace")
        .to_path_buf()
}

/// The path of the binary `name` of this build (`target/<profile>/name`, beside the running
/// test's `deps/`), checked to exist and to be newer than every file it was built from.
/// Panics otherwise, naming the newer file and the command that builds it.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let path = dir.join(name);
    let build = "cargo build --workspace --bins (scripts/test.sh does)";
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{} is missing ({e}): {build}", path.display()));
    let deps = dir.join(format!("{name}.d"));
    let listed = std::fs::read_to_string(&deps)
        .unwrap_or_else(|e| panic!("{} is missing ({e}): {build}", deps.display()));
    if let Some(newer) = newer_than(&inputs(&listed), built) {
        panic!(
            "{} is older than {}, which it is built from: {build}",
            path.display(),
            newer.display()
        );
    }
    path
}

/// The files a dep-info file (`target: input input ...`, spaces in names escaped) lists.
fn inputs(dep_info: &str) -> Vec<PathBuf> {
    let first = dep_info.lines().next().unwrap_or_default();
    let Some((_, list)) = first.split_once(": ") else {
        return Vec::new();
    };
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' => paths
                .extend((!current.is_empty()).then(|| PathBuf::from(std::mem::take(&mut current)))),
            c => current.push(c),
        }
    }
    paths.extend((!current.is_empty()).then(|| PathBuf::from(current)));
    paths
}

/// The first of `paths` modified after `built` (a path gone since counts: it changed).
fn newer_than(paths: &[PathBuf], built: SystemTime) -> Option<PathBuf> {
    paths
        .iter()
        .find(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .map_or(true, |modified| modified > built)
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inputs_cargo_lists_are_read_and_compared() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a b.rs");
        std::fs::write(&a, "").unwrap();
        let listed = format!(
            "{}/bin: {} {}/c.sql\n",
            dir.path().display(),
            a.display().to_string().replace(' ', "\\ "),
            dir.path().display()
        );
        let found = inputs(&listed);
        assert_eq!(found, [a.clone(), dir.path().join("c.sql")]);
        let later = SystemTime::now() + std::time::Duration::from_secs(3600);
        // c.sql does not exist: gone since the build, so the build is stale.
        assert_eq!(newer_than(&found, later), Some(dir.path().join("c.sql")));
        assert_eq!(newer_than(&found[..1], later), None);
        let earlier = SystemTime::now() - std::time::Duration::from_secs(3600);
        assert_eq!(newer_than(&found[..1], earlier), Some(a));
    }
}
