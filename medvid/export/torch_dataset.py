"""A PyTorch ``Dataset`` over an export's multilabel training data (``multilabel.json``).

Usage::

    from torch.utils.data import DataLoader
    from medvid.export.torch_dataset import MultilabelFrameDataset

    train = MultilabelFrameDataset("exports/default", split="train", input_size=224)
    loader = DataLoader(train, batch_size=32, shuffle=True)
    for images, vectors, masks in loader:           # (B,3,S,S) float32, (B,C), (B,C)
        loss = (bce(model(images), vectors) * masks).sum() / masks.sum().clamp(min=1)

Each item is ``(image, label_vector, label_mask)``:

- ``image``: without ``transform``, a ``(3, H, W) float32`` tensor of RGB in [0, 1] (resized to
  ``(input_size, input_size)`` with area interpolation when ``input_size`` is given, so a batch
  stacks); with ``transform``, whatever ``transform(PIL.Image RGB)`` returns (torchvision
  transforms slot in).
- ``label_vector``: ``(C,) float32``, 1.0 where the label applies; order ``dataset.labels``.
- ``label_mask``: ``(C,) float32``, 1.0 where the label is known for the frame, 0.0 where the
  export has no answer (mask those positions out of the loss).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from medvid.export.dataset import FRAMES_DIR
from medvid.export.multilabel import MULTILABEL_FORMAT, read_multilabel


class MultilabelFrameDataset(Dataset):
    """The frames of an export folder with their label vectors and masks.

    Args:
        export_dir: the export folder (holding ``multilabel.json`` and ``frames/``).
        split: ``"train"`` or ``"val"`` to keep one split; ``None`` keeps every frame.
        transform: called on each ``PIL.Image`` (RGB); its result is the item's image.
        input_size: without ``transform``, resize images to this square side in pixels.

    Attributes:
        labels: label names in vector order; ``label_ids`` their ids.
        frames: the ``multilabel.json`` frame records kept (``frame_id``, ``video_id``,
            ``frame_number``, ``frame_relative_path``, ``split``, ``label_vector``,
            ``label_mask``).

    Raises ``ValueError`` when ``multilabel.json`` is missing, of another format, or ``split``
    is not a split of the export; reading an item raises ``FileNotFoundError`` for a missing
    image.
    """

    def __init__(
        self,
        export_dir: str | Path,
        split: str | None = None,
        *,
        transform: Callable[[Image.Image], Any] | None = None,
        input_size: int | None = None,
    ) -> None:
        self.root = Path(export_dir)
        try:
            document = read_multilabel(self.root)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.root} has no readable multilabel.json: {exc}") from None
        if document.get("format") != MULTILABEL_FORMAT:
            raise ValueError(f"{self.root}/multilabel.json is not {MULTILABEL_FORMAT}")
        self.labels: tuple[str, ...] = tuple(x["label_name"] for x in document["labels"])
        self.label_ids: tuple[int, ...] = tuple(int(x["label_id"]) for x in document["labels"])
        frames = document["frames"]
        splits = sorted({f["split"] for f in frames})
        if split is not None and frames and split not in splits:
            raise ValueError(f"split {split!r} not in the export (splits: {', '.join(splits)})")
        self.frames: list[dict[str, Any]] = [f for f in frames if split in (None, f["split"])]
        self.transform = transform
        self.input_size = input_size

    def __len__(self) -> int:
        return len(self.frames)

    def image_path(self, index: int) -> Path:
        """The image file of item ``index``."""
        return self.root / FRAMES_DIR / self.frames[index]["frame_relative_path"]

    def __getitem__(self, index: int) -> tuple[Any, torch.Tensor, torch.Tensor]:
        frame = self.frames[index]
        with Image.open(self.image_path(index)) as file:
            image = file.convert("RGB")
        if self.transform is not None:
            pixels: Any = self.transform(image)
        else:
            if self.input_size is not None:
                image = image.resize((self.input_size, self.input_size), Image.Resampling.BOX)
            array = np.asarray(image, dtype=np.float32) / 255.0
            pixels = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        vector = torch.tensor(frame["label_vector"], dtype=torch.float32)
        mask = torch.tensor(frame["label_mask"], dtype=torch.float32)
        return pixels, vector, mask

    def positive_weights(self) -> torch.Tensor:
        """``(C,) float32`` negatives/positives per label among known answers (for
        ``BCEWithLogitsLoss(pos_weight=...)``); 1.0 for a label without positives."""
        if not self.frames:
            return torch.ones(len(self.labels))
        vectors = np.array([f["label_vector"] for f in self.frames], dtype=np.float32)
        masks = np.array([f["label_mask"] for f in self.frames], dtype=np.float32)
        positives = (vectors * masks).sum(axis=0)
        negatives = ((1 - vectors) * masks).sum(axis=0)
        weights = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
        return torch.from_numpy(weights.astype(np.float32))
