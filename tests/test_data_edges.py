"""Off-by-one edges of the data path: label ranges and per-epoch augmentation seeds."""

import numpy as np

from seg.data.encodings import label_lut
from seg.data.sampler import SeededSampler


def test_labels_from_num_classes_up_are_refused_but_ignore_is_kept():
    lut = label_lut(num_classes=4, ignore_index=255)
    assert lut[:4].tolist() == [0, 1, 2, 3]
    assert lut[4] == -1 and lut[5] == -1 and lut[254] == -1  # -1: a LabelRangeError
    assert lut[255] == 255
    mapped = label_lut(num_classes=4, ignore_index=255, label_map={7: 2, 4: 255})
    assert mapped[7] == 2 and mapped[4] == 255


def test_every_epoch_draws_new_augmentation_seeds_for_every_image():
    sampler = SeededSampler(list(range(8)), num_replicas=1, rank=0, shuffle=True, seed=3)
    seeds = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        seeds.append(dict(iter(sampler)))  # index -> seed of its augmentation
    assert seeds[0].keys() == seeds[1].keys() == set(range(8))
    assert all(seeds[0][i] != seeds[1][i] for i in range(8))
    assert seeds[2] == seeds[0]  # a function of (seed, epoch, index), nothing else
    assert len(np.unique(list(seeds[0].values()))) == 8
