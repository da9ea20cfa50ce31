"""Mount, power off and unmount `sluice-powerfail` from Python (see powerfail/README.md).

Goal: let a black-box test run the real broker on a file system that forgets everything not
fsynced, then "lose power" and restart the broker on what a machine would find on its disk.

Method: `PowerfailMount` runs `target/release/sluice-powerfail mount BACKING MOUNTPOINT
--control SOCKET --seed N` in the foreground (built with `cargo build --release -p
sluice-powerfail` once per session), waits until the control socket answers, and speaks the control
protocol over that Unix socket: one command line, one answer line starting with `ok` or `error`.
Every wait is bounded; `close()` always leaves the mountpoint detached and the process gone.

Environment: SLUICE_POWERFAIL_BIN overrides the binary.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BINARY_GIVEN = "SLUICE_POWERFAIL_BIN" in os.environ
BINARY = Path(os.environ.get("SLUICE_POWERFAIL_BIN",
                             REPO_ROOT / "target" / "release" / "sluice-powerfail")).absolute()
BUILD_TIMEOUT_S = 900.0
MOUNT_TIMEOUT_S = 20.0
COMMAND_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 20.0


class PowerfailError(Exception):
    """The file system did not mount, answer or unmount as expected."""


_built = False


def ensure_binary() -> Path:
    """The sluice-powerfail binary: SLUICE_POWERFAIL_BIN as given, or built in release mode once
    per session (a second of cargo when it is up to date, so a stale binary is never used)."""
    global _built
    if BINARY_GIVEN or _built:
        if not BINARY.is_file():
            raise PowerfailError(f"{BINARY} does not exist")
        return BINARY
    try:
        proc = subprocess.run(["cargo", "build", "--release", "-p", "sluice-powerfail"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PowerfailError(f"building sluice-powerfail took over {BUILD_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0 or not BINARY.is_file():
        raise PowerfailError(f"cargo build --release -p sluice-powerfail failed:\n{proc.stderr[-3000:]}")
    _built = True
    return BINARY


_unusable: str | None | bool = False  # False: not checked yet


def fuse_unusable_reason() -> str | None:
    """Why FUSE cannot be mounted here (None when it can). Tries one real mount, once per session."""
    global _unusable
    if _unusable is not False:
        return _unusable
    _unusable = _check_fuse()
    return _unusable


def _check_fuse() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist (no FUSE in this kernel or container)"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as error:
        return f"/dev/fuse cannot be opened: {error}"
    if os.geteuid() != 0 and shutil.which("fusermount3") is None and shutil.which("fusermount") is None:
        return "not root and no fusermount3: an unprivileged FUSE mount needs the fuse3 package"
    try:
        ensure_binary()
    except PowerfailError as error:
        return str(error)
    with tempfile.TemporaryDirectory(prefix="powerfail-check-") as scratch:
        root = Path(scratch)
        (root / "backing").mkdir()
        (root / "mnt").mkdir()
        trial = PowerfailMount(root / "backing", root / "mnt", root / "control.sock", log_path=root / "log")
        try:
            trial.mount()
            trial.unmount()
        except PowerfailError as error:
            trial.close()
            return f"a trial mount failed: {trial.first_error() or error}"
    return None


def fsync_dir(path: Path) -> None:
    """fsync a directory, so that the entries created, renamed or removed in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_mkdir(path: Path) -> None:
    """mkdir, then fsync the parent: the new directory survives a power loss."""
    path.mkdir()
    fsync_dir(path.parent)


class PowerfailMount:
    """One `sluice-powerfail mount` process: BACKING mounted at MOUNTPOINT, driven by its socket."""

    def __init__(self, backing: Path, mountpoint: Path, control: Path, seed: int = 0,
                 log_path: Path | None = None):
        self.backing = Path(backing)
        self.mountpoint = Path(mountpoint)
        self.control = Path(control)
        self.seed = seed
        self.log_path = Path(log_path) if log_path else self.control.with_suffix(".log")
        self.proc: subprocess.Popen | None = None

    # ------------------------------------------------------------ lifecycle

    def mount(self) -> None:
        """Start the process and wait until its control socket answers."""
        binary = ensure_binary()
        if self.proc is not None and self.proc.poll() is None:
            raise PowerfailError(f"mount() while pid {self.proc.pid} is running")
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        command = [str(binary), "mount", str(self.backing), str(self.mountpoint),
                   "--control", str(self.control), "--seed", str(self.seed)]
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {' '.join(command)}\n".encode())
            log.flush()
            # No backtrace with an error message (anyhow's); a panic still prints one.
            env = dict(os.environ, RUST_LIB_BACKTRACE="0")
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise PowerfailError(f"sluice-powerfail exited with status {code} before it mounted:\n"
                                     f"{self.log_tail()}")
            if self.control.exists() and os.path.ismount(self.mountpoint):
                try:
                    self.command("status")
                    return
                except OSError:
                    pass
            time.sleep(0.02)
        raise PowerfailError(f"sluice-powerfail did not mount within {MOUNT_TIMEOUT_S} s:\n{self.log_tail()}")

    def unmount(self, timeout_s: float = EXIT_TIMEOUT_S) -> None:
        """Unmount (retrying while the mount is busy) and wait for the process to exit cleanly.

        Without a power-off before it, the process syncs everything first, as a clean shutdown."""
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self._send("unmount")
            if answer == "ok":
                break
            if time.monotonic() > deadline:
                raise PowerfailError(f"unmount kept failing: {answer}")
            time.sleep(0.1)
        try:
            code = self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.close()
            raise PowerfailError(f"sluice-powerfail did not exit after the unmount:\n{self.log_tail()}") from None
        if code != 0:
            raise PowerfailError(f"sluice-powerfail exited with status {code}:\n{self.log_tail()}")

    def close(self) -> None:
        """Best effort, for cleanup after a failure: detach the mount lazily and end the process."""
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, timeout=EXIT_TIMEOUT_S)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=EXIT_TIMEOUT_S)
        elif os.path.ismount(self.mountpoint):
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, timeout=EXIT_TIMEOUT_S)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------ commands

    def power_off(self, torn: bool = True, after_writes: int | None = None) -> dict[str, int]:
        """Drop every unsynced change (with `torn`, after writing a random prefix of each file's
        last unsynced write); every later access through the mount fails with EIO.

        With `after_writes` N, the power fails right after the N-th write from now, in the middle
        of whatever the application is doing (waiting up to 30 s for it, then at once). Returns
        the report: torn_files, torn_bytes_kept, unsynced_bytes_dropped, armed_timed_out."""
        command = "power-off" + (" --torn" if torn else "")
        if after_writes is not None:
            command += f" --after-writes {after_writes}"
        return _fields(self.command(command))

    def sync(self) -> None:
        """Make everything durable, as sync(2)."""
        self.command("sync")

    def status(self) -> dict[str, str]:
        answer = self.command("status")
        return dict(word.split("=", 1) for word in answer.split()[1:])

    def command(self, line: str) -> str:
        """Send one control command; returns the answer, raises PowerfailError on `error ...`."""
        answer = self._send(line)
        if not answer.startswith("ok"):
            raise PowerfailError(f"{line!r} answered {answer!r}")
        return answer

    def _send(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(COMMAND_TIMEOUT_S)
            sock.connect(str(self.control))
            sock.sendall(line.encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        if not answer:
            raise PowerfailError(f"{line!r}: the control socket closed without answering")
        return answer.decode().strip()

    def first_error(self) -> str | None:
        """The process's error message (`Error: ...` and its causes) on one line, if it printed one."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return None
        found = text.rfind("Error: ")
        if found < 0:
            return None
        message = text[found:].split("Stack backtrace:")[0]
        return " ".join(message.split())

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no sluice-powerfail log)"


def _fields(answer: str) -> dict[str, int]:
    """`ok a=1 b=2` -> {"a": 1, "b": 2}."""
    return {name: int(value) for name, value in (word.split("=", 1) for word in answer.split()[1:])}
