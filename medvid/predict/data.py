"""Frames on disk as a torch ``Dataset`` for training and inference.

A frame is a JPEG (or PNG) under a frames root, named by the manifest's ``frame_relative_path``.
Each item is read with OpenCV, converted BGR -> RGB, resized to a square ``input_size`` with
area interpolation (aspect ratio is not kept: clinical frames are close to square and the
classifier only needs a consistent view) and normalised with the ImageNet channel mean/std, the
statistics torchvision's ResNets expect, so a user-supplied ImageNet-trained weights file works
unchanged.

``input_size`` defaults to 128 pixels, the size the AIGVA tool trained its ResNets at (seed 003,
model names ``resnet18_..._128imgsize_...``); on a CPU a 128 px forward pass costs about a third
of a 224 px one. Augmentation for training is light (horizontal flip, brightness scale
0.9-1.1) and deterministic: its random draws come from ``(seed, epoch, index)``.
"""

from __future__ import annotations

from collections.abc import Sequence
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
BRIGHTNESS_RANGE = (0.9, 1.1)


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
    """``(S, S, 3) uint8 RGB`` -> ``(3, S, S) float32`` normalised with the ImageNet mean/std."""
    x = rgb.astype(np.float32) / 255.0
    x = (x - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


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
        augment: flip and brightness jitter (training only).
        seed: seed of the augmentation draws; call :meth:`set_epoch` each epoch.
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
        augment: bool = False,
        seed: int = 0,
        cache: bool = True,
    ) -> None:
        self.frames_root = Path(frames_root)
        self.relative_paths = [str(p) for p in relative_paths]
        if targets is not None and len(targets) != len(self.relative_paths):
            raise ValueError(f"{len(targets)} targets for {len(self.relative_paths)} frames")
        self.targets = targets
        self.input_size = int(input_size)
        self.augment = augment
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

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = self.frame(index)
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            if rng.random() < 0.5:
                rgb = rgb[:, ::-1]
            scale = rng.uniform(*BRIGHTNESS_RANGE)
            rgb = np.clip(rgb.astype(np.float32) * scale, 0, 255).astype(np.uint8)
        image = to_tensor(rgb)
        if self.targets is None:
            return image, torch.tensor(-1, dtype=torch.int64)
        target = self.targets[index]
        if np.ndim(target) == 0:
            return image, torch.tensor(int(target), dtype=torch.int64)
        return image, torch.as_tensor(np.asarray(target, dtype=np.float32))
