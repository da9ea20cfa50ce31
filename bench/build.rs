//! Records the commit the binary was built from, so every report names it.
//!
//! `SLUICE_COMMIT` overrides (for builds outside a git checkout); otherwise `git rev-parse` and
//! `git status` give the short hash plus `-dirty` when tracked files differ. Reruns when HEAD or
//! the index moves.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=SLUICE_COMMIT");
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/index");
    }
    let commit = std::env::var("SLUICE_COMMIT").ok().or_else(|| {
        let hash = git(&["rev-parse", "--short=12", "HEAD"])?;
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|status| !status.is_empty());
        Some(if dirty { format!("{hash}-dirty") } else { hash })
    });
    println!("cargo:rustc-env=SLUICE_BENCH_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}
