"""Self-supervised pretraining of a backbone on the site's own unlabelled frames (SimCLR).

Labels are scarce, frames are not: every frame medvid has extracted can teach a network what
the site's images look like before anyone labels one. :func:`pretrain_backbone` trains the
backbone of a :class:`~medvid.predict.model.ModelSpec` architecture with the contrastive
objective of SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020): two augmented views of a frame
(:class:`~medvid.predict.data.UltrasoundAugment`) go through the backbone and a two-layer
projection head; the NT-Xent loss (temperature ``tau``) pulls each pair together and pushes it
from the other ``2B - 2`` views of the batch. With ``temporal_gap > 0`` the second view comes
from another frame of the same video at most that many rows away (a time-contrastive pair, as
in Sermanet et al., "Time-Contrastive Networks", ICRA 2018), which teaches invariance to
probe motion instead of only to augmentation.

The result is a versioned backbone: :func:`save_backbone` writes ``<name>.pt`` (the
``state_dict`` without ``fc``) and ``<name>.json`` (format ``medvid.predict.backbone/1``,
``backbone_id`` = content id of the weights, architecture, input size, method, settings,
frames and videos it saw). A label model starts from it through ``weights_path``
(:func:`medvid.predict.model.build_model`, ``TrainConfig.weights_path``), exactly like from a
user's torchvision ``state_dict``.

No library: what SimCLR needs beyond torch is a 10-line loss and a projection head; ``lightly``
would bring pytorch-lightning, hydra and an API client for them. Deterministic on a CPU for a
seed (seeded sampler and augmentation, ``torch.use_deterministic_algorithms``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

import medvid
from medvid.ids import content_id
from medvid.io import write_bytes_atomic, write_json_atomic
from medvid.predict.data import FrameDataset, UltrasoundAugment
from medvid.predict.errors import ModelFileError, TrainingDataError
from medvid.predict.infer import check_manifest, select_device
from medvid.predict.model import (
    BACKBONE_FORMAT,
    ModelSpec,
    backbone_features,
    build_model,
    feature_size,
    sidecar_path,
    state_dict_bytes,
)
from medvid.predict.train import deterministic_algorithms

#: ``progress(epoch, epochs, history_row)`` called after every epoch.
PretrainProgress = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class PretrainConfig:
    """Self-supervised pretraining knobs (defaults sized for a CPU: ``small`` at 64 px).

    Attributes:
        arch: backbone architecture (:data:`~medvid.predict.model.ARCHITECTURES`).
        input_size: side of the square input, pixels; label models must use the same.
        epochs: passes over the sampled frames.
        frame_step: use every n-th live frame of each video (neighbouring frames are near
            copies; 1 = all).
        batch_size: frames per step (``2 x`` views); SimCLR wants large batches, 128 is the
            CPU compromise.
        tau: NT-Xent temperature.
        lr, weight_decay: Adam.
        projection_dim: output size of the projection head (discarded after pretraining).
        augment_strength: scales every range of :class:`UltrasoundAugment`.
        temporal_gap: 0: both views from the same frame; n: the second view from a frame of
            the same video at most n rows away.
        seed, device, num_threads, deterministic: as in :class:`~medvid.predict.train.TrainConfig`.
    """

    arch: str = "small"
    input_size: int = 64
    epochs: int = 10
    frame_step: int = 3
    batch_size: int = 128
    tau: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-5
    projection_dim: int = 64
    augment_strength: float = 1.0
    temporal_gap: int = 0
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None
    deterministic: bool = True


@dataclass
class PretrainResult:
    """Outcome of :func:`pretrain_backbone`: the network (eval mode, CPU; its ``fc`` is an
    untrained placeholder), the spec it was built from, loss per epoch, what it saw."""

    model: nn.Module
    spec: ModelSpec
    config: PretrainConfig
    history: list[dict[str, float]]
    frames: int
    videos: list[str] = field(default_factory=list)
    seconds: float = 0.0


class _PairDataset(Dataset):
    """Two augmented views per frame; with ``gap`` the second from a nearby frame of the same
    video (rows of ``video_rows`` are positions into ``frames``, in frame order)."""

    def __init__(self, frames: FrameDataset, video_rows: list[np.ndarray], gap: int, seed: int):
        self.frames = frames
        self.gap = gap
        self.seed = seed
        self.epoch = 0
        self.row_video = np.zeros(len(frames), dtype=np.int64)
        self.row_position = np.zeros(len(frames), dtype=np.int64)
        for index, rows in enumerate(video_rows):
            self.row_video[rows] = index
            self.row_position[rows] = np.arange(len(rows))
        self.video_rows = video_rows

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        partner = index
        if self.gap > 0:
            rows = self.video_rows[self.row_video[index]]
            rng = np.random.default_rng((self.seed, self.epoch, index, 7))
            position = self.row_position[index] + int(rng.integers(-self.gap, self.gap + 1))
            partner = int(rows[min(max(position, 0), len(rows) - 1)])
        return self.frames.view(index, 0), self.frames.view(partner, 1)


def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss of two ``(B, P)`` batches of projections (row i of each is a
    positive pair): cross-entropy of each view against the other ``2B - 1`` by cosine
    similarity over ``tau``."""
    z = nn.functional.normalize(torch.cat([z_a, z_b]), dim=1)
    similarity = z @ z.T / tau
    similarity.fill_diagonal_(float("-inf"))
    b = len(z_a)
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return nn.functional.cross_entropy(similarity, partner)


def pretrain_backbone(
    frames_root: str | Path,
    manifest: pd.DataFrame,
    config: PretrainConfig | None = None,
    *,
    progress: PretrainProgress | None = None,
) -> PretrainResult:
    """SimCLR-pretrain a backbone on the live frames of ``manifest`` (no labels needed).

    Args:
        frames_root: folder the manifest's ``frame_relative_path`` are relative to.
        manifest: frame manifest rows (``frame_id``, ``video_id``, ``frame_number``,
            ``frame_timestamp``, ``frame_relative_path``; ``is_dead`` rows are skipped);
            every ``config.frame_step``-th live frame of each video is used.
        config: :class:`PretrainConfig`.
        progress: called after each epoch with ``(epoch, epochs, {"epoch", "loss",
            "seconds"})``.

    Raises :class:`TrainingDataError` with fewer than ``2`` frames to learn from (a batch
    needs two frames), :class:`~medvid.predict.errors.FrameReadError` for an unreadable
    frame.
    """
    config = config or PretrainConfig()
    check_manifest(manifest)
    live = manifest
    if "is_dead" in manifest.columns:
        live = manifest[~manifest["is_dead"].fillna(False).astype(bool)]
    live = live.sort_values(["video_id", "frame_number"], kind="stable")
    position = live.groupby("video_id").cumcount()
    frames = live[position % max(config.frame_step, 1) == 0].reset_index(drop=True)
    if len(frames) < 2:
        raise TrainingDataError(f"{len(frames)} frame(s) to pretrain on; at least 2 are needed")
    video_rows = [
        np.asarray(rows) for _, rows in sorted(frames.groupby("video_id").indices.items())
    ]
    spec = ModelSpec(classes=("_",), arch=config.arch, input_size=config.input_size)
    device = select_device(config.device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads or os.cpu_count() or 1)
    started = time.perf_counter()
    history: list[dict[str, float]] = []
    batch_size = min(config.batch_size, len(frames))
    try:
        with deterministic_algorithms(config.deterministic):
            torch.manual_seed(config.seed)
            model = build_model(spec).to(device)
            width = feature_size(model)
            projection = nn.Sequential(
                nn.Linear(width, width),
                nn.ReLU(inplace=True),
                nn.Linear(width, config.projection_dim),
            ).to(device)
            views = FrameDataset(
                frames_root,
                list(frames["frame_relative_path"]),
                input_size=config.input_size,
                augment=UltrasoundAugment(strength=config.augment_strength),
                seed=config.seed,
            )
            pairs = _PairDataset(views, video_rows, config.temporal_gap, config.seed)
            generator = torch.Generator().manual_seed(config.seed)
            loader = DataLoader(
                pairs,
                batch_size=batch_size,
                sampler=RandomSampler(pairs, generator=generator),
                drop_last=True,
            )
            optimiser = torch.optim.Adam(
                [*model.parameters(), *projection.parameters()],
                lr=config.lr,
                weight_decay=config.weight_decay,
            )
            for epoch in range(1, config.epochs + 1):
                epoch_started = time.perf_counter()
                views.set_epoch(epoch)
                pairs.epoch = epoch
                model.train()
                projection.train()
                total, steps = 0.0, 0
                for view_a, view_b in loader:
                    images = torch.cat([view_a, view_b]).to(device)
                    z = projection(backbone_features(model, images))
                    loss = nt_xent(z[: len(view_a)], z[len(view_a) :], config.tau)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    total += float(loss.detach())
                    steps += 1
                row = {
                    "epoch": float(epoch),
                    "loss": total / max(steps, 1),
                    "seconds": time.perf_counter() - epoch_started,
                }
                history.append(row)
                if progress is not None:
                    progress(epoch, config.epochs, row)
    finally:
        torch.set_num_threads(previous_threads)
    model.to("cpu").eval()
    return PretrainResult(
        model=model,
        spec=spec,
        config=config,
        history=history,
        frames=len(frames),
        videos=sorted(str(v) for v in frames["video_id"].unique()),
        seconds=time.perf_counter() - started,
    )


def backbone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of ``model`` without its ``fc`` layer, on the CPU."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if not k.startswith("fc.")}


def backbone_fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """Content id (16 hex) of a backbone state: sha256 over names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return content_id(digest.hexdigest())


def save_backbone(
    result: PretrainResult, path: str | Path, metadata: Mapping[str, Any] | None = None
) -> str:
    """Write the backbone weights (no ``fc``) and their sidecar atomically; return the
    ``backbone_id``. The weights are written first, so a sidecar never describes missing
    weights."""
    state = backbone_state(result.model)
    backbone_id = backbone_fingerprint(state)
    write_bytes_atomic(path, state_dict_bytes(state))
    write_json_atomic(
        sidecar_path(path),
        {
            "format": BACKBONE_FORMAT,
            "backbone_id": backbone_id,
            "arch": result.spec.arch,
            "input_size": result.spec.input_size,
            "method": "simclr" if result.config.temporal_gap == 0 else "simclr-temporal",
            "config": asdict(result.config),
            "frames": result.frames,
            "videos": result.videos,
            "history": result.history,
            "seconds": result.seconds,
            "medvid_version": medvid.__version__,
            "metadata": dict(metadata or {}),
        },
    )
    return backbone_id


def load_backbone_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar of a backbone written by :func:`save_backbone`, after checking that the
    weights still have its ``backbone_id``. Raises :class:`ModelFileError` when a file is
    missing or malformed or the two are out of sync."""
    path = Path(path)
    side = sidecar_path(path)
    if not side.is_file() or not path.is_file():
        raise ModelFileError(f"backbone weights or sidecar not found: {path}")
    try:
        sidecar = json.loads(side.read_text())
        if sidecar["format"] != BACKBONE_FORMAT:
            raise ValueError(f"format {sidecar['format']!r}")
        expected = str(sidecar["backbone_id"])
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # json, key, torch pickle/zip errors
        raise ModelFileError(f"backbone {path} cannot be read: {exc}") from None
    found = backbone_fingerprint(state)
    if found != expected:
        raise ModelFileError(f"backbone {path} has id {found}, sidecar says {expected}")
    return sidecar
