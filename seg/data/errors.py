"""The data errors: each message is one paragraph naming the file or key, the value, what to do."""


class DatasetError(ValueError):
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
