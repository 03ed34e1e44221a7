//! `deploy/nginx-free/apotheca.toml`, the production settings: all three binaries accept it
//! (`--validate-config`, the proxy also as `--daemon`, which wants absolute paths), the
//! binary that reads a section refuses it with an unknown key added there, and it names every key `apotheca.example.toml` does
//! (set, or commented out where unset is the right value), in the same sections.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    apotheca_testkit::workspace_root()
}

fn production() -> PathBuf {
    root().join("deploy/nginx-free/apotheca.toml")
}

fn bin(name: &str) -> PathBuf {
    apotheca_testkit::binary(name)
}

/// Runs `binary --config file args…` with a clean environment; (exit code, stdout + stderr).
fn validate(binary: &str, file: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin(binary))
        .arg("--config")
        .arg(file)
        .args(args)
        .arg("--validate-config")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

const BINARIES: [&str; 3] = ["apotheca", "apotheca-worker", "apotheca-proxy"];

#[test]
fn every_binary_accepts_the_production_settings() {
    for binary in BINARIES {
        let (code, text) = validate(binary, &production(), &[]);
        assert_eq!(code, 0, "{binary}: {text}");
        assert!(text.contains("settings OK"), "{binary}: {text}");
    }
    let (code, text) = validate("apotheca-proxy", &production(), &["--daemon"]);
    assert_eq!(code, 0, "as the unit runs it: {text}");
}

#[test]
fn an_unknown_key_is_refused_by_the_binary_that_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(production()).unwrap();
    // Each section is checked by the binary that reads it (the others pass it over whole).
    for (section, key, owner) in [
        ("[proxy]", "http_listn", "apotheca-proxy"),
        ("[worker]", "pool_sise", "apotheca-worker"),
        ("[control.serve]", "sockett", "apotheca"),
        ("[database]", "uri", "apotheca"),
    ] {
        let broken = text.replacen(section, &format!("{section}\n{key} = 1"), 1);
        let file = dir.path().join("broken.toml");
        std::fs::write(&file, broken).unwrap();
        let (code, out) = validate(owner, &file, &[]);
        assert_eq!(code, 2, "{owner} accepted {key} in {section}: {out}");
        assert!(out.contains(key), "{owner}: {out}");
    }
    let relative = text.replace("/run/apotheca-proxy/upgrade.sock", "run/upgrade.sock");
    let file = dir.path().join("relative.toml");
    std::fs::write(&file, relative).unwrap();
    let (code, out) = validate("apotheca-proxy", &file, &["--daemon"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("upgrade_sock must be an absolute path"),
        "{out}"
    );
}

#[test]
fn a_thread_count_beyond_the_bound_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(production()).unwrap();
    assert!(
        text.contains("\nthreads = 1\n"),
        "the [worker] threads line moved"
    );
    let file = dir.path().join("threads.toml");
    std::fs::write(
        &file,
        text.replacen("\nthreads = 1\n", "\nthreads = 100000\n", 1),
    )
    .unwrap();
    let (code, out) = validate("apotheca-worker", &file, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("[worker] threads = 100000: at most 256"),
        "{out}"
    );
}

/// `section.key` for every key set or commented out as `# key = value` in a settings file.
fn keys(text: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let body = line.strip_prefix("# ").unwrap_or(line);
        if let Some((key, _)) = body.split_once(" = ") {
            if !section.is_empty()
                && key.starts_with(|c: char| c.is_ascii_lowercase())
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                out.insert(format!("{section}.{key}"));
            }
        }
    }
    out
}

#[test]
fn the_production_settings_name_every_key() {
    let example = keys(&std::fs::read_to_string(root().join("apotheca.example.toml")).unwrap());
    let production = keys(&std::fs::read_to_string(production()).unwrap());
    assert!(example.len() > 60, "{example:?}");
    let missing: Vec<_> = example.difference(&production).collect();
    let extra: Vec<_> = production.difference(&example).collect();
    assert!(
        missing.is_empty(),
        "not in deploy/nginx-free/apotheca.toml: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "not in apotheca.example.toml (a typo?): {extra:?}"
    );
}
