"""The mark finder: a tiny U-Net that segments on-image marks and says whether calipers are there.

:class:`MarkNet` is a three-level U-Net (Ronneberger et al., MICCAI 2015) with 8, 16 and 32
channels (30 k parameters, 0.13 MB of float32 weights), fully convolutional: it reads a frame
at its own size, so a 3-pixel caliper arm on a 2000-pixel DICOM is seen as drawn, not shrunk
away. Two output channels: every mark (calipers, dotted lines, arrows, body markers) and
caliper crosses only; ``has_calipers`` is "at least ``min_caliper_pixels`` pixels are
calipers".

It is trained only on synthetic marks (:func:`medvid.cleaning.marks.render_marks`) drawn onto
clean real frames (:func:`train_mark_net`; ``benchmarks/cleaning.py --train`` reproduces the
shipped weights), seeded: the same seed, frames and thread count give the same weights.

Weights are files side by side, written atomically: ``<name>.pt`` (the ``state_dict``),
``<name>.json`` (format, ``model_id`` = content hash of the weights, the training settings and
metrics) and ``<name>.onnx``, the same network for onnxruntime
(:func:`export_mark_net_onnx`; :mod:`medvid.cleaning.mark_onnx` runs it without torch).
:data:`DEFAULT_WEIGHTS` are shipped in the package.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from medvid.cleaning.mark_onnx import (
    DEFAULT_WEIGHTS,
    ONNX_INPUT,
    ONNX_OUTPUT,
    SIDECAR_FORMAT,
    MarkFinding,
    checked_image,
    finding,
    onnx_twin_path,
    read_sidecar,
    tile_probabilities,
)
from medvid.cleaning.marks import render_marks
from medvid.ids import sha256_file
from medvid.io import write_bytes_atomic, write_json_atomic
from medvid.predict.errors import ModelFileError
from medvid.predict.model import model_fingerprint, sidecar_path, state_dict_bytes

WIDTHS = (8, 16, 32)


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


class MarkNet(nn.Module):
    """Three-level U-Net: ``(B, 3, H, W) float32`` in 0..1 -> ``(B, 2, H, W)`` logits
    (channel 0: any mark, channel 1: caliper cross). ``H`` and ``W`` must be multiples of 4
    (:func:`find_marks` pads)."""

    def __init__(self, widths: tuple[int, int, int] = WIDTHS) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.enc1 = _block(3, w1)
        self.enc2 = _block(w1, w2)
        self.enc3 = _block(w2, w3)
        self.dec2 = _block(w3 + w2, w2)
        self.dec1 = _block(w2 + w1, w1)
        self.head = nn.Conv2d(w1, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.max_pool2d(e1, 2))
        e3 = self.enc3(nn.functional.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([nn.functional.interpolate(e3, scale_factor=2.0), e2], 1))
        d1 = self.dec1(torch.cat([nn.functional.interpolate(d2, scale_factor=2.0), e1], 1))
        return self.head(d1)


@dataclass
class LoadedMarkNet:
    """A mark finder read by :func:`load_mark_net`: network (eval mode, CPU), id, sidecar."""

    model: MarkNet
    model_id: str
    metadata: dict[str, Any]

    def find(self, image: np.ndarray, *, device: str | None = None) -> MarkFinding:
        """:func:`find_marks` of ``image`` with this network on ``device``."""
        return find_marks(image, self.model, device=device)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`train_mark_net` (recorded in the sidecar).

    Attributes:
        steps: optimizer steps (Adam, cosine learning-rate decay from ``learning_rate``).
        batch_size: crops per step.
        crop_px: side of the square training crops, pixels (a multiple of 4).
        learning_rate: Adam's initial learning rate.
        mark_crop_fraction: share of crops centred on a mark (the rest anywhere).
        jpeg_quality: (min, max) JPEG quality of the round trip a marked frame takes half the
            time (stored frames are often JPEG; the mask stays the drawn one).
        pos_weight: weight of mark pixels in the binary cross-entropy (marks are ~1% of pixels).
        seed: seeds the network initialisation, the marks and the crops.
    """

    steps: int = 800
    batch_size: int = 12
    crop_px: int = 64
    learning_rate: float = 3e-3
    mark_crop_fraction: float = 0.7
    jpeg_quality: tuple[int, int] = (70, 95)
    pos_weight: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.crop_px % 4 or self.crop_px < 32:
            raise ValueError(f"crop_px must be a multiple of 4 and >= 32, got {self.crop_px}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]


def training_crop(
    frame: np.ndarray, rng: np.random.Generator, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training sample: marks drawn onto ``frame``, maybe a JPEG round trip, then a crop.

    Returns ``(crop (S, S, 3) uint8, mark mask (S, S) bool, caliper mask (S, S) bool)`` with
    ``S`` = ``config.crop_px``; a frame smaller than ``S`` is padded with black first.
    """
    height, width = frame.shape[:2]
    size = config.crop_px
    if height < size or width < size:
        frame = cv2.copyMakeBorder(
            frame, 0, max(size - height, 0), 0, max(size - width, 0), cv2.BORDER_CONSTANT
        )
        height, width = frame.shape[:2]
    rendered = render_marks(frame, rng)
    image = rendered.image
    if rng.random() < 0.5:
        image = _jpeg_round_trip(image, int(rng.integers(*config.jpeg_quality, endpoint=True)))
    ys, xs = np.nonzero(rendered.mask)
    if len(ys) and rng.random() < config.mark_crop_fraction:
        pick = int(rng.integers(len(ys)))
        top = int(np.clip(ys[pick] - rng.integers(size), 0, height - size))
        left = int(np.clip(xs[pick] - rng.integers(size), 0, width - size))
    else:
        top, left = int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))
    window = (slice(top, top + size), slice(left, left + size))
    return image[window], rendered.mask[window], rendered.caliper_mask[window]


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(B, H, W, 3) uint8`` -> ``(B, 3, H, W) float32`` in 0..1."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def train_mark_net(
    frames: Sequence[np.ndarray],
    config: TrainConfig = TrainConfig(),
    *,
    device: str | None = None,
    log=None,
) -> tuple[MarkNet, dict[str, Any]]:
    """Train a :class:`MarkNet` on synthetic marks drawn onto clean real ``frames``.

    Loss: binary cross-entropy on both channels (mark pixels weighted ``config.pos_weight``)
    plus a soft Dice loss on the mark channel. Deterministic for a seed on one device and
    thread count (``torch.use_deterministic_algorithms`` while training).

    Args:
        frames: clean ``(H, W, 3) uint8`` RGB frames (no marks of their own), any sizes.
        config: the training settings.
        device: ``"cpu"``, ``"cuda"``...; default :func:`default_device`.
        log: called with a progress line every 100 steps.

    Returns:
        The network (eval mode, on the CPU) and a metadata dict (config, frames, seconds,
        final loss).

    Raises:
        ValueError: no frames, or a frame that is not ``(H, W, 3) uint8``.
    """
    if not frames:
        raise ValueError("no frames to draw marks on")
    for frame in frames:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected (H, W, 3) uint8 frames, got {frame.shape} {frame.dtype}")
    device = device or default_device()
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    model = MarkNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    pos_weight = torch.tensor([config.pos_weight, config.pos_weight], device=device)
    pos_weight = pos_weight.view(1, 2, 1, 1)
    started = time.perf_counter()
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    losses: list[float] = []
    try:
        model.train()
        for step in range(config.steps):
            samples = [
                training_crop(frames[int(rng.integers(len(frames)))], rng, config)
                for _ in range(config.batch_size)
            ]
            images = _to_tensor(np.stack([s[0] for s in samples])).to(device)
            target = torch.from_numpy(
                np.stack([np.stack([s[1], s[2]]) for s in samples]).astype(np.float32)
            ).to(device)
            logits = model(images)
            bce = nn.functional.binary_cross_entropy_with_logits(
                logits, target, pos_weight=pos_weight
            )
            probability = torch.sigmoid(logits[:, 0])
            overlap = (probability * target[:, 0]).sum()
            dice = 1 - (2 * overlap + 1) / (probability.sum() + target[:, 0].sum() + 1)
            loss = bce + dice
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if log is not None and (step + 1) % 100 == 0:
                log(f"step {step + 1}/{config.steps} loss {np.mean(losses[-100:]):.4f}")
    finally:
        torch.use_deterministic_algorithms(previous)
    model = model.cpu().eval()
    metadata = {
        "config": asdict(config),
        "frames": len(frames),
        "seconds": round(time.perf_counter() - started, 1),
        "final_loss": round(float(np.mean(losses[-50:])), 5),
        "device": device,
        "torch_threads": torch.get_num_threads(),
    }
    return model, metadata


def save_mark_net(
    model: MarkNet,
    path: str | Path,
    metadata: dict[str, Any] | None = None,
    *,
    onnx_twin: bool = True,
) -> str:
    """Write ``path`` (state dict) and its ``.json`` sidecar atomically, and with ``onnx_twin``
    (when the ``onnx`` package is installed: the ``dev`` extra) the ONNX twin
    (:func:`export_mark_net_onnx`) with its sha256 in the sidecar; returns ``model_id`` (16 hex
    digits of a sha256 over the weights: same weights, same id and same bytes)."""
    model_id = model_fingerprint(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_bytes_atomic(path, state_dict_bytes(state))
    sidecar = {"format": SIDECAR_FORMAT, "model_id": model_id, "widths": list(WIDTHS)}
    sidecar["metadata"] = metadata or {}
    if onnx_twin and _onnx_installed():
        twin = export_mark_net_onnx(model, onnx_twin_path(path), model_id)
        sidecar["onnx"] = {"model_id": model_id, "sha256": sha256_file(twin)}
    write_json_atomic(sidecar_path(path), sidecar)
    return model_id


def _onnx_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnx") is not None


class _Probabilities(nn.Module):
    def __init__(self, model: MarkNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(x))


ONNX_OPSET = 17


def export_mark_net_onnx(model: MarkNet, path: str | Path, model_id: str | None = None) -> Path:
    """Write ``model`` as ONNX to ``path`` atomically: input ``image`` ``(B, 3, H, W) float32``
    in 0..1, output ``probability`` ``(B, 2, H, W) float32`` (the sigmoid of the logits), batch
    and sides dynamic, opset :data:`ONNX_OPSET`, BatchNorm folded into the convolutions (eval
    mode, constant folding), ``model_id`` (default: the weights' fingerprint) in the graph's
    metadata. torch's TorchScript-based exporter; the same weights give the same bytes on one
    machine (BatchNorm folding rounds in float32 by the CPU's vector instructions, so another
    host may differ in the last bit of a folded weight).

    Raises:
        ModuleNotFoundError: the ``onnx`` package (``dev`` extra) is not installed."""
    import copy
    import io
    import warnings

    import onnx

    model_id = model_id or model_fingerprint(model)
    net = _Probabilities(copy.deepcopy(model).cpu()).eval()
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, 64, 64),),
            buffer,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_axes={ONNX_INPUT: axes, ONNX_OUTPUT: axes},
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    graph = onnx.load_from_string(buffer.getvalue())
    graph.producer_name, graph.producer_version = "medvid.cleaning.mark_net", ""
    graph.doc_string = "MarkNet: probabilities of any mark (0) and caliper crosses (1)"
    del graph.metadata_props[:]
    entry = graph.metadata_props.add()
    entry.key, entry.value = "model_id", model_id
    write_bytes_atomic(path, graph.SerializeToString(deterministic=True))
    return Path(path)


def load_mark_net(path: str | Path = DEFAULT_WEIGHTS) -> LoadedMarkNet:
    """Read weights written by :func:`save_mark_net` (default: the shipped ones).

    Raises:
        ModelFileError: a file is missing or unreadable, the sidecar is not a mark-net
            sidecar, the weights do not fit, or their hash is not the sidecar's ``model_id``.
    """
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file() or not side.is_file():
        raise ModelFileError(f"mark-net weights or sidecar missing: {path}, {side}")
    sidecar = read_sidecar(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and runtime errors of damaged files
        raise ModelFileError(f"mark-net weights {path} cannot be read: {exc}") from None
    model = MarkNet(tuple(sidecar.get("widths", WIDTHS)))
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"weights {path} do not fit the mark net: {exc}") from None
    model_id = model_fingerprint(model)
    if model_id != sidecar.get("model_id"):
        raise ModelFileError(
            f"weights {path} hash to {model_id}, the sidecar says {sidecar.get('model_id')}"
        )
    return LoadedMarkNet(model.eval(), model_id, dict(sidecar.get("metadata", {})))


_LOADED: dict[str, LoadedMarkNet] = {}


def _default_model() -> MarkNet:
    key = str(DEFAULT_WEIGHTS)
    if key not in _LOADED:
        _LOADED[key] = load_mark_net(DEFAULT_WEIGHTS)
    return _LOADED[key].model


@torch.no_grad()
def mark_probabilities(
    model: MarkNet, image: np.ndarray, *, device: str | None = None, tile_px: int = 1024
) -> np.ndarray:
    """Per-pixel probabilities ``(2, H, W) float32`` (any mark, caliper) at the image's size.

    Images larger than ``tile_px`` on a side are cut into tiles of ``tile_px`` with a 32-pixel
    overlap (beyond the network's receptive field) and stitched, bounding memory; the result
    equals one pass up to float rounding (:func:`medvid.cleaning.mark_onnx.tile_probabilities`,
    which the ONNX finder uses too).
    """
    device = device or default_device()
    model = model.to(device).eval()

    def run(tile: np.ndarray) -> np.ndarray:
        logits = model(_to_tensor(tile[None]).to(device))[0]
        return torch.sigmoid(logits).cpu().numpy()

    return tile_probabilities(image, run, tile_px=tile_px)


def find_marks(
    image: np.ndarray,
    model: MarkNet | None = None,
    *,
    threshold: float = 0.5,
    min_caliper_pixels: int = 6,
    device: str | None = None,
) -> MarkFinding:
    """Find on-image marks at the image's own size; unpacks as ``has_calipers, mask``.

    Args:
        image: ``(H, W, 3) uint8`` RGB (a ``(H, W)`` grey image is repeated to RGB).
        model: a trained :class:`MarkNet`; default the shipped weights (:data:`DEFAULT_WEIGHTS`).
        threshold: probability from which a pixel is a mark.
        min_caliper_pixels: caliper pixels from which ``has_calipers`` is true (a cross is
            about 15 pixels at its smallest).
        device: default :func:`default_device` (CUDA when available).

    Raises:
        ValueError: not an ``(H, W[, 3]) uint8`` image, or a side under 8 pixels.
        ModelFileError: no model given and the shipped weights cannot be read.
    """
    image = checked_image(image)
    probability = mark_probabilities(model or _default_model(), image, device=device)
    return finding(probability, threshold=threshold, min_caliper_pixels=min_caliper_pixels)
