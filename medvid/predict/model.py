"""Frame classifiers: small ConvNets and torchvision ResNets, their spec, versioned save/load.

A trained model is two files written atomically side by side:

- ``<name>.pt``: the ``state_dict`` (``torch.save``; loaded with ``weights_only=True``);
- ``<name>.json``: the sidecar with ``model_id``, the :class:`ModelSpec` (architecture, class
  names in output order, input size, multilabel flag) and free metadata (videos and frame
  counts it was trained on, metrics, medvid version).

``model_id`` is the first 16 hex digits of a sha256 over the state dict's names, dtypes, shapes
and bytes, so the same weights always get the same id whatever file they sit in; it is what
predictions carry in their ``source`` (``model:<model_id>``).

No weights are ever downloaded: networks start from scratch (``weights=None``), from a
self-supervised backbone pretrained on the site's own frames (:mod:`medvid.predict.pretrain`,
a ``.pt`` without ``fc`` plus a ``medvid.predict.backbone/1`` sidecar), or from a local
``state_dict`` file the user supplies (e.g. ImageNet weights saved beforehand); a final layer
of the wrong size is replaced.

Architectures (:data:`ARCHITECTURES`):

- ``tiny``: two 3x3 convolution stages (8 and 16 channels), for tests and smoke runs;
- ``small``: four stages of two 3x3 convolutions (16, 32, 64, 128 channels, stride 2 at the
  start of each), BatchNorm and ReLU, global average pooling of every stage (240 features):
  0.29 M parameters, about 25 M multiply-adds at 64 px, trainable on a CPU (the lung
  evaluation in ``benchmarks/`` uses it);
- ``resnet18`` / ``resnet34``: torchvision's ResNets (AIGVA's choice), for a GPU.

Every model has a final ``fc`` ``nn.Linear`` over the pooled features
(:func:`backbone_features`), so heads, calibration and out-of-distribution checks work alike.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import medvid
from medvid.ids import content_id
from medvid.io import write_bytes_atomic, write_json_atomic
from medvid.predict.data import DEFAULT_INPUT_SIZE
from medvid.predict.errors import ModelFileError

ARCHITECTURES = ("tiny", "small", "resnet18", "resnet34")
SIDECAR_FORMAT = "medvid.predict.model/1"
BACKBONE_FORMAT = "medvid.predict.backbone/1"
CONVNET_WIDTHS = {"tiny": (8, 16), "small": (16, 32, 64, 128)}


class ConvNet(nn.Module):
    """Stages of 3x3 convolutions (stride 2, then stride 1) with BatchNorm and ReLU, global
    average pooling of *every* stage, and a linear ``fc``:
    ``(B, 3, S, S) float32`` -> ``(B, num_classes)``.

    ``widths``: output channels of each stage; the pooled feature has ``sum(widths)`` values.
    Pooling every stage (multi-scale orderless pooling, Gong et al., ECCV 2014) hands the
    final layer texture statistics at every receptive-field size: speckle and pleural-line
    detail from the early stages, artefact patterns (A-/B-lines) from the late ones. On the
    lung evaluation it gave a linear head on a frozen backbone +0.04 frame accuracy and a
    third of the seed-to-seed spread of last-stage pooling (benchmarks/README.md).
    """

    def __init__(self, widths: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(sum(widths), num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index % 6 == 5:  # the end of a stage (conv, bn, relu, conv, bn, relu)
                pooled.append(torch.flatten(self.pool(x), 1))
        return torch.cat(pooled, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def backbone_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The pooled features the ``fc`` layer of ``model`` reads: ``(B, 3, S, S)`` ->
    ``(B, D) float32`` (``D`` = ``model.fc.in_features``). Works for :class:`ConvNet` and
    torchvision ResNets."""
    if isinstance(model, ConvNet):
        return model.forward_features(images)
    import torchvision  # noqa: PLC0415 (about 2 s: only the ResNet architectures need it)

    if isinstance(model, torchvision.models.ResNet):
        x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
        x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
        return torch.flatten(model.avgpool(x), 1)
    raise TypeError(f"no backbone features for a {type(model).__name__}")


def feature_size(model: nn.Module) -> int:
    """``D``, the number of pooled features the ``fc`` layer reads."""
    return int(model.fc.in_features)


@dataclass(frozen=True)
class ModelSpec:
    """What a classifier predicts and how it sees frames.

    Attributes:
        classes: label names in output order (logit ``i`` is ``classes[i]``).
        arch: one of :data:`ARCHITECTURES`: ``"resnet18"`` (default), ``"resnet34"`` (AIGVA's
            choice), ``"small"`` (CPU-trainable ConvNet) or ``"tiny"`` (tests).
        input_size: side of the square input, pixels (see :mod:`medvid.predict.data`).
        multilabel: sigmoid per class (several labels per frame) instead of a softmax.
    """

    classes: tuple[str, ...]
    arch: str = "resnet18"
    input_size: int = DEFAULT_INPUT_SIZE
    multilabel: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if len(self.classes) < 1 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct and non-empty, got {self.classes!r}")
        if self.input_size < 32:
            raise ValueError(f"input_size must be >= 32 pixels, got {self.input_size}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (inverse of :meth:`from_dict`)."""
        out = asdict(self)
        out["classes"] = list(self.classes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        return cls(
            classes=tuple(data["classes"]),
            arch=str(data.get("arch", "resnet18")),
            input_size=int(data.get("input_size", DEFAULT_INPUT_SIZE)),
            multilabel=bool(data.get("multilabel", False)),
        )


@dataclass
class LoadedModel:
    """A model read by :func:`load_model`: network (eval mode, CPU), spec, id and metadata."""

    model: nn.Module
    spec: ModelSpec
    model_id: str
    metadata: dict[str, Any]


def build_model(spec: ModelSpec, weights_path: str | Path | None = None) -> nn.Module:
    """The network of ``spec.arch`` with ``len(spec.classes)`` outputs.

    Without ``weights_path`` the weights are random (``weights=None``, seeded by the caller's
    ``torch.manual_seed``). With it, a ``state_dict`` file is loaded: a user's torchvision
    state dict, a model saved by :func:`save_model`, or a backbone saved by
    :func:`medvid.predict.pretrain.save_backbone` (no ``fc``; its sidecar must name the same
    architecture). When the file's ``fc`` has a different number of outputs, or none, the
    ``fc`` is kept freshly initialised and the rest loaded. Raises :class:`ModelFileError` when
    the file is missing, not a state dict, a backbone of another architecture, or does not fit.
    """
    if spec.arch in CONVNET_WIDTHS:
        model: nn.Module = ConvNet(CONVNET_WIDTHS[spec.arch], len(spec.classes))
    else:
        import torchvision  # noqa: PLC0415 (about 2 s: only the ResNet architectures need it)

        constructor = getattr(torchvision.models, spec.arch)
        model = constructor(weights=None, num_classes=len(spec.classes))
    if weights_path is None:
        return model
    _check_backbone_sidecar(weights_path, spec)
    state = _read_state_dict(weights_path)
    own = model.state_dict()
    fc_keys = [k for k in ("fc.weight", "fc.bias") if k in state]
    if any(state[k].shape != own[k].shape for k in fc_keys):
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ModelFileError(f"weights {weights_path} do not fit {spec.arch}: {exc}") from None
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    if missing or result.unexpected_keys:
        raise ModelFileError(
            f"weights {weights_path} do not fit {spec.arch}: missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}"
        )
    return model


def _check_backbone_sidecar(weights_path: str | Path, spec: ModelSpec) -> None:
    """A backbone sidecar beside the weights must name ``spec``'s architecture."""
    side = sidecar_path(weights_path)
    if not side.is_file():
        return
    try:
        sidecar = json.loads(side.read_text())
    except ValueError:
        return  # not ours: a user's JSON beside their weights
    if not isinstance(sidecar, dict) or sidecar.get("format") != BACKBONE_FORMAT:
        return
    if sidecar.get("arch") != spec.arch:
        raise ModelFileError(
            f"backbone {weights_path} is a {sidecar.get('arch')!r}, the model is a {spec.arch!r}"
        )


def _read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for bad files
        raise ModelFileError(f"weights file {path} cannot be read: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"weights file {path} does not hold a state_dict of tensors")
    return state


def model_fingerprint(model: nn.Module) -> str:
    """Content id (16 hex) of a model's weights: sha256 over names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return content_id(digest.hexdigest())


def sidecar_path(weights_path: str | Path) -> Path:
    """The JSON sidecar beside a weights file: ``model.pt`` -> ``model.json``."""
    return Path(weights_path).with_suffix(".json")


def state_dict_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    """``torch.save`` of ``state`` as bytes. Saved through memory, not a named file, because
    the zip archive inside a ``.pt`` is named after the file it is first written to (a
    temporary name here), which would make the same weights different bytes."""
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    return buffer.getvalue()


def save_model(
    model: nn.Module,
    spec: ModelSpec,
    path: str | Path,
    metadata: Mapping[str, Any] | None = None,
) -> str:
    """Write ``path`` (weights) and its JSON sidecar atomically; returns the ``model_id``.

    The same weights give the same ``.pt`` bytes whatever the file name.

    ``metadata`` is stored as given (JSON-serialisable: e.g. ``trained_on`` ``{video_id:
    frame count}``, ``metrics``); ``model_id``, ``spec``, ``format`` and ``medvid_version`` are
    added. The weights are written first, so a sidecar never describes missing weights.
    """
    model_id = model_fingerprint(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_bytes_atomic(path, state_dict_bytes(state))
    sidecar = {
        "format": SIDECAR_FORMAT,
        "model_id": model_id,
        "spec": spec.to_dict(),
        "medvid_version": medvid.__version__,
        "metadata": dict(metadata or {}),
    }
    write_json_atomic(sidecar_path(path), sidecar)
    return model_id


def load_model(path: str | Path) -> LoadedModel:
    """Read a model written by :func:`save_model` (weights + sidecar), in eval mode on CPU.

    Raises :class:`ModelFileError` when either file is missing or malformed, or when the weights
    do not match the sidecar's ``model_id``.
    """
    path = Path(path)
    side = sidecar_path(path)
    if not side.is_file():
        raise ModelFileError(f"model sidecar not found: {side}")
    try:
        sidecar = json.loads(side.read_text())
        spec = ModelSpec.from_dict(sidecar["spec"])
        expected_id = str(sidecar["model_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"model sidecar {side} is malformed: {exc}") from None
    model = build_model(spec)
    state = _read_state_dict(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"weights {path} do not match their sidecar spec: {exc}") from None
    model_id = model_fingerprint(model)
    if model_id != expected_id:
        raise ModelFileError(
            f"weights {path} have id {model_id}, sidecar says {expected_id} (files out of sync)"
        )
    model.eval()
    return LoadedModel(model=model, spec=spec, model_id=model_id, metadata=sidecar["metadata"])
