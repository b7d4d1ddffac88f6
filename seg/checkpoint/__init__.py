"""The checkpoint lifecycle in one place: reading, writing, resuming, guarding, the run lock.

- ``read``: ``read_checkpoint`` (``weights_only``; every unusable file a ``CheckpointError``
  naming it), ``load_network`` (the network from the file alone), ``init_from_checkpoint``.
- ``write``: ``AtomicCheckpointIO`` (temporary file, fsync, rename), ``LastCheckpoint``
  (``last.ckpt`` after every epoch), ``remove_partial_writes`` (a killed writer's ``.tmp``).
- ``resume``: ``check_resume`` (refuse another model, optimizer or a weights-only file),
  ``RNGState`` and ``LoaderResume`` (exact mid-epoch resume), ``ResumeSettings`` (today's
  optimizer settings win over the checkpoint's).
- ``guard``: ``CheckpointGuard`` (no NaN/inf or exploded weights, ``weights=None`` stored).
- ``lock``: ``RunLock`` (one writer per run directory) and the writable-directory check.
- ``interrupt``: ``GracefulStop`` (SIGINT / SIGTERM: ``last.ckpt`` at the step's end, then
  ``Interrupted``, which the entry point turns into the resume command and exit 130 / 143).

``lifecycle()`` gives the callbacks and the checkpoint writer every training run gets.
"""

from seg.checkpoint.guard import CheckpointGuard
from seg.checkpoint.interrupt import GracefulStop, Interrupted
from seg.checkpoint.lock import RunLock
from seg.checkpoint.read import init_from_checkpoint, load_network, model_state, read_checkpoint
from seg.checkpoint.resume import (
    LoaderResume,
    ResumeSettings,
    RNGState,
    check_resume,
    rng_states,
    set_rng_states,
)
from seg.checkpoint.write import AtomicCheckpointIO, LastCheckpoint, remove_partial_writes
from seg.errors import CheckpointError, RunDirectoryError


def lifecycle() -> tuple[list, AtomicCheckpointIO]:
    """The always-on callbacks (exact resume, today's settings, signals, the guard), the writer."""
    guard = CheckpointGuard()
    callbacks = [RNGState(), LoaderResume(), ResumeSettings(), GracefulStop(), guard]
    return callbacks, AtomicCheckpointIO(guard.check)


__all__ = [
    "AtomicCheckpointIO",
    "CheckpointError",
    "CheckpointGuard",
    "GracefulStop",
    "Interrupted",
    "LastCheckpoint",
    "LoaderResume",
    "RNGState",
    "ResumeSettings",
    "RunDirectoryError",
    "RunLock",
    "lifecycle",
    "check_resume",
    "init_from_checkpoint",
    "load_network",
    "model_state",
    "read_checkpoint",
    "remove_partial_writes",
    "rng_states",
    "set_rng_states",
]
