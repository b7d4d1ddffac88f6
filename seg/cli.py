"""Entry-point error plumbing: an expected error is one paragraph on stderr and exit status 2.

``expected_errors`` wraps each program's ``main`` (beneath ``@hydra.main`` for the Hydra ones):

    @hydra.main(version_base="1.3", config_path="configs", config_name="train")
    @expected_errors
    def main(cfg): ...

Expected errors are the user's to fix (bad data, config or checkpoint, unavailable weights, a
diverged run); their message says what to do, so a traceback only hides it. Any other
exception is a bug and keeps its traceback. ``HYDRA_FULL_ERROR=1`` shows the traceback of
expected errors too. Hydra's own errors (an unknown config option, a malformed override) are
printed by Hydra, without a traceback, before ``main`` runs.
"""

import functools
import os
import sys
from collections.abc import Callable

EXIT_EXPECTED = 2
DEBUG_VARIABLE = "HYDRA_FULL_ERROR"


def expected_types() -> tuple[type[BaseException], ...]:
    """The exception classes that are the user's to fix (imported late: they are heavy)."""
    from seg.checkpoint import CheckpointError
    from seg.config import ConfigError
    from seg.data import DatasetError
    from seg.models.weights import WeightsUnavailableError

    # FloatingPointError: a diverged run, stopped with the checkpoint to resume from.
    return DatasetError, CheckpointError, ConfigError, WeightsUnavailableError, FloatingPointError


def paragraph(error: BaseException) -> str:
    """``Name: message`` with blank lines removed, so that it reads as one paragraph."""
    lines = [line.rstrip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: " + "\n".join(lines)


def expected_errors(main: Callable) -> Callable:
    """Run ``main``; print an expected error as one paragraph and exit with status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except expected_types() as error:
            if os.environ.get(DEBUG_VARIABLE) == "1":
                raise
            sys.stdout.flush()
            print(paragraph(error), file=sys.stderr, flush=True)
            sys.exit(EXIT_EXPECTED)

    return wrapper
