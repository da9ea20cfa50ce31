//! Helpers shared by the model tests: path resolution through the volume's API and snapshots of
//! a directory tree.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use sluice_powerfail::volume::{Ino, Kind, ROOT, STAGING_NAME, Volume};

/// A tree as a map: relative path -> `None` for a directory, `Some(bytes)` for a file.
pub type Tree = BTreeMap<PathBuf, Option<Vec<u8>>>;

/// The tree under `root` on disk, without the staging directory.
pub fn snapshot(root: &Path) -> Tree {
    let mut tree = Tree::new();
    walk(root, Path::new(""), &mut tree);
    tree
}

fn walk(root: &Path, relative: &Path, tree: &mut Tree) {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(relative)).unwrap().map(|entry| entry.unwrap()).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        if relative.as_os_str().is_empty() && entry.file_name() == STAGING_NAME {
            continue;
        }
        let path = relative.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            tree.insert(path.clone(), None);
            walk(root, &path, tree);
        } else {
            tree.insert(path, Some(std::fs::read(entry.path()).unwrap()));
        }
    }
}

/// The tree the volume currently shows, read through its API.
pub fn current_view(volume: &mut Volume) -> Tree {
    let mut tree = Tree::new();
    view(volume, ROOT, Path::new(""), &mut tree);
    tree
}

fn view(volume: &mut Volume, dir: Ino, relative: &Path, tree: &mut Tree) {
    let (_, entries) = volume.list(dir).unwrap();
    for entry in entries {
        let path = relative.join(&entry.name);
        match entry.kind {
            Kind::Dir => {
                tree.insert(path.clone(), None);
                view(volume, entry.ino, &path, tree);
            }
            Kind::File => {
                let bytes = volume.read(entry.ino, 0, u64::MAX).unwrap();
                tree.insert(path, Some(bytes));
            }
        }
    }
}

/// Resolves a relative path ("a/f") to an inode through lookups.
pub fn resolve(volume: &mut Volume, path: &str) -> std::io::Result<Ino> {
    let mut at = ROOT;
    for part in path.split('/').filter(|part| !part.is_empty()) {
        at = volume.lookup(at, OsStr::new(part))?.ino;
    }
    Ok(at)
}

/// The parent inode and last name of a relative path.
pub fn parent_of<'a>(volume: &mut Volume, path: &'a str) -> std::io::Result<(Ino, &'a OsStr)> {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    Ok((resolve(volume, parent)?, OsStr::new(name)))
}
