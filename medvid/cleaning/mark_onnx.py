"""The mark finder without torch: :class:`~medvid.cleaning.mark_net.MarkNet` exported to ONNX and
run by onnxruntime (already loaded for OCR), and the choice of runtime.

torch costs about 0.8 GiB resident by import alone, 30 times what the network needs; on the CPU
the ONNX twin gives the same probabilities (within 1e-5; ``benchmarks/mark_runtime.py``) in the
same time from a process that never imports torch. The twin is
``weights/mark_net.onnx`` beside the shipped weights, written by
:func:`medvid.cleaning.mark_net.export_mark_net_onnx`: input ``image`` ``(B, 3, H, W) float32``
in 0..1, output ``probability`` ``(B, 2, H, W) float32`` (sigmoid of the logits; channel 0 any
mark, 1 caliper cross), ``H`` and ``W`` multiples of 4, BatchNorm folded into the convolutions.
The sidecar (``mark_net.json``) records the twin's sha256 and the ``model_id`` it was exported
from, and the graph carries the ``model_id`` in its metadata, so a twin left behind by new
weights is never used.

This module imports neither torch nor :mod:`medvid.cleaning.mark_net`; the tiling, the image
check and :class:`MarkFinding` live here and the torch finder uses them too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from medvid.ids import sha256_file
from medvid.predict.errors import ModelFileError

SIDECAR_FORMAT = "medvid.cleaning.mark_net/1"
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "mark_net.pt"
"""The shipped weights (trained by ``benchmarks/cleaning.py --train``)."""
TILE_PX = 1024
TILE_OVERLAP_PX = 32
"""Overlap of neighbouring tiles: beyond the network's receptive field (3 levels of two 3x3
convolutions), so stitched tiles equal one pass up to float rounding."""
ONNX_INPUT, ONNX_OUTPUT = "image", "probability"


@dataclass(frozen=True)
class MarkFinding:
    """What the mark finder found in one image.

    Attributes:
        has_calipers: at least ``min_caliper_pixels`` caliper pixels.
        mask: ``(H, W) bool``, pixels of any mark (probability >= ``threshold``).
        caliper_mask: ``(H, W) bool``, pixels of caliper crosses.
        caliper_pixels: number of ``True`` in ``caliper_mask``.
    """

    has_calipers: bool
    mask: np.ndarray
    caliper_mask: np.ndarray
    caliper_pixels: int

    def __iter__(self):
        """Unpacks as ``has_calipers, mask``."""
        return iter((self.has_calipers, self.mask))


class MarkFinder(Protocol):
    """What ``image_marks`` needs of a finder, whatever runs it."""

    model_id: str

    def find(self, image: np.ndarray, *, device: str | None = None) -> MarkFinding: ...


def checked_image(image: np.ndarray) -> np.ndarray:
    """``image`` as ``(H, W, 3) uint8`` RGB (a ``(H, W)`` grey image repeated to RGB).

    Raises:
        ValueError: not an ``(H, W[, 3]) uint8`` image, or a side under 8 pixels."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    if min(image.shape[:2]) < 8:
        raise ValueError(f"image too small for the mark finder: {image.shape}")
    return image


def tile_probabilities(
    image: np.ndarray,
    run: Callable[[np.ndarray], np.ndarray],
    *,
    tile_px: int = TILE_PX,
) -> np.ndarray:
    """Per-pixel probabilities ``(2, H, W) float32`` of ``(H, W, 3) uint8`` ``image``, computed
    tile by tile.

    ``run`` maps one ``(h, w, 3) uint8`` tile (``h``, ``w`` multiples of 4: tiles are padded by
    reflection) to its ``(2, h, w) float32`` probabilities. Images larger than ``tile_px`` on a
    side are cut into tiles of ``tile_px`` overlapping by :data:`TILE_OVERLAP_PX` and stitched,
    bounding memory; the result equals one pass up to float rounding."""
    height, width = image.shape[:2]
    out = np.zeros((2, height, width), np.float32)
    overlap = TILE_OVERLAP_PX
    step = tile_px - 2 * overlap
    for top in range(0, height, step):
        for left in range(0, width, step):
            y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
            y1, x1 = min(top + step + overlap, height), min(left + step + overlap, width)
            tile = image[y0:y1, x0:x1]
            pad_y, pad_x = (-tile.shape[0]) % 4, (-tile.shape[1]) % 4
            if pad_y or pad_x:
                tile = cv2.copyMakeBorder(tile, 0, pad_y, 0, pad_x, cv2.BORDER_REFLECT_101)
            probability = run(np.ascontiguousarray(tile))
            inner_y1, inner_x1 = min(top + step, height), min(left + step, width)
            out[:, top:inner_y1, left:inner_x1] = probability[
                :, top - y0 : inner_y1 - y0, left - x0 : inner_x1 - x0
            ]
    return out


def finding(probability: np.ndarray, *, threshold: float, min_caliper_pixels: int) -> MarkFinding:
    """:class:`MarkFinding` of ``(2, H, W)`` probabilities at ``threshold``."""
    mask = probability[0] >= threshold
    caliper_mask = probability[1] >= threshold
    caliper_pixels = int(caliper_mask.sum())
    return MarkFinding(caliper_pixels >= min_caliper_pixels, mask, caliper_mask, caliper_pixels)


def onnx_twin_path(weights: str | Path) -> Path:
    """The ONNX twin beside a weights file: ``mark_net.pt`` -> ``mark_net.onnx``."""
    return Path(weights).with_suffix(".onnx")


def read_sidecar(weights: str | Path) -> dict[str, Any]:
    """The JSON sidecar beside ``weights`` (``mark_net.pt`` -> ``mark_net.json``).

    Raises:
        ModelFileError: missing, not JSON, or not a :data:`SIDECAR_FORMAT` sidecar."""
    side = Path(weights).with_suffix(".json")
    try:
        sidecar = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"mark-net sidecar {side} cannot be read: {exc}") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        raise ModelFileError(f"{side} is not a {SIDECAR_FORMAT} sidecar")
    return sidecar


class OnnxMarkFinder:
    """The mark finder on onnxruntime (:func:`load_onnx_mark_finder`).

    Attributes:
        model_id: the weights' ``model_id`` (the twin was exported from them).
        path: the ``.onnx`` file.
        provider: onnxruntime's execution provider (``CPUExecutionProvider``, ...).
    """

    def __init__(self, path: Path, session: Any, model_id: str) -> None:
        self.path, self.model_id, self._session = path, model_id, session
        self.provider = session.get_providers()[0]

    def _run(self, tile: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(tile.transpose(2, 0, 1)[None], dtype=np.float32)
        batch *= np.float32(1 / 255)
        return self._session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0][0]

    def probabilities(self, image: np.ndarray, *, tile_px: int = TILE_PX) -> np.ndarray:
        """``(2, H, W) float32`` probabilities of a ``(H, W, 3) uint8`` RGB image
        (:func:`tile_probabilities`)."""
        return tile_probabilities(checked_image(image), self._run, tile_px=tile_px)

    def find(
        self,
        image: np.ndarray,
        *,
        threshold: float = 0.5,
        min_caliper_pixels: int = 6,
        device: str | None = None,
    ) -> MarkFinding:
        """As :func:`medvid.cleaning.mark_net.find_marks`; ``device`` is ignored (the session's
        provider decides).

        Raises:
            ValueError: not an ``(H, W[, 3]) uint8`` image, or a side under 8 pixels."""
        probability = self.probabilities(image)
        return finding(probability, threshold=threshold, min_caliper_pixels=min_caliper_pixels)


def load_onnx_mark_finder(
    weights: str | Path = DEFAULT_WEIGHTS,
    *,
    device: Literal["cpu", "cuda", "auto"] = "cpu",
    threads: int = 0,
) -> OnnxMarkFinder:
    """The ONNX twin of ``weights`` on onnxruntime (CUDA first for ``cuda``/``auto`` when this
    onnxruntime has it), ``threads`` intra-op threads (0: onnxruntime's default).

    Raises:
        ModelFileError: the sidecar or twin is missing or unreadable, or the twin is not the
            one exported from these weights (sha256 or ``model_id`` differ from the sidecar)."""
    from medvid.ocr.detect import onnx_session

    sidecar = read_sidecar(weights)
    twin = onnx_twin_path(weights)
    record = sidecar.get("onnx")
    if not isinstance(record, dict) or not twin.is_file():
        raise ModelFileError(f"no ONNX twin of {weights} (file {twin}, sidecar entry 'onnx')")
    model_id = sidecar.get("model_id")
    if record.get("model_id") != model_id or record.get("sha256") != sha256_file(twin):
        raise ModelFileError(
            f"{twin} is not the twin of the weights {model_id} (exported from "
            f"{record.get('model_id')}, or changed since)"
        )
    try:
        # no arena: with it tiled stills ran ~15% faster but the process peaked 0.4 GiB higher
        # (benchmarks/README.md, "Mark finder runtime")
        session = onnx_session(twin, device, threads, memory_arena=False)
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        raise ModelFileError(f"onnxruntime cannot load {twin}: {exc}") from None
    embedded = session.get_modelmeta().custom_metadata_map.get("model_id")
    if embedded != model_id:
        raise ModelFileError(f"{twin} carries model_id {embedded}, the sidecar {model_id}")
    return OnnxMarkFinder(twin, session, model_id)


@dataclass(frozen=True)
class ChosenMarkFinder:
    """What :func:`load_mark_finder` chose: the ``finder``, the ``device`` its ``find`` is given
    (a torch device for the torch finder), and the ``runtime`` in words, e.g.
    ``"onnxruntime-cpu"`` or ``"torch-cuda"``."""

    finder: MarkFinder
    device: str
    runtime: str


def _nvidia_gpu_present() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


def load_mark_finder(
    device: Literal["cpu", "cuda", "auto"] = "auto",
    *,
    threads: int = 0,
    weights: str | Path = DEFAULT_WEIGHTS,
    log: Callable[[str], object] | None = None,
) -> ChosenMarkFinder:
    """The mark finder of ``weights`` on the runtime that fits ``device``, torch only if needed.

    - onnxruntime with its CUDA provider for ``cuda``/``auto`` when this onnxruntime has it
      (``onnxruntime-gpu``);
    - torch on CUDA for ``cuda``, or for ``auto`` when an NVIDIA GPU is present, if torch sees
      it;
    - otherwise onnxruntime on the CPU, torch never imported;
    - torch (CPU or CUDA) whenever the ONNX twin is missing or stale, said through ``log``.

    ``threads``: CPU threads (0: the runtime's default). Both runtimes give the same masks
    (``tests/core/test_cleaning_mark_onnx.py``).

    Raises:
        ModelFileError: neither runtime can read the finder's files."""
    import onnxruntime as ort

    say = log or (lambda _message: None)
    cuda_onnx = "CUDAExecutionProvider" in ort.get_available_providers()
    want_gpu = device == "cuda" or (device == "auto" and (cuda_onnx or _nvidia_gpu_present()))
    try:
        if want_gpu and cuda_onnx:
            finder = load_onnx_mark_finder(weights, device="cuda", threads=threads)
            if finder.provider == "CUDAExecutionProvider":
                return ChosenMarkFinder(finder, "cuda", "onnxruntime-cuda")
        if not want_gpu:
            finder = load_onnx_mark_finder(weights, device="cpu", threads=threads)
            return ChosenMarkFinder(finder, "cpu", "onnxruntime-cpu")
    except ModelFileError as exc:
        say(f"mark finder: {exc}; running the weights on torch")
    import torch  # ~0.8 GiB resident

    from medvid.cleaning.mark_net import load_mark_net

    if want_gpu and torch.cuda.is_available():
        return ChosenMarkFinder(load_mark_net(weights), "cuda", "torch-cuda")
    if want_gpu:
        say("mark finder: no CUDA device for torch; on the CPU")
        try:
            finder = load_onnx_mark_finder(weights, device="cpu", threads=threads)
            return ChosenMarkFinder(finder, "cpu", "onnxruntime-cpu")
        except ModelFileError:
            pass
    return ChosenMarkFinder(load_mark_net(weights), "cpu", "torch-cpu")
