"""One writer per run directory: an exclusive lock that dies with its owner."""

import errno
import fcntl
import os
import socket
from pathlib import Path

from seg.checkpoint.write import remove_partial_writes
from seg.errors import RunDirectoryError

HELD: dict[Path, str] = {}  # run directories locked by this process -> the owner line


class RunLock:
    """Hold ``<run dir>/.lock`` for the life of a run; refuse a second writer.

    Once held, partial ``.tmp`` checkpoints of an interrupted run are removed.

    The lock is a POSIX record lock (``lockf``), which belongs to the process that took it: the
    kernel releases it when that process dies, however it dies, and forked children such as
    loader workers do not inherit it. (An ``flock`` would be shared with the workers through the
    inherited descriptor, so after a ``kill -9`` the lock would outlive the run until its
    workers noticed and exited, and an immediate resume would be refused.) A POSIX lock does not
    keep out the process that holds it, and closing any descriptor of the file drops it, so the
    run directories locked by this process are also kept in ``HELD``: a second lock of one is
    refused before the file is opened again. The file only records who held it last.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.file = None

    def __enter__(self) -> "RunLock":
        check_writable(self.run_dir)
        key = self.run_dir.resolve()
        if key in HELD:
            raise self.in_use(HELD[key])
        file = open(self.run_dir / ".lock", "a+")  # noqa: SIM115 - held open until __exit__
        try:
            fcntl.lockf(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            file.seek(0)
            owner = file.read().strip() or "another process"
            file.close()
            raise self.in_use(owner) from None
        owner = f"pid {os.getpid()} on {socket.gethostname()}"
        file.truncate(0)
        file.write(owner + "\n")
        file.flush()
        self.file, HELD[key] = file, owner
        remove_partial_writes(self.run_dir / "checkpoints")  # no live writer now: safe
        return self

    def in_use(self, owner: str) -> RunDirectoryError:
        return RunDirectoryError(
            f"run directory {self.run_dir} is in use by {owner}, which is still running; "
            f"two runs in one directory would overwrite each other's last.ckpt. Wait for "
            f"it to end, or give this run its own directory (hydra.run.dir=...)"
        )

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            HELD.pop(self.run_dir.resolve(), None)
            self.file.close()  # closing releases the lock
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
