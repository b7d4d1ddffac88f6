"""Realistic bugs, each a single text replacement in one file, and the tests meant to catch it.

The quick, focused test file comes first: the run stops at the first failure (``-x``).

A mutant is (name, file, original text, replacement, pytest arguments). The original text must
occur in the file exactly once, so that a refactor that moves it is reported, not skipped.
"""

from typing import NamedTuple


class Mutant(NamedTuple):
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


METRICS = ("tests/test_metric_cases.py", "tests/test_metrics.py")
LOSS = ("tests/test_metric_cases.py", "tests/test_module.py")
DATA = ("tests/test_alignment.py", "tests/test_data_edges.py", "tests/test_data.py")
MODELS = ("tests/test_padding_values.py", "tests/test_models.py")
INFER = ("tests/test_alignment.py", "tests/test_inference.py")
RESUME = ("tests/test_resume_boundaries.py",)
RELIABILITY = ("tests/test_reliability.py", "-k", "killed or pickle or atomic or finite or nan")
OPTIONS = ("tests/test_checkpoint_options.py",)
EDGES = ("tests/test_loss_edges.py",)
SEEDS = ("tests/test_seeds.py",)
CASES = ("tests/test_data_cases.py",)

MUTANTS = [
    # the three that the suite once missed
    Mutant("flip the image but not its mask", "seg/data/transforms.py",
           "steps.append(A.HorizontalFlip(p=0.5))",
           "steps.append(A.Lambda(image=lambda x, **k: x[:, ::-1].copy(), p=0.5))", DATA),
    Mutant("pad the input top/left", "seg/models/__init__.py",
           "images, (0, (-w) % MULTIPLE, 0, (-h) % MULTIPLE)",
           "images, ((-w) % MULTIPLE, 0, (-h) % MULTIPLE, 0)", MODELS),
    Mutant("RNG restored only mid-epoch", "seg/checkpoint/resume.py",
           "        set_rng_states(states)\n",
           "        if saved['mid_epoch']:\n            set_rng_states(states)\n", RESUME),
    # metrics
    Mutant("confusion matrix transposed", "seg/metrics.py",
           "codes = target[keep] * k + preds[keep]", "codes = preds[keep] * k + target[keep]",
           METRICS),
    Mutant("fwIoU weighted by prediction", "seg/metrics.py",
           '"fwIoU": (truth[union > 0] *', '"fwIoU": (predicted[union > 0] *', METRICS),
    Mutant("mean accuracy from precision", "seg/metrics.py",
           "acc = tp / truth", "acc = tp / predicted", METRICS),
    Mutant("ignored pixels counted", "seg/metrics.py",
           "keep = target != self.ignore_index", "keep = target >= 0", METRICS),
    Mutant("mIoU averages absent classes as 0", "seg/metrics.py",
           '"mIoU": iou.nanmean()', '"mIoU": iou.nan_to_num(0).mean()', METRICS),
    # loss and optimisation
    Mutant("class weights dropped from the loss", "seg/losses.py",
           "return torch.tensor(opts.class_weights, dtype=torch.float32, device=logits.device)",
           "return None", LOSS),
    Mutant("loss reduction ignored", "seg/losses.py",
           "reduction=opts.reduction,", 'reduction="mean",', LOSS),
    Mutant("bias learning-rate factor ignored", "seg/module.py",
           '"lr": hp.lr * hp.bias_lr_factor,', '"lr": hp.lr,', LOSS),
    Mutant("poly schedule without its power", "seg/module.py",
           "return max(0.0, 1.0 - it / total) ** hp.poly_power",
           "return max(0.0, 1.0 - it / total)", LOSS),
    Mutant("median frequency inverted", "train.py",
           "float(median / f) ** power if f > 0", "float(f / median) ** power if f > 0", LOSS),
    # data
    Mutant("crops pad masks with 0", "seg/data/transforms.py",
           "fill_mask=ignore_index,", "fill_mask=0,", DATA),
    Mutant("batches pad masks with 0", "seg/data/transforms.py",
           "masks = torch.full((len(batch), height, width), ignore_index,",
           "masks = torch.full((len(batch), height, width), 0,", DATA),
    Mutant("masks rescaled bilinearly", "seg/data/transforms.py",
           "return A.Compose(steps, mask_interpolation=cv2.INTER_NEAREST)",
           "return A.Compose(steps, mask_interpolation=cv2.INTER_LINEAR)", DATA),
    Mutant("same augmentation every epoch", "seg/data/sampler.py",
           "sample_seed(self.seed, self.epoch, index)", "sample_seed(self.seed, 0, index)", DATA),
    Mutant("label equal to num_classes accepted", "seg/data/encodings.py",
           "lut[(lut >= num_classes) & (lut != ignore_index)] = -1",
           "lut[(lut > num_classes) & (lut != ignore_index)] = -1", DATA),
    # models and inference
    Mutant("bilinear kernel off-centre", "seg/models/layers.py",
           "center = factor - 0.5", "center = factor - 1.0", MODELS),
    Mutant("FCN skip scores dropped", "seg/models/fcn.py",
           "x = up(x) + skip", "x = up(x)", MODELS),
    Mutant("flip TTA not mirrored back", "seg/inference.py",
           "logits = logits.flip(-1) if mirrored else logits", "logits = logits", INFER),
    Mutant("sliding windows not averaged", "seg/inference.py",
           "counts[:, :, y : y + wh, x : x + ww] += 1", "counts[:, :, y : y + wh, x : x + ww] = 1",
           INFER),
    Mutant("last window not flush with the edge", "seg/inference.py",
           "        starts.append(last)", "        pass", INFER),
    # checkpoints and resume
    Mutant("checkpoints read with weights_only=False", "seg/checkpoint/read.py",
           "weights_only=True, mmap=mmap)", "weights_only=False, mmap=mmap)", RELIABILITY),
    Mutant("checkpoints written in place", "seg/checkpoint/write.py",
           "tmp = staging_path(path)", "tmp = path", RELIABILITY),
    Mutant("loader state loaded at an epoch boundary", "seg/checkpoint/resume.py",
           "if self.states and not loop.epoch_loop.batch_progress.is_last_batch:",
           "if self.states:", RESUME),
    # what a checkpoint carries into evaluate.py and predict.py
    Mutant("checkpoint's eval_scale ignored", "seg/checkpoint/select.py",
           'options["scales"] = [info.get("eval_scale", 1.0)]', 'options["scales"] = [1.0]',
           OPTIONS),
    Mutant("checkpoint's eval_flip ignored", "seg/checkpoint/select.py",
           'options["flip"] = bool(info.get("eval_flip", False))', 'options["flip"] = False',
           OPTIONS),
    Mutant("evaluate ignores the checkpoint's palette", "evaluate.py",
           'palette = info.get("palette") or datamodule.palette',
           "palette = datamodule.palette", OPTIONS),
    Mutant("predict colours in the VOC palette", "predict.py",
           'palette = info.get("palette") or voc_colormap()', "palette = voc_colormap()", OPTIONS),
    Mutant("predict names classes as VOC's", "predict.py",
           'names = info.get("class_names") or VOC_CLASSES[: info["num_classes"]]',
           'names = VOC_CLASSES[: info["num_classes"]]', OPTIONS),
    Mutant("predict ignores the checkpoint's std", "predict.py",
           'self.mean, self.std, self.bands = info["mean"], info["std"], len(info["mean"])',
           'self.mean, self.std, self.bands = info["mean"], [1.0] * len(info["mean"]), '
           'len(info["mean"])',
           OPTIONS),
    Mutant("model folder drops its evaluation options", "seg/checkpoint/read.py",
           'return info | config.get("preprocessing", {}) | config.get("evaluation", {}), state',
           'return info | config.get("preprocessing", {}), state', OPTIONS),
    # loss edges
    Mutant("OHEM lets ignored pixels into the cut", "seg/losses.py",
           'prob = prob[:, 0].masked_fill(~valid, float("inf"))',
           "prob = prob[:, 0].masked_fill(~valid, 0.0)", EDGES),
    Mutant("weighted loss sum ignores its weights", "seg/losses.py",
           "parts = [w * self.terms[name](logits, masks) for name, w in self.weights.items()]",
           "parts = [self.terms[name](logits, masks) for name, w in self.weights.items()]", EDGES),
    Mutant("validation loss not weighted by pixels", "seg/module.py",
           'getattr(self, f"{stage}_loss").update(loss, weight=valid)',
           'getattr(self, f"{stage}_loss").update(loss)', EDGES),
    # seeds
    Mutant("augmentation seed from seed + epoch + index", "seg/data/sampler.py",
           "np.random.SeedSequence([seed, epoch, index])",
           "np.random.SeedSequence(seed + epoch + index)", SEEDS),
    Mutant("loader seeded from the global RNG", "seg/data/sampler.py",
           "generator=torch.Generator().manual_seed(seed),", "generator=None,", SEEDS),
    Mutant("resume lr ratio inverted", "seg/checkpoint/resume.py",
           "ratio = new / old if old and new else 1.0", "ratio = old / new if old and new else 1.0",
           ("tests/test_resume_settings.py",)),
    Mutant("budget stop skips the last validation", "seg/training.py",
           "trainer.should_stop = True\n            trainer.check_val_every_n_epoch = 1\n",
           "trainer.should_stop = True\n", ("tests/test_training_options.py", "-k", "budget")),
    # data details
    Mutant("Cityscapes car and truck swapped", "configs/data/cityscapes.yaml",
           "26: 13, 27: 14", "26: 14, 27: 13", CASES),
    Mutant("doctor counts width x width pixels", "seg/doctor/scan.py",
           "n + scan.size[0] * scan.size[1],", "n + scan.size[0] * scan.size[0],", CASES),
    Mutant("folder ids lose their sub-folder", "seg/data/layouts.py",
           'rel = path.parent.relative_to(folder) / match["id"]', 'rel = Path(match["id"])',
           CASES),
    Mutant("RGBA images left in BGR", "seg/data/reading.py",
           "image.shape[2] in (3, 4)", "image.shape[2] == 3", CASES),
    Mutant("reduce_zero_label turns 255 into 254", "seg/data/encodings.py",
           "        lut[255] = 255\n", "", CASES),
    Mutant("scale augmentation given the factor", "seg/data/transforms.py",
           "scale_limit=(low - 1, high - 1),", "scale_limit=(low, high),", CASES),
]  # fmt: skip
