"""Groups in file names (video sequences, scenes, patients) and validation splits that keep them.

An id's group is its name before a trailing frame number: ``0006R0_f01230`` -> ``0006R0`` (as
``seg.doctor.sequences.sequence`` reads CamVid), ``patient03_slice12`` -> ``patient03_slice``,
``tile_3_5`` -> ``tile_3``. Frames of one group look alike, so a validation split that shares a
group with training overstates what the model does on new data; ``group_split`` holds whole
groups out instead.
"""

import random
import re
from collections import Counter

FRAME = re.compile(r"^(?P<group>.+?)(?:[_\-. ]+[A-Za-z]?\d+|\d+)$")


def group_of(image_id: str) -> str:
    """The id without its trailing frame number; the id itself when it ends in none."""
    match = FRAME.match(image_id)
    return match.group("group") if match else image_id


def groups_found(ids: list[str]) -> Counter | None:
    """Images per group, or None where the names hold no grouping.

    No grouping: every id its own group, or all ids one group (``img_0001``, ``img_0002``...).
    """
    counts = Counter(map(group_of, ids))
    if len(counts) < 2 or len(counts) == len(ids):
        return None
    return counts


def shared_groups(train: list[str], val: list[str]) -> list[str]:
    """Groups with images in both splits, sorted; none where the names hold no grouping."""
    if groups_found(train + val) is None:
        return []
    return sorted(set(map(group_of, train)) & set(map(group_of, val)))


def group_split(
    ids: list[str], fraction: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str], bool]:
    """(train, val, by_group): whole groups to val until it holds ``fraction`` of the images.

    Without groups, a seeded division of the images (by_group False). Deterministic for a seed;
    val takes no group that would carry it past 1.5x its share (the smallest group when each
    would), and never every group.
    """
    ids = sorted(ids)
    counts = groups_found(ids)
    want = max(1, round(fraction * len(ids)))
    rng = random.Random(seed)
    if counts is None:
        val = set(rng.sample(ids, want))
        return [i for i in ids if i not in val], sorted(val), False
    order = sorted(counts)
    rng.shuffle(order)
    held, size = set(), 0
    for group in order:  # whole groups, none that would take val past 1.5x its share
        if size < want and size + counts[group] <= 1.5 * want and len(held) < len(order) - 1:
            held.add(group)
            size += counts[group]
    if not held:  # every group is large: the smallest one
        held.add(min(order, key=lambda g: (counts[g], g)))
    val = [i for i in ids if group_of(i) in held]
    return [i for i in ids if group_of(i) not in held], val, True
