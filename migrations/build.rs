//! Embeds every `shared/*.sql` and `tenant/*.sql` into the crate as `(file name, contents)`
//! pairs; the library parses and checks them, so a badly named file fails the tests, not the build.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // Read when it runs, not when it was compiled: one build of this script may serve another
    // checkout sharing the target folder.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest);
    let mut out = String::new();
    for kind in ["shared", "tenant"] {
        let dir = root.join(kind);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        writeln!(
            out,
            "pub static {}: &[(&str, &str)] = &[",
            kind.to_uppercase()
        )
        .unwrap();
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy();
            writeln!(
                out,
                "    ({name:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
    }
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    std::fs::write(dest, out).unwrap();
}
