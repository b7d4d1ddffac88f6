"""Entry-point error plumbing: an expected error is one paragraph on stderr and exit status 2.

``expected_errors`` wraps each program's ``main`` (beneath ``@hydra.main`` for the Hydra ones),
and ``run`` calls it:

    @hydra.main(version_base="1.3", config_path="configs", config_name="train")
    @expected_errors
    def main(cfg): ...

    if __name__ == "__main__":
        run(main)

Expected errors are the user's to fix (bad data, config or checkpoint, unavailable weights, a
diverged run); their message says what to do, so a traceback only hides it. Any other
exception is a bug and keeps its traceback. ``HYDRA_FULL_ERROR=1`` shows the traceback of
expected errors too. Hydra prints its own errors (an unknown config option, a malformed
override) cleanly, before ``main`` runs, and exits with status 1; ``run`` turns that status into
2 when ``main`` was never entered, so that every error of the user's exits with 2.
"""

import functools
import os
import sys
from collections.abc import Callable

from seg.errors import Interrupted, SegError

EXIT_EXPECTED = 2
DEBUG_VARIABLE = "HYDRA_FULL_ERROR"
entered = False  # set once a wrapped main starts: a later exit status 1 is not Hydra's config


def expected_types() -> tuple[type[BaseException], ...]:
    """The exception classes that are the user's to fix."""
    # FloatingPointError: a diverged run, stopped with the checkpoint to resume from.
    return SegError, FloatingPointError


def paragraph(error: BaseException) -> str:
    """``Name: message`` with blank lines removed, so that it reads as one paragraph."""
    lines = [line.rstrip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: " + "\n".join(lines)


def resume_command(path) -> str:
    """This command line again, resuming from ``path`` (an earlier ``ckpt_path=`` replaced)."""
    words = [w for w in sys.argv[1:] if not w.startswith(("ckpt_path=", "+ckpt_path="))]
    return " ".join(["python", sys.argv[0], *words, f"ckpt_path={path}"])


def expected_errors(main: Callable) -> Callable:
    """Run ``main``; print an expected error as one paragraph and exit with status 2.

    A run stopped by SIGINT or SIGTERM (``Interrupted``) prints how to resume it and exits with
    128 + the signal number.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        global entered
        entered = True
        try:
            return main(*args, **kwargs)
        except Exception as error:
            sys.stdout.flush()
            if isinstance(error, Interrupted):
                print(f"{error}. Resume with:\n  {resume_command(error.path)}", file=sys.stderr)
                sys.exit(error.exit_status)
            # OmegaConf's errors come from resolving the composed config: an interpolation
            # such as ${oc.env:NAME} that cannot resolve names the key and the reason.
            config = type(error).__module__.startswith("omegaconf")
            if not (config or isinstance(error, expected_types())):
                raise
            if os.environ.get(DEBUG_VARIABLE) == "1":
                raise
            text = paragraph(error)
            if config:  # named as what it is to the user
                text = "ConfigError: " + text.split(": ", 1)[-1]
            print(text, file=sys.stderr, flush=True)
            sys.exit(EXIT_EXPECTED)

    return wrapper


def run_dir_problem(argv: list[str]) -> str | None:
    """What keeps Hydra from creating the ``hydra.run.dir=`` of ``argv``, if anything.

    Hydra makes that folder and its log file before ``main`` runs, and reports a failure there
    with a traceback; checked first, it is one paragraph instead.
    """
    given = [
        w.split("=", 1)[1] for w in argv if w.startswith(("hydra.run.dir=", "+hydra.run.dir="))
    ]
    if not given or "${" in given[-1]:
        return None
    path = os.path.abspath(given[-1])
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"hydra.run.dir={given[-1]}: {existing} is a file, not a folder; choose another"
    if not os.access(existing, os.W_OK | os.X_OK):
        return (
            f"hydra.run.dir={given[-1]}: {existing} is not writable (a read-only mount?); choose "
            f"a folder this user can write to"
        )
    return None


def run(main: Callable[[], object]) -> None:
    """Call a Hydra ``main``; exit with 2 where Hydra refused the command line before ``main``."""
    problem = run_dir_problem(sys.argv[1:])
    if problem:
        print(f"RunDirectoryError: {problem}", file=sys.stderr)
        sys.exit(EXIT_EXPECTED)
    try:
        main()
    except SystemExit as stop:
        if stop.code == 1 and not entered:  # Hydra's composition and override errors
            sys.exit(EXIT_EXPECTED)
        raise
