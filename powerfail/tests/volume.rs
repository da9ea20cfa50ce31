//! Scenarios of the durability model, without FUSE: each test runs a sequence of file-system
//! calls on a volume over a temporary backing directory, powers it off, and checks what the
//! backing directory holds: exactly what the strict ext4 rules make durable.

// Test code: clippy.toml allows unwrap in tests, but not in the helpers of an integration test.
#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::{Tree, current_view, parent_of, resolve, snapshot};
use sluice_powerfail::volume::{Ino, ROOT, STAGING_NAME, Volume};

fn volume() -> (tempfile::TempDir, Volume) {
    let backing = tempfile::tempdir().unwrap();
    let volume = Volume::open(backing.path(), 42).unwrap();
    (backing, volume)
}

fn create(volume: &mut Volume, path: &str) -> Ino {
    let (parent, name) = parent_of(volume, path).unwrap();
    volume.create_file(parent, name, 0o644, (0, 0)).unwrap().ino
}

fn mkdir(volume: &mut Volume, path: &str) -> Ino {
    let (parent, name) = parent_of(volume, path).unwrap();
    volume.mkdir(parent, name, 0o755, (0, 0)).unwrap().ino
}

fn write(volume: &mut Volume, path: &str, position: u64, bytes: &[u8]) {
    let ino = resolve(volume, path).unwrap();
    volume.write(ino, position, bytes).unwrap();
}

fn fsync(volume: &mut Volume, path: &str) {
    let ino = resolve(volume, path).unwrap();
    volume.fsync(ino).unwrap();
}

fn rename(volume: &mut Volume, source: &str, target: &str) {
    let (source_parent, source_name) = parent_of(volume, source).unwrap();
    let (target_parent, target_name) = parent_of(volume, target).unwrap();
    volume.rename((source_parent, source_name), (target_parent, target_name), false).unwrap();
}

fn unlink(volume: &mut Volume, path: &str) {
    let (parent, name) = parent_of(volume, path).unwrap();
    volume.unlink(parent, name).unwrap();
}

fn tree(entries: &[(&str, Option<&[u8]>)]) -> Tree {
    entries.iter().map(|(path, bytes)| (Path::new(path).to_path_buf(), bytes.map(<[u8]>::to_vec))).collect()
}

fn power_off(backing: &tempfile::TempDir, volume: &mut Volume) -> Tree {
    volume.power_off(false).unwrap();
    assert!(!backing.path().join(STAGING_NAME).exists(), "the staging directory outlived the power-off");
    snapshot(backing.path())
}

#[test]
fn a_file_and_its_name_fsynced_survive() {
    let (backing, mut volume) = volume();
    create(&mut volume, "f");
    write(&mut volume, "f", 0, b"durable");
    fsync(&mut volume, "f");
    fsync(&mut volume, "");
    assert_eq!(power_off(&backing, &mut volume), tree(&[("f", Some(b"durable"))]));
}

#[test]
fn writes_after_the_last_fsync_are_lost() {
    let (backing, mut volume) = volume();
    create(&mut volume, "f");
    write(&mut volume, "f", 0, b"durable");
    fsync(&mut volume, "f");
    fsync(&mut volume, "");
    write(&mut volume, "f", 7, b" and more");
    write(&mut volume, "f", 0, b"D");
    assert_eq!(power_off(&backing, &mut volume), tree(&[("f", Some(b"durable"))]));
}

#[test]
fn a_fsynced_file_whose_directory_was_not_fsynced_is_lost() {
    let (backing, mut volume) = volume();
    create(&mut volume, "f");
    write(&mut volume, "f", 0, b"data");
    fsync(&mut volume, "f");
    assert!(backing.path().join(STAGING_NAME).read_dir().unwrap().next().is_some(), "its data waits in staging");
    assert_eq!(power_off(&backing, &mut volume), tree(&[]));
}

#[test]
fn a_name_fsynced_before_its_data_leaves_an_empty_file() {
    let (backing, mut volume) = volume();
    create(&mut volume, "f");
    write(&mut volume, "f", 0, b"data");
    fsync(&mut volume, "");
    assert_eq!(power_off(&backing, &mut volume), tree(&[("f", Some(b""))]));
}

#[test]
fn rename_over_a_file_without_a_directory_fsync_keeps_the_old_file() {
    // The write-temp-then-rename pattern, minus the directory fsync: ext4's auto_da_alloc would
    // often save the new content; the strict model does not.
    let (backing, mut volume) = volume();
    create(&mut volume, "meta");
    write(&mut volume, "meta", 0, b"old");
    fsync(&mut volume, "meta");
    fsync(&mut volume, "");
    create(&mut volume, "meta.tmp");
    write(&mut volume, "meta.tmp", 0, b"new!");
    fsync(&mut volume, "meta.tmp");
    rename(&mut volume, "meta.tmp", "meta");
    let meta = resolve(&mut volume, "meta").unwrap();
    assert_eq!(volume.read(meta, 0, 100).unwrap(), b"new!", "reads see the rename at once");
    assert_eq!(power_off(&backing, &mut volume), tree(&[("meta", Some(b"old"))]));
}

#[test]
fn rename_over_a_file_with_a_directory_fsync_has_the_new_file() {
    let (backing, mut volume) = volume();
    create(&mut volume, "meta");
    write(&mut volume, "meta", 0, b"old");
    fsync(&mut volume, "meta");
    fsync(&mut volume, "");
    create(&mut volume, "meta.tmp");
    write(&mut volume, "meta.tmp", 0, b"new!");
    fsync(&mut volume, "meta.tmp");
    rename(&mut volume, "meta.tmp", "meta");
    fsync(&mut volume, "");
    assert_eq!(power_off(&backing, &mut volume), tree(&[("meta", Some(b"new!"))]));
}

#[test]
fn an_unlink_without_a_directory_fsync_is_undone() {
    let (backing, mut volume) = volume();
    create(&mut volume, "f");
    write(&mut volume, "f", 0, b"kept");
    fsync(&mut volume, "f");
    fsync(&mut volume, "");
    unlink(&mut volume, "f");
    assert_eq!(power_off(&backing, &mut volume), tree(&[("f", Some(b"kept"))]));
}

#[test]
fn an_unlink_with_a_directory_fsync_is_durable() {
    let (backing, mut volume) = volume();
    create(&mut volume, "f");
    fsync(&mut volume, "");
    unlink(&mut volume, "f");
    fsync(&mut volume, "");
    assert_eq!(power_off(&backing, &mut volume), tree(&[]));
}

#[test]
fn a_directory_whose_parent_was_not_fsynced_is_lost_with_everything_in_it() {
    let (backing, mut volume) = volume();
    mkdir(&mut volume, "d");
    create(&mut volume, "d/f");
    write(&mut volume, "d/f", 0, b"x");
    fsync(&mut volume, "d/f");
    fsync(&mut volume, "d");
    assert_eq!(power_off(&backing, &mut volume), tree(&[]));
}

#[test]
fn a_directory_synced_bottom_up_survives_whole() {
    let (backing, mut volume) = volume();
    mkdir(&mut volume, "d");
    create(&mut volume, "d/f");
    write(&mut volume, "d/f", 0, b"x");
    fsync(&mut volume, "d/f");
    fsync(&mut volume, "d");
    fsync(&mut volume, "");
    assert_eq!(power_off(&backing, &mut volume), tree(&[("d", None), ("d/f", Some(b"x"))]));
}

#[test]
fn rmdir_is_durable_only_with_a_parent_fsync() {
    let (backing, mut volume) = volume();
    mkdir(&mut volume, "d");
    mkdir(&mut volume, "e");
    fsync(&mut volume, "");
    volume.rmdir(ROOT, OsStr::new("d")).unwrap();
    volume.rmdir(ROOT, OsStr::new("e")).unwrap();
    mkdir(&mut volume, "e"); // a new directory under the old name
    fsync(&mut volume, "");
    volume.rmdir(ROOT, OsStr::new("e")).unwrap();
    assert_eq!(power_off(&backing, &mut volume), tree(&[("e", None)]));
}

#[test]
fn a_truncation_then_growth_reads_zeros_and_fsyncs_them() {
    let (backing, mut volume) = volume();
    create(&mut volume, "f");
    write(&mut volume, "f", 0, b"abcdef");
    fsync(&mut volume, "f");
    fsync(&mut volume, "");
    let ino = resolve(&mut volume, "f").unwrap();
    volume.set_len(ino, 2).unwrap();
    write(&mut volume, "f", 4, b"Z");
    assert_eq!(volume.read(ino, 0, 100).unwrap(), b"ab\0\0Z");
    fsync(&mut volume, "f");
    assert_eq!(power_off(&backing, &mut volume), tree(&[("f", Some(b"ab\0\0Z"))]));
}

#[test]
fn a_torn_power_off_keeps_a_prefix_of_the_last_unsynced_write_only() {
    let mut kept_sizes = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let backing = tempfile::tempdir().unwrap();
        let mut volume = Volume::open(backing.path(), seed).unwrap();
        create(&mut volume, "f");
        write(&mut volume, "f", 0, b"synced|");
        fsync(&mut volume, "f");
        fsync(&mut volume, "");
        write(&mut volume, "f", 7, b"dropped|");
        write(&mut volume, "f", 20, b"0123456789");
        let report = volume.power_off(true).unwrap();
        assert_eq!(report.torn_files, 1);
        let bytes = std::fs::read(backing.path().join("f")).unwrap();
        let kept = report.torn_bytes_kept as usize;
        let mut expected = b"synced|".to_vec();
        if kept > 0 {
            expected.resize(20, 0); // the earlier unsynced write is lost: a hole of zeros
            expected.extend_from_slice(&b"0123456789"[..kept]);
        }
        assert_eq!(bytes, expected, "seed {seed}");
        kept_sizes.insert(kept);
    }
    assert!(kept_sizes.len() > 5, "the torn length hardly varies over seeds: {kept_sizes:?}");
}

#[test]
fn a_torn_power_off_tears_a_run_of_appends_as_one_write() {
    let backing = tempfile::tempdir().unwrap();
    let mut volume = Volume::open(backing.path(), 9).unwrap();
    create(&mut volume, "log");
    write(&mut volume, "log", 0, b"acked|");
    fsync(&mut volume, "log");
    fsync(&mut volume, "");
    for (index, batch) in [&b"batch-1|"[..], b"batch-2|", b"batch-3|"].iter().enumerate() {
        write(&mut volume, "log", 6 + 8 * index as u64, batch);
    }
    let report = volume.power_off(true).unwrap();
    let bytes = std::fs::read(backing.path().join("log")).unwrap();
    let kept = report.torn_bytes_kept as usize;
    assert_eq!(bytes, b"acked|batch-1|batch-2|batch-3|"[..6 + kept]);
}

#[test]
fn every_call_fails_with_eio_after_a_power_off() {
    let (_backing, mut volume) = volume();
    let ino = create(&mut volume, "f");
    volume.power_off(false).unwrap();
    assert_eq!(volume.read(ino, 0, 1).unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(volume.lookup(ROOT, OsStr::new("f")).unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(volume.fsync(ROOT).unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(volume.power_off(true).unwrap_err().raw_os_error(), Some(libc::EIO));
}

#[test]
fn a_clean_close_makes_everything_durable_and_a_reopen_sees_it() {
    let (backing, mut volume) = volume();
    mkdir(&mut volume, "d");
    create(&mut volume, "d/f");
    write(&mut volume, "d/f", 0, b"abc");
    create(&mut volume, "g");
    write(&mut volume, "g", 3, b"x");
    let expected = current_view(&mut volume);
    volume.close().unwrap();
    assert_eq!(snapshot(backing.path()), expected);
    assert!(!backing.path().join(STAGING_NAME).exists());
    let mut reopened = Volume::open(backing.path(), 0).unwrap();
    assert_eq!(current_view(&mut reopened), expected);
}

#[test]
fn a_reopened_volume_keeps_the_durable_state_it_loads() {
    let (backing, mut volume) = volume();
    mkdir(&mut volume, "d");
    create(&mut volume, "d/f");
    write(&mut volume, "d/f", 0, b"abc");
    volume.close().unwrap();
    let mut volume = Volume::open(backing.path(), 0).unwrap();
    write(&mut volume, "d/f", 3, b"def");
    rename(&mut volume, "d/f", "d/g");
    create(&mut volume, "d/h");
    assert_eq!(power_off(&backing, &mut volume), tree(&[("d", None), ("d/f", Some(b"abc"))]));
}

#[test]
fn a_file_renamed_across_directories_with_only_the_target_fsynced_has_both_names() {
    // Strict per-directory durability: the removal from `a` was never made durable.
    let (backing, mut volume) = volume();
    mkdir(&mut volume, "a");
    mkdir(&mut volume, "b");
    create(&mut volume, "a/f");
    write(&mut volume, "a/f", 0, b"x");
    fsync(&mut volume, "a/f");
    fsync(&mut volume, "a");
    fsync(&mut volume, "b");
    fsync(&mut volume, "");
    rename(&mut volume, "a/f", "b/f");
    fsync(&mut volume, "b");
    let expected = tree(&[("a", None), ("a/f", Some(b"x")), ("b", None), ("b/f", Some(b"x"))]);
    assert_eq!(power_off(&backing, &mut volume), expected);
}

#[test]
fn an_open_unlinked_file_fsynced_after_its_directory_never_comes_back() {
    let (backing, mut volume) = volume();
    let ino = create(&mut volume, "f");
    volume.open_handle(ino).unwrap();
    write(&mut volume, "f", 0, b"v1");
    fsync(&mut volume, "f");
    fsync(&mut volume, "");
    unlink(&mut volume, "f");
    fsync(&mut volume, "");
    volume.write(ino, 0, b"v2").unwrap();
    volume.fsync(ino).unwrap();
    assert_eq!(volume.read(ino, 0, 10).unwrap(), b"v2");
    volume.release_handle(ino);
    assert_eq!(power_off(&backing, &mut volume), tree(&[]));
}

#[test]
fn a_directory_removed_while_a_file_moved_out_of_it_keeps_the_file_data() {
    let (backing, mut volume) = volume();
    mkdir(&mut volume, "d");
    create(&mut volume, "d/f");
    write(&mut volume, "d/f", 0, b"moved");
    fsync(&mut volume, "d/f");
    fsync(&mut volume, "d");
    fsync(&mut volume, "");
    rename(&mut volume, "d/f", "f");
    volume.rmdir(ROOT, OsStr::new("d")).unwrap();
    fsync(&mut volume, ""); // d goes, with f still durable inside it: f must move to staging
    assert_eq!(snapshot(backing.path()), tree(&[("f", Some(b"moved"))]));
    assert_eq!(power_off(&backing, &mut volume), tree(&[("f", Some(b"moved"))]));
}

#[test]
fn namespace_errors_match_posix() {
    let (_backing, mut volume) = volume();
    mkdir(&mut volume, "d");
    create(&mut volume, "d/f");
    create(&mut volume, "g");
    let code = |result: std::io::Result<()>| result.unwrap_err().raw_os_error();
    let d = resolve(&mut volume, "d").unwrap();
    assert_eq!(code(volume.rmdir(ROOT, OsStr::new("d"))), Some(libc::ENOTEMPTY));
    assert_eq!(code(volume.unlink(ROOT, OsStr::new("d"))), Some(libc::EISDIR));
    assert_eq!(code(volume.rename((ROOT, OsStr::new("d")), (d, OsStr::new("x")), false)), Some(libc::EINVAL));
    assert_eq!(code(volume.rename((ROOT, OsStr::new("g")), (ROOT, OsStr::new("d")), false)), Some(libc::EISDIR));
    assert_eq!(code(volume.rename((d, OsStr::new("f")), (ROOT, OsStr::new("g")), true)), Some(libc::EEXIST));
    assert_eq!(
        volume.create_file(ROOT, OsStr::new("g"), 0o644, (0, 0)).unwrap_err().raw_os_error(),
        Some(libc::EEXIST)
    );
    assert_eq!(
        volume.create_file(ROOT, OsStr::new(STAGING_NAME), 0o644, (0, 0)).unwrap_err().raw_os_error(),
        Some(libc::EACCES)
    );
}

#[test]
fn an_armed_power_off_happens_right_after_the_nth_write() {
    let (backing, mut volume) = volume();
    let ino = create(&mut volume, "f");
    fsync(&mut volume, "");
    volume.arm_power_off(false, 2).unwrap();
    volume.write(ino, 0, b"one").unwrap();
    volume.fsync(ino).unwrap();
    assert!(volume.take_armed_outcome().is_none());
    volume.write(ino, 3, b"two").unwrap();
    let report = volume.take_armed_outcome().expect("the second write powered it off").unwrap();
    assert_eq!(report.unsynced_bytes_dropped, 3);
    assert!(volume.is_powered_off());
    assert_eq!(volume.write(ino, 6, b"three").unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(snapshot(backing.path()), tree(&[("f", Some(b"one"))]));
}
