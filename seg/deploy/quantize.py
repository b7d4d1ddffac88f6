"""Static int8 post-training quantisation of an exported model, with an accuracy guard.

onnxruntime's tools do the work: ``quant_pre_process`` (shape inference and graph clean-up),
then ``quantize_static`` in QDQ format with per-channel int8 weights and uint8 activations,
calibrated (min/max) on training images. Only the network's convolutions and the ops around
them are quantised; the pre-processing (cast, normalise), softmax and argmax stay float.

The guard scores both models on a labelled split and refuses (``QuantizationRefused``, exit 2,
nothing written) when int8 loses more than ``max_drop`` mIoU points, unless forced.
"""

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from seg.deploy.runtime import DeployedModel
from seg.errors import ConfigError

# The ops whose inputs get QDQ pairs: the network's arithmetic; Cast/Sub/Div before it and
# Softmax/ArgMax after it stay float.
QUANTIZED_OPS = ["Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Relu", "MaxPool",
                 "Resize", "Concat", "AveragePool", "GlobalAveragePool", "Mul"]  # fmt: skip


class QuantizationRefused(ConfigError):
    """int8 lost more mIoU than ``quantize.max_drop`` allows."""


def confusion(preds: np.ndarray, masks: np.ndarray, k: int, ignore_index: int = 255):
    """A ``(K, K)`` confusion matrix (rows: truth) from one bincount, ignored pixels left out."""
    keep = masks != ignore_index
    index = masks[keep].astype(np.int64) * k + preds[keep].astype(np.int64)
    return np.bincount(index, minlength=k * k).reshape(k, k)


def miou(matrix: np.ndarray) -> float:
    """Mean IoU in percent over classes present in the truth or the prediction."""
    inter = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - inter
    present = union > 0
    return float(100 * (inter[present] / union[present]).mean()) if present.any() else 0.0


def score(model: DeployedModel, samples: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """mIoU (%) of an exported model on (image, mask) pairs."""
    k = len(model.class_names)
    matrix = np.zeros((k, k), np.int64)
    for image, mask in samples:
        matrix += confusion(model.classes(image), mask, k)
    return miou(matrix)


class Calibration:
    """onnxruntime's CalibrationDataReader over images ``(H, W, C)``."""

    def __init__(self, images: Iterable[np.ndarray], dtype: np.dtype) -> None:
        self.images: Iterator[np.ndarray] = iter(images)
        self.dtype = dtype

    def get_next(self) -> dict | None:
        image = next(self.images, None)
        if image is None:
            return None
        if self.dtype == np.uint8:
            image = np.clip(np.rint(image), 0, 255)
        return {"images": np.ascontiguousarray(image[None], dtype=self.dtype)}


def quantize_file(source: Path, target: Path, images: Iterable[np.ndarray], dtype) -> Path:
    """``source`` fp32 -> ``target`` int8 QDQ (per-channel weights), calibrated on ``images``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = type("Reader", (Calibration, CalibrationDataReader), {})(images, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(target), reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=QUANTIZED_OPS,
        )  # fmt: skip
    return target


def quantize_guarded(
    source: Path,
    target: Path,
    calibration: Iterable[np.ndarray],
    evaluation: list[tuple[np.ndarray, np.ndarray]],
    max_drop: float = 1.0,
    force: bool = False,
) -> dict:
    """Write ``target`` (int8) only when it scores within ``max_drop`` mIoU points of fp32.

    Returns fp32 and int8 mIoU (%); the int8 model is built in a temporary folder and moved to
    ``target`` only once accepted, so a refusal leaves nothing behind.
    """
    fp32 = DeployedModel(source)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        candidate = quantize_file(source, Path(tmp) / target.name, calibration, fp32.dtype)
        result = {"fp32_mIoU": score(fp32, evaluation)}
        result["int8_mIoU"] = score(DeployedModel(candidate), evaluation)
        result["drop"] = result["fp32_mIoU"] - result["int8_mIoU"]
        result["images"] = len(evaluation)
        if result["drop"] > max_drop and not force:
            raise QuantizationRefused(
                f"int8 quantisation of {source} loses {result['drop']:.2f} mIoU points "
                f"({result['fp32_mIoU']:.2f} fp32 -> {result['int8_mIoU']:.2f} int8 on "
                f"{len(evaluation)} labelled images), more than quantize.max_drop={max_drop}; "
                f"no int8 model was written. Calibrate on more images "
                f"(quantize.calibration_images), allow a larger drop, or write it anyway with "
                f"quantize.force=true"
            )
        shutil.move(candidate, target)
    return result
