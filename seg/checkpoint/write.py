"""Writing checkpoints: atomically, last.ckpt after every epoch, no leftovers from killed writes."""

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from seg.checkpoint.read import first_line, read_checkpoint
from seg.errors import CheckpointError

log = logging.getLogger("seg")


def staging_path(path: Path) -> Path:
    """Where a checkpoint is written before its rename: ``.<name>.tmp`` in the same folder."""
    return path.with_name(f".{path.name}.tmp")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to ``.<name>.tmp`` beside the target, fsync, then ``os.replace``; read safely.

    Lightning's default stages the file in $TMPDIR and moves it: across filesystems the move is
    a copy into the target, and nothing is synced. A rename within one directory is atomic.
    ``check`` sees every checkpoint before it is written and may refuse it by raising.
    """

    def __init__(self, check: Callable[[dict, str], None] | None = None) -> None:
        super().__init__()
        self.check = check

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        if self.check is not None:
            self.check(checkpoint, str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = staging_path(path)  # fixed name: a killed write's leftover is reused
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
        except (OSError, RuntimeError) as error:  # a full disk: torch's zip writer or the file
            tmp.unlink(missing_ok=True)  # free the space, keep the old file
            raise CheckpointError(
                f"could not write the checkpoint {path} ({first_line(error)}); the disk may be "
                f"full. Nothing written earlier was touched: free some space, then resume from "
                f"the run's last.ckpt"
            ) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # make the rename itself durable
        finally:
            os.close(directory)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        # Always weights_only: resuming must never run code from the file.
        return read_checkpoint(path)


def remove_partial_writes(folder: str | Path) -> list[Path]:
    """Delete the ``.*.tmp`` files a killed writer left under ``folder``; return them.

    Only safe while this process owns the run directory (``RunLock``): then no write is live.
    """
    leftovers = sorted(Path(folder).rglob(".*.ckpt.tmp")) if Path(folder).is_dir() else []
    for tmp in leftovers:
        log.info("removing %s, a partial checkpoint left by an interrupted run", tmp)
        tmp.unlink(missing_ok=True)
    return leftovers


class LastCheckpoint(pl.callbacks.ModelCheckpoint):
    """``checkpoints/last.ckpt`` after every epoch: Lightning's ModelCheckpoint keeping the one
    newest checkpoint under the name ``last``.

    (``save_last`` alone will not do: Lightning 2.6 writes the last checkpoint only at steps where
    a top-k one was saved, and at the end of training; the ``steps`` callback's ``save_last``
    gives that end-of-training save, for runs stopped mid-epoch by max_steps or max_time.) A class
    of its own so that its state key differs from the periodic checkpoint's, which Lightning would
    otherwise refuse as a duplicate when both save every epoch.
    """

    def __init__(self, dirpath: str, every_n_epochs: int = 1) -> None:
        super().__init__(
            dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            every_n_epochs=every_n_epochs,
            save_top_k=1,
            enable_version_counter=False,
        )
