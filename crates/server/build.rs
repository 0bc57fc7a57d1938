//! Build script of the `sqlite-rest` binary: the git commit it is built from, for
//! `sqlite-rest --version`, as `SQLITE_REST_COMMIT` (a short hash, `-dirty` when tracked files
//! differ from it, or `unknown` outside a git checkout — a source package, a copy without
//! `.git` — or without a `git` program). `SQLITEREST_BUILD_COMMIT`, when set, is taken as is
//! (for builds from an exported tree that know their commit).
//!
//! The script reruns when HEAD moves (a checkout, a commit: HEAD and the branch it points to),
//! not at every edit, so `-dirty` is exact for a build from a fresh target directory (a
//! release, `cargo install`, an image) and may lag behind uncommitted edits in a
//! developer's incremental builds.

use std::path::{Path, PathBuf};
use std::process::Command;

const OVERRIDE: &str = "SQLITEREST_BUILD_COMMIT";

fn main() {
    println!("cargo::rerun-if-env-changed={OVERRIDE}");
    let commit = match std::env::var(OVERRIDE) {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => {
            let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
            git_commit(&dir).unwrap_or_else(|| "unknown".to_string())
        }
    };
    println!("cargo::rustc-env=SQLITE_REST_COMMIT={commit}");
}

/// The short hash of HEAD with `-dirty` if tracked files changed, when `dir` is in a git
/// checkout that tracks this crate (not some enclosing repository a source package was
/// unpacked into); registers HEAD and its branch for reruns.
fn git_commit(dir: &Path) -> Option<String> {
    // Is this crate's manifest tracked by the repository `dir` is in?
    git(dir, &["ls-files", "--error-unmatch", "Cargo.toml"])?;
    // HEAD's reflog grows at every commit and checkout, even when the branch's own ref is
    // packed; the files are registered only if they exist (a missing one reruns every build).
    for path in ["HEAD", "logs/HEAD"] {
        rerun_if_changed(dir, path);
    }
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        rerun_if_changed(dir, &branch);
    }
    let hash = git(dir, &["rev-parse", "--short", "HEAD"])?;
    let status = git(dir, &["status", "--porcelain", "--untracked-files=no"])?;
    Some(if status.is_empty() {
        hash
    } else {
        format!("{hash}-dirty")
    })
}

/// Reruns the script when the git file `name` (`HEAD`, `refs/heads/…`) changes, wherever the
/// checkout keeps it (a worktree keeps HEAD apart from the shared refs).
fn rerun_if_changed(dir: &Path, name: &str) {
    if let Some(path) = git(
        dir,
        &["rev-parse", "--path-format=absolute", "--git-path", name],
    ) && Path::new(&path).exists()
    {
        println!("cargo::rerun-if-changed={path}");
    }
}

/// `git args` run in `dir`: its trimmed standard output if it succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        // `git status` must not take the index's lock to refresh it: a git command the
        // developer runs meanwhile would fail on the lock.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}
