"""One writer per run directory: an exclusive lock that dies with its owner."""

import fcntl
import os
import socket
from pathlib import Path

from seg.checkpoint.write import remove_partial_writes
from seg.config import ConfigError


class RunDirectoryError(ConfigError):
    """A run directory that is in use by another run, or cannot be written."""


class RunLock:
    """Hold ``<run dir>/.lock`` (``flock``) for the life of a run; refuse a second writer.

    Once held, partial ``.tmp`` checkpoints of an interrupted run are removed.

    The kernel releases an ``flock`` when its process dies, however it dies, so a lock left by
    a killed run is never in the way; the file only records who held it last.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.file = None

    def __enter__(self) -> "RunLock":
        check_writable(self.run_dir)
        path = self.run_dir / ".lock"
        file = open(path, "a+")  # noqa: SIM115 - held open until __exit__
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            owner = file.read().strip() or "another process"
            file.close()
            raise RunDirectoryError(
                f"run directory {self.run_dir} is in use by {owner}, which is still running; "
                f"two runs in one directory would overwrite each other's last.ckpt. Wait for "
                f"it to end, or give this run its own directory (hydra.run.dir=...)"
            ) from None
        file.truncate(0)
        file.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        file.flush()
        self.file = file
        remove_partial_writes(self.run_dir / "checkpoints")  # no live writer now: safe
        return self

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()  # closing releases the flock
            self.file = None


def check_writable(run_dir: Path) -> None:
    """Create ``run_dir/checkpoints`` and a probe file in it, or say which path refused."""
    folder = run_dir / "checkpoints"
    probe = folder / f".probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise RunDirectoryError(
            f"run directory {run_dir} cannot be written ({error.strerror}: "
            f"{error.filename or folder}); checkpoints and logs go there. Give a writable one "
            f"with hydra.run.dir=... (or paths.output_dir for a composed config)"
        ) from None
