"""Frames on disk as a torch ``Dataset`` for training and inference.

A frame is a JPEG (or PNG) under a frames root, named by the manifest's ``frame_relative_path``.
Each item is read with OpenCV, converted BGR -> RGB, resized to a square ``input_size`` with
area interpolation (aspect ratio is not kept: clinical frames are close to square and the
classifier only needs a consistent view) and normalised with the ImageNet channel mean/std, the
statistics torchvision's ResNets expect, so a user-supplied ImageNet-trained weights file works
unchanged.

``input_size`` defaults to 128 pixels, the size the AIGVA tool trained its ResNets at (seed 003,
model names ``resnet18_..._128imgsize_...``); on a CPU a 128 px forward pass costs about a third
of a 224 px one; the ``small`` ConvNet trains at 64 px on a CPU.

Augmentation for training (:class:`UltrasoundAugment`) follows what changes between ultrasound
acquisitions of the same finding: the operator's gain and the scanner's dynamic range (gain and
gamma), speckle (multiplicative noise), imaging depth (the field of view is cut at a random
depth, the skin line kept at the top), probe orientation (horizontal flip, small rotations),
position (small shifts and zoom) and colour maps (desaturation). The choice follows
Tirindelli et al., "Rethinking Ultrasound Augmentation: A Physics-Inspired Approach", MICCAI
2021 (depth, gain, speckle) and the flips, rotations and crops used by POCOVID-Net (Born et
al., Applied Sciences 2021) on lung ultrasound. Every random draw comes from
``(seed, epoch, index[, view])``, so an epoch is the same whatever the batch order or device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from medvid.errors import CorruptMediaError
from medvid.images import read_rgb
from medvid.predict.errors import FrameReadError

DEFAULT_INPUT_SIZE = 128
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def read_frame_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3) uint8 RGB`` (:func:`medvid.images.read_rgb`).

    Raises :class:`FrameReadError` when the file is missing or not a decodable image.
    """
    try:
        return read_rgb(path)
    except CorruptMediaError as exc:
        raise FrameReadError(f"frame {exc.reason}: {path}") from None


def read_frame_resized(path: str | Path, input_size: int) -> np.ndarray:
    """Read an image file straight to ``(input_size, input_size, 3) uint8 RGB``.

    JPEGs are decoded with libjpeg's DCT scaling (Pillow ``draft``) at the smallest 1/2, 1/4
    or 1/8 scale that still covers ``input_size`` in both directions, then area-resized: for a
    450 px frame and a 128 px input this decodes a quarter of the pixels. Raises
    :class:`FrameReadError` when the file is missing or not a decodable image.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise FrameReadError(f"frame image missing or empty: {path}")
    try:
        with Image.open(path) as image:
            image.draft("RGB", (input_size, input_size))
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise FrameReadError(f"frame image cannot be decoded: {path} ({exc})") from None
    return resize_square(rgb, input_size)


def resize_square(rgb: np.ndarray, input_size: int) -> np.ndarray:
    """Resize ``(H, W, 3) uint8`` to ``(input_size, input_size, 3) uint8`` (area filter)."""
    return cv2.resize(rgb, (input_size, input_size), interpolation=cv2.INTER_AREA)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``(S, S, 3)`` RGB, ``uint8`` (0-255) or ``float32`` (0-1), -> ``(3, S, S) float32``
    normalised with the ImageNet mean/std."""
    x = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


@dataclass(frozen=True)
class UltrasoundAugment:
    """Random acquisition changes of one ultrasound frame (see the module docstring).

    Applied in this order to ``(S, S, 3) uint8 RGB``, returning ``(S, S, 3) float32`` in
    [0, 1]: one affine warp (flip with probability ``flip``, rotation up to
    ``max_rotation_deg`` degrees, zoom in by up to ``max_zoom``, shift up to ``max_shift`` of
    the side, and a depth cut keeping the top ``depth_keep[0]``-``1`` of the image stretched
    to full height), gain (multiply by a factor in ``gain``), gamma (a power in ``gamma``),
    speckle (multiply by ``1 + s * N(0, 1)`` per pixel, ``s`` up to ``speckle``) and, with
    probability ``desaturate``, grey scale. ``strength`` scales every range (0: identity).
    """

    flip: float = 0.5
    max_rotation_deg: float = 10.0
    max_zoom: float = 0.25
    max_shift: float = 0.08
    depth_keep: tuple[float, float] = (0.7, 1.0)
    gain: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.7, 1.4)
    speckle: float = 0.2
    desaturate: float = 0.5
    strength: float = 1.0

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        size = rgb.shape[0]
        k = self.strength

        def around_one(low: float, high: float) -> float:
            return float(np.exp(rng.uniform(math.log(low) * k, math.log(high) * k)))

        flip = -1.0 if rng.random() < self.flip * min(k, 1.0) else 1.0
        angle = math.radians(rng.uniform(-1, 1) * self.max_rotation_deg * k)
        zoom = 1.0 + rng.uniform(0, self.max_zoom * k)
        keep = 1.0 - rng.uniform(0, (1.0 - self.depth_keep[0]) * k)
        shift = rng.uniform(-1, 1) * self.max_shift * k * size
        # Output pixel (u, v) samples input pixel A @ (u, v) + b; the depth cut stretches the
        # top `keep` of the rows over the full height, so the skin line stays on top.
        cos, sin = math.cos(angle), math.sin(angle)
        sx, sy = flip / zoom, keep / zoom
        centre = (size - 1) / 2.0
        matrix = np.array([[cos * sx, -sin * sy], [sin * sx, cos * sy]])
        top = np.array([centre, 0.0])
        offset = np.array([centre + shift, 0.0]) - matrix @ top
        affine = np.hstack([matrix, offset[:, None]]).astype(np.float64)
        warped = cv2.warpAffine(
            rgb,
            affine,
            (size, size),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
        )
        x = warped.astype(np.float32) / 255.0
        x = np.clip(x * around_one(*self.gain), 0.0, 1.0) ** around_one(*self.gamma)
        sigma = rng.uniform(0, self.speckle * k)
        if sigma > 0:
            noise = rng.standard_normal(x.shape[:2]).astype(np.float32)
            x = x * (1.0 + sigma * noise)[..., None]
        if rng.random() < self.desaturate * min(k, 1.0):
            x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
        return np.clip(x, 0.0, 1.0).astype(np.float32)


#: Augmentation used by training unless told otherwise.
DEFAULT_AUGMENT = UltrasoundAugment()


class FrameDataset(Dataset):
    """Frames under ``frames_root`` with optional class targets.

    Item ``i`` is ``(image, target)``: ``image`` a ``(3, S, S) float32`` tensor,
    ``target`` an ``int64`` class index (single-label), a ``(C,) float32`` 0/1 vector
    (multilabel), or ``-1`` when no targets were given (inference).

    Args:
        frames_root: folder the ``relative_paths`` are relative to.
        relative_paths: one ``frame_relative_path`` per item.
        targets: ``(N,)`` int class indices or ``(N, C)`` 0/1 matrix; ``None`` for inference.
        input_size: side S of the square network input, pixels.
        augment: an :class:`UltrasoundAugment` (or ``True`` for :data:`DEFAULT_AUGMENT`)
            applied to every read (training only); ``False``/``None``: none.
        seed: seed of the augmentation draws; call :meth:`set_epoch` each epoch.
        views: augmented views per item: 1 gives ``(image, target)``, 2 gives
            ``((view_a, view_b), target)`` for contrastive pretraining.
        cache: keep the resized ``uint8`` frames in memory after the first read
            (``N * S * S * 3`` bytes: 49 KiB per frame at S=128) so later epochs skip JPEG
            decoding.
    """

    def __init__(
        self,
        frames_root: str | Path,
        relative_paths: Sequence[str],
        targets: np.ndarray | None = None,
        *,
        input_size: int = DEFAULT_INPUT_SIZE,
        augment: UltrasoundAugment | bool | None = False,
        seed: int = 0,
        cache: bool = True,
        views: int = 1,
    ) -> None:
        self.frames_root = Path(frames_root)
        self.relative_paths = [str(p) for p in relative_paths]
        if targets is not None and len(targets) != len(self.relative_paths):
            raise ValueError(f"{len(targets)} targets for {len(self.relative_paths)} frames")
        self.targets = targets
        self.input_size = int(input_size)
        self.augment = DEFAULT_AUGMENT if augment is True else (augment or None)
        self.views = int(views)
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.relative_paths)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (deterministic per seed and epoch)."""
        self.epoch = epoch

    def frame(self, index: int) -> np.ndarray:
        """The resized frame ``index`` as ``(S, S, 3) uint8 RGB`` (cached when enabled)."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        rgb = read_frame_resized(self.frames_root / self.relative_paths[index], self.input_size)
        if self._cache is not None:
            self._cache[index] = rgb
        return rgb

    def view(self, index: int, view: int = 0) -> torch.Tensor:
        """Item ``index`` as a ``(3, S, S) float32`` network input, augmented when enabled
        (draws from ``(seed, epoch, index, view)``)."""
        rgb = self.frame(index)
        if self.augment is None:
            return to_tensor(rgb)
        rng = np.random.default_rng((self.seed, self.epoch, index, view))
        return to_tensor(self.augment(rgb, rng))

    def __getitem__(self, index: int):
        if self.views == 1:
            image = self.view(index)
        else:
            image = tuple(self.view(index, v) for v in range(self.views))
        if self.targets is None:
            return image, torch.tensor(-1, dtype=torch.int64)
        target = self.targets[index]
        if np.ndim(target) == 0:
            return image, torch.tensor(int(target), dtype=torch.int64)
        return image, torch.as_tensor(np.asarray(target, dtype=np.float32))
