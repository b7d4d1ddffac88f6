"""Every error that is the user's to fix, in one place, under one base class.

The programs catch ``SegError`` (seg/cli.py) and print its message as one paragraph, exit status
2, no traceback. Each message names the file or key, the value and what to do; an unknown value
lists the valid ones. Errors raised while a run is going (a diverged loss) are not here, but
``Interrupted`` is: the programs catch it too, without importing the training code.
"""

import signal
from pathlib import Path


class SegError(ValueError):
    """Input the user must fix: a config key, a data file, a checkpoint, weights."""


class ConfigError(SegError):
    """A config key whose value cannot work, with the valid range."""


class RunDirectoryError(ConfigError):
    """A run directory that is in use by another run, or cannot be written."""


class CheckpointError(SegError):
    """A checkpoint file that cannot be used, with the reason and what to do."""


class HubError(CheckpointError):
    """The Hugging Face Hub could not be reached, or refused the repo."""


class WeightsUnavailableError(SegError):
    """Weights were asked for but cannot be had (no network, missing file)."""

    def __init__(self, problem: str, advice: str):
        super().__init__(f"{problem}. {advice}")
        self.problem = problem  # one line, for the warning when weights are optional


class DatasetError(SegError):
    """Bad dataset input; the message names the file and what to do."""


class RootNotFoundError(DatasetError):
    """The dataset root folder does not exist."""


class LayoutError(DatasetError):
    """The dataset root exists but holds none of the folder layouts the config reads."""


class SplitError(DatasetError):
    """A split file is missing or empty, or a split name is unknown."""


class SplitOverlapError(DatasetError):
    """Training and evaluation splits share ids."""


class DuplicateIdError(SplitError):
    """An id appears twice in one split (it would count twice in every metric)."""


class MissingFileError(DatasetError):
    """An id's image or mask file is missing."""


class ImageReadError(DatasetError):
    """An image or mask cannot be decoded, or is truncated."""


class ChannelError(DatasetError):
    """An image's channel count differs from data.in_channels."""


class MaskSizeError(DatasetError):
    """A mask's size differs from its image's."""


class ColourMaskError(DatasetError):
    """A mask is an RGB colour image but the encoding expects class indices."""


class UnknownColourError(ColourMaskError):
    """A colour mask holds a colour that the config's colour table lacks."""


class LabelRangeError(DatasetError):
    """A mask holds values outside 0..num_classes-1 and the ignore index after the label map."""


class AmbiguousDataError(DatasetError):
    """The data fits two readings; the message names the option that chooses."""


class DownloadError(DatasetError):
    """A dataset download failed (offline, moved URL, corrupt archive)."""


class Interrupted(Exception):  # not a SegError: the run stopped as asked, nothing to fix
    """Training stopped on a signal; ``path`` holds the state to resume from."""

    def __init__(self, signum: int, step: int, path: Path) -> None:
        self.signum, self.step, self.path = signum, step, path
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} after step {step}; the run so far is in {path}")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
