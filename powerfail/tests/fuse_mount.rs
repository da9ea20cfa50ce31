//! The real file system through the kernel: mount `sluice-powerfail`, work on the mount with
//! ordinary system calls, power it off, unmount it, and check what the backing directory holds.
//!
//! Method: each test mounts its own temporary backing directory with the binary Cargo built,
//! waits (bounded) for its control socket, and always leaves the mount detached and the process
//! gone (a guard does it on failure). Where FUSE cannot be mounted (no /dev/fuse, not root, no
//! permission to mount) each test prints why and passes without checking anything: the model
//! tests (tests/model.rs, tests/volume.rs) still run.

// Test code: clippy.toml allows unwrap in tests, but not in the helpers of an integration test.
#![allow(clippy::unwrap_used)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_powerfail::control;

const BINARY: &str = env!("CARGO_BIN_EXE_sluice-powerfail");
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// A mounted instance; unmounts and reaps it on drop.
struct Mounted {
    root: PathBuf,
    child: Option<Child>,
}

impl Mounted {
    fn backing(&self) -> PathBuf {
        self.root.join("backing")
    }

    fn mnt(&self) -> PathBuf {
        self.root.join("mnt")
    }

    fn socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    fn command(&self, command: &str) -> String {
        control::send(&self.socket(), command, CONTROL_TIMEOUT).expect("the control socket answers")
    }

    /// Unmounts through the control socket and waits for the process to exit successfully.
    fn unmount(mut self) {
        assert_eq!(self.command("unmount"), "ok");
        let mut child = self.child.take().expect("mounted");
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "sluice-powerfail exited with {status}: {}", stderr_of(&mut child));
                return;
            }
            assert!(Instant::now() < deadline, "sluice-powerfail did not exit after the unmount");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Failure path: detach lazily, then make sure the process is gone.
            let _best_effort = Command::new("umount").arg("-l").arg(self.mnt()).status();
            let _best_effort = child.kill();
            let _best_effort = child.wait();
        }
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _best_effort = stderr.read_to_string(&mut text);
    }
    text
}

/// Why FUSE cannot be used here, if it cannot.
fn fuse_unusable() -> Option<String> {
    if let Err(error) = OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        return Some(format!("/dev/fuse cannot be opened: {error}"));
    }
    None
}

/// Mounts `root`/backing (made empty) at `root`/mnt; `Err(reason)` when the system refuses.
fn mount(root: &Path, seed: u64) -> Result<Mounted, String> {
    if let Some(reason) = fuse_unusable() {
        return Err(reason);
    }
    fs::create_dir(root.join("backing")).unwrap();
    fs::create_dir(root.join("mnt")).unwrap();
    let mut mounted = Mounted { root: root.to_path_buf(), child: None };
    let child = Command::new(BINARY)
        .arg("mount")
        .arg(mounted.backing())
        .arg(mounted.mnt())
        .arg("--control")
        .arg(mounted.socket())
        .arg("--seed")
        .arg(seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    mounted.child = Some(child);
    let deadline = Instant::now() + MOUNT_TIMEOUT;
    while !mounted.socket().exists() {
        let child = mounted.child.as_mut().expect("just spawned");
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = stderr_of(child);
            mounted.child = None;
            if stderr.contains("cannot mount at") {
                let reason = stderr.lines().take(4).collect::<Vec<_>>().join(" ");
                return Err(format!("the system refused the mount: {reason}"));
            }
            panic!("sluice-powerfail exited with {status} before it mounted: {stderr}");
        }
        assert!(Instant::now() < deadline, "sluice-powerfail did not mount within {MOUNT_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(mounted)
}

macro_rules! mount_or_skip {
    ($root:expr, $seed:expr) => {
        match mount($root, $seed) {
            Ok(mounted) => mounted,
            Err(reason) => {
                eprintln!("skipped: {reason}");
                return;
            }
        }
    };
}

fn write_file(path: &Path, bytes: &[u8], fsync: bool) {
    let mut file = File::create(path).unwrap();
    file.write_all(bytes).unwrap();
    if fsync {
        file.sync_all().unwrap();
    }
}

fn fsync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

#[test]
fn a_power_off_keeps_exactly_what_was_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = mount_or_skip!(dir.path(), 1);
    let mnt = mounted.mnt();
    write_file(&mnt.join("durable"), b"fsynced, name too", true);
    write_file(&mnt.join("meta"), b"old", true);
    fs::create_dir(mnt.join("dir")).unwrap();
    fsync_dir(&mnt);
    // Each of these is lost in its own way.
    write_file(&mnt.join("no-fsync"), b"never synced", false);
    write_file(&mnt.join("no-dir-fsync"), b"synced, name not", true);
    write_file(&mnt.join("meta.tmp"), b"new", true);
    fs::rename(mnt.join("meta.tmp"), mnt.join("meta")).unwrap();
    write_file(&mnt.join("dir/inner"), b"synced with its directory", true);
    fsync_dir(&mnt.join("dir"));
    fs::create_dir(mnt.join("dir/sub")).unwrap();
    write_file(&mnt.join("dir/sub/deep"), b"synced, its directory's entry not", true);
    fsync_dir(&mnt.join("dir/sub"));
    let mut appended = OpenOptions::new().append(true).open(mnt.join("durable")).unwrap();
    appended.write_all(b" + unsynced tail").unwrap();
    drop(appended);
    assert_eq!(fs::read(mnt.join("durable")).unwrap(), b"fsynced, name too + unsynced tail", "reads see writes");
    assert_eq!(fs::read(mnt.join("meta")).unwrap(), b"new");

    let answer = mounted.command("power-off");
    assert!(answer.starts_with("ok "), "{answer}");
    let error = fs::read(mnt.join("durable")).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EIO), "after the power-off every access fails: {error}");
    let backing = mounted.backing();
    mounted.unmount();

    let mut names: Vec<String> =
        fs::read_dir(&backing).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["dir", "durable", "meta"]);
    assert_eq!(fs::read(backing.join("durable")).unwrap(), b"fsynced, name too");
    assert_eq!(fs::read(backing.join("meta")).unwrap(), b"old");
    let inner: Vec<_> = fs::read_dir(backing.join("dir")).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert_eq!(inner, ["inner"], "dir/sub was created after dir's last fsync");
    assert_eq!(fs::read(backing.join("dir/inner")).unwrap(), b"synced with its directory");
}

#[test]
fn a_torn_power_off_keeps_a_prefix_of_the_last_write() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = mount_or_skip!(dir.path(), 7);
    let mnt = mounted.mnt();
    write_file(&mnt.join("log"), b"header|", true);
    fsync_dir(&mnt);
    let tail: Vec<u8> = (0..60_000u32).map(|index| (index % 251) as u8).collect();
    let file = OpenOptions::new().write(true).open(mnt.join("log")).unwrap();
    file.write_all_at(&tail, 7).unwrap();
    drop(file);
    let answer = mounted.command("power-off --torn");
    let kept: usize = answer
        .split_whitespace()
        .find_map(|word| word.strip_prefix("torn_bytes_kept="))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no torn_bytes_kept in {answer:?}"));
    let backing = mounted.backing();
    mounted.unmount();
    // The kernel sent the write as two requests (the first partial page alone); they are
    // contiguous, so they tear as one write.
    let mut expected = b"header|".to_vec();
    expected.extend_from_slice(&tail[..kept]);
    let found = fs::read(backing.join("log")).unwrap();
    assert!(found == expected, "{} bytes on disk, expected the header and {kept} bytes of the write", found.len());
}

#[test]
fn a_clean_unmount_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = mount_or_skip!(dir.path(), 3);
    let mnt = mounted.mnt();
    fs::create_dir_all(mnt.join("a/b")).unwrap();
    write_file(&mnt.join("a/b/f"), b"never fsynced", false);
    write_file(&mnt.join("g"), b"neither", false);
    fs::rename(mnt.join("g"), mnt.join("a/g")).unwrap();
    let backing = mounted.backing();
    mounted.unmount();
    assert_eq!(fs::read(backing.join("a/b/f")).unwrap(), b"never fsynced");
    assert_eq!(fs::read(backing.join("a/g")).unwrap(), b"neither");
    assert!(!backing.join(".sluice-powerfail-staging").exists());
}

#[test]
fn status_and_sync_answer_over_the_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = mount_or_skip!(dir.path(), 5);
    let mnt = mounted.mnt();
    write_file(&mnt.join("f"), &[7u8; 1000], false);
    let status = mounted.command("status");
    assert!(status.contains("unsynced_bytes=1000"), "{status}");
    assert_eq!(mounted.command("sync"), "ok");
    assert!(mounted.command("status").contains("unsynced_bytes=0"));
    assert!(mounted.command("reboot").starts_with("error unknown command"));
    let backing = mounted.backing();
    assert_eq!(
        mounted.command("power-off"),
        "ok torn_files=0 torn_bytes_kept=0 unsynced_bytes_dropped=0 armed_timed_out=0"
    );
    mounted.unmount();
    assert_eq!(fs::read(backing.join("f")).unwrap(), vec![7u8; 1000], "sync made it durable");
}

#[test]
fn an_armed_power_off_strikes_right_after_the_nth_write() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = mount_or_skip!(dir.path(), 11);
    let mnt = mounted.mnt();
    write_file(&mnt.join("f"), b"first|", true);
    fsync_dir(&mnt);
    let socket = mounted.socket();
    let armed = std::thread::spawn(move || control::send(&socket, "power-off --after-writes 2", CONTROL_TIMEOUT));
    let deadline = Instant::now() + MOUNT_TIMEOUT;
    while !mounted.command("status").contains("armed=true") {
        assert!(Instant::now() < deadline, "the power-off was not armed in time");
        std::thread::sleep(Duration::from_millis(5));
    }
    let file = OpenOptions::new().write(true).open(mnt.join("f")).unwrap();
    file.write_all_at(b"second|", 6).unwrap();
    file.write_all_at(b"third|", 13).unwrap(); // the power fails right after this one ...
    let error = file.write_all_at(b"fourth|", 19).unwrap_err(); // ... so this one fails
    assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}");
    drop(file);
    let answer = armed.join().unwrap().unwrap();
    assert!(answer.starts_with("ok ") && answer.contains("unsynced_bytes_dropped=13"), "{answer}");
    let backing = mounted.backing();
    mounted.unmount();
    assert_eq!(fs::read(backing.join("f")).unwrap(), b"first|", "the unsynced writes died with the power");
}
