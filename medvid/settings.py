"""medvid's settings: one shape, in one file per home.

Every entry point reads the same settings: ``<home>/medvid.yaml`` (the *home config*), with the
sections below. The ``medvid`` command, the sensors and schedules, declarative automation and the
Dagster UI's launchpad all start from it; a run may override single fields (the Dagster ``Config``
classes are derived from these models, every field optional: unset means "as in medvid.yaml").
Each partition records the settings it was made with (:func:`fingerprint`).

::

    normalize: {max_duration_s: 240, clip_duration_s: 120}
    frames: {strategy: every_n, every_n: 10, image_format: jpg, jpeg_quality: 90}
    text: {detect_interval_s: 0.25, min_text_height_px: 8}
    redaction: {pad: 2, detect_field_of_view: true}
    labels: {label_ids: {healthy: 0, covid19: 1}, allow_new_labels: true}
    segments: {dry_run: false, reviewed: false}
    predict: {model: {strategy: blitz}, predicted_labels: {smoothing_window: 5}}
    cleaning: {duplicate_radius: 4, duplicates: representative, crop_to_field_of_view: true}
    export: {dataset_name: default, val_ratio: 0.2, seed: 0}

Unknown sections and keys are errors (:class:`SettingsError`), so a typo never passes silently.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SETTINGS_FILE = "medvid.yaml"


class SettingsError(ValueError):
    """The home config (or a ``--config`` file) is not valid; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NormalizeSettings(_Section):
    """How videos become H.264 MP4 (yuv420p, same fps and frame count as decoded).

    Videos longer than ``max_duration_s`` are split into clips of ``clip_duration_s``; every clip
    records its frame offset so frame numbers still refer to the original."""

    max_duration_s: float = Field(240.0, description="Videos longer than this (s) are split.")
    clip_duration_s: float = Field(120.0, description="Length of each clip (s) of a split video.")
    crf: int = Field(18, description="x264 constant rate factor (lower is better; 18 ~ lossless).")
    preset: str = Field("veryfast", description="x264 preset.")


class FrameSettings(_Section):
    """Which frames to keep and how to write them.

    ``strategy``: ``all`` | ``every_n`` | ``fps`` (``target_fps`` per second) | ``uniform_k``
    (that many, evenly spaced) | ``unique`` (a frame whose 64-bit pHash differs from the last
    kept one by at least ``unique_hamming`` bits). Dead frames are flagged, not dropped: black
    (mean below ``black_mean``), blank (above ``blank_mean``), uniform (std below
    ``uniform_std``), frozen (mean absolute difference below ``frozen_mean_abs_diff`` for
    ``frozen_min_duration_s`` or more); levels are 0..255. Disturbed frames: Laplacian variance
    below ``blur_laplacian_var``. Frames are written with burned-in text blacked out, as ``jpg``
    (``jpeg_quality``) or ``png``."""

    strategy: Literal["all", "every_n", "fps", "uniform_k", "unique"] = "every_n"
    every_n: int = 10
    target_fps: float = 1.0
    uniform_k: int = 16
    unique_hamming: int = 10
    image_format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = 90
    black_mean: float = 8.0
    blank_mean: float = 247.0
    uniform_std: float = 3.0
    frozen_mean_abs_diff: float = 0.5
    frozen_min_duration_s: float = 0.5
    blur_laplacian_var: float = 15.0

    def sampling(self):
        """The sampling part, as :class:`medvid.frames.sampling.SamplingConfig`."""
        from medvid.frames.sampling import SamplingConfig

        return SamplingConfig(
            strategy=self.strategy,
            every_n=self.every_n,
            target_fps=self.target_fps,
            uniform_k=self.uniform_k,
            unique_hamming=self.unique_hamming,
        )

    def thresholds(self):
        """The dead/disturbed thresholds, as :class:`medvid.frames.quality.QualityThresholds`."""
        from medvid.frames.quality import QualityThresholds

        return QualityThresholds(
            black_mean=self.black_mean,
            blank_mean=self.blank_mean,
            uniform_std=self.uniform_std,
            frozen_mean_abs_diff=self.frozen_mean_abs_diff,
            frozen_min_duration_s=self.frozen_min_duration_s,
            blur_laplacian_var=self.blur_laplacian_var,
        )


class TextSettings(_Section):
    """How a video's burned-in text is found before its frames are written
    (:func:`medvid.deid.scan_video_text`): text detection at every written frame and at least
    every ``detect_interval_s`` seconds (0.25 s: text on screen 0.5 s or more is seen twice),
    down to ``min_text_height_px`` pixels tall (enlarged for the detector), recognised once per
    track; ``min_confidence``: below it text is unreadable and masked; ``span_margin``: detection
    points each masked span is extended by on each side. The residual check then reads the
    written frames where text was seen (at most ``residual_text_frames``) and
    ``residual_random_frames`` others again, enlarged 2x, with rapidocr and tesseract; words it
    reads that match no PHI pattern are masked in every frame and the frames read again, at most
    ``residual_repair_rounds`` times (:func:`medvid.deid.residual.residual_check`)."""

    detect_interval_s: float = 0.25
    min_text_height_px: float = 8.0
    max_text_height_px: float = 64.0
    min_confidence: float = 0.5
    span_margin: int = 1
    residual_text_frames: int = 4
    residual_random_frames: int = 2
    residual_repair_rounds: int = 2


class RedactionSettings(_Section):
    """How burned-in text is blacked out. ``pad``: pixels around each text box.
    ``detect_field_of_view``: without a DICOM ultrasound region, find the image as the largest
    lit area (text outside it is masked). ``blank_outside_field_of_view``: also black out every
    pixel outside the region."""

    pad: int = 2
    detect_field_of_view: bool = True
    blank_outside_field_of_view: bool = False


class LabelSettings(_Section):
    """The project's label schema. ``label_ids``: ``{name: id}`` (distinct ids in
    0..2147483647), written in every label table, export and model; names match exactly.
    ``allow_new_labels``: a label first seen in a sheet gets the next free id (kept in
    ``tables/label_schema.json``); when false such a sheet is quarantined, naming the label.
    ``patient_attributes``: which patients-sheet columns are exported (names, birth dates and
    free text never are)."""

    label_ids: dict[str, int] = Field(default_factory=dict)
    allow_new_labels: bool = True
    patient_attributes: list[str] | None = Field(
        None,
        description="Patients-sheet columns exported besides the pseudonymised patient_id"
        " (unset: diagnosis-like clinical fields, medvid.deid.sheets.DEFAULT_ATTRIBUTES).",
    )

    @field_validator("label_ids")
    @classmethod
    def _safe_label_names(cls, value: dict[str, int]) -> dict[str, int]:
        from medvid.errors import SheetError
        from medvid.labels.sheets import validate_label_name

        for name in value:
            try:
                validate_label_name(name)
            except SheetError as error:
                raise ValueError(error.reason) from None
        return value


class SegmentSettings(_Section):
    """How segments sheets become frame labels. ``dry_run``: count, write nothing.
    ``reviewed``/``reviewer``: the segments were validated on the video, so their frame labels
    are ground truth (a reviews sheet does the same per video)."""

    dry_run: bool = False
    reviewed: bool = False
    reviewer: str = ""


class LabelModelSettings(_Section):
    """How the label model is trained (see ``medvid.predict.train``).

    strategy ``blitz`` (reviewed labels of every source, every ``blitz_skip``-th frame) or
    ``cold`` (the cold-label answers). labels: the classes in output order (default: every
    schema label with a positive training frame). multilabel: sigmoid outputs. arch: ``tiny``
    or ``small`` ConvNets, torchvision ``resnet18``/``resnet34``, from scratch, from the
    ``pretrained_backbone`` asset (``backbone: pretrained``) or from a local ``weights_path``
    state_dict. input_size (px). freeze_backbone: fit only the final layer on pooled features
    (a calibrated linear head, tuned by grouped k-fold over the labelled patients; single-label
    only, a multilabel model is always fine-tuned); false:
    fine-tune every layer (epochs, batch_size, lr with Adam, patience of early stopping on the
    held-out patients' loss, min_images_per_epoch, augmentation with ultrasound gain, gamma,
    speckle, depth cut, flips, rotations and shifts). class_balance: sampling weights ``class``
    (every class alike), ``class_video`` or ``none``. val_fraction: share of the *patients*
    held out for validation (a video without a patient in the patients sheet or a DICOM study
    is its own patient). seed: weights, split, sampler, augmentation. The defaults are the
    best setting of the lung evaluation (benchmarks/predict.py --evaluate: ``small`` at 64 px,
    frozen randomly initialised backbone, class-balanced head)."""

    strategy: Literal["blitz", "cold"] = "blitz"
    labels: list[str] = Field(default_factory=list)
    multilabel: bool = False
    arch: Literal["tiny", "small", "resnet18", "resnet34"] = "small"
    input_size: int = 64
    freeze_backbone: bool = True
    backbone: Literal["none", "pretrained"] = Field(
        "none",
        description="none: random initialisation (or weights_path); pretrained: the current"
        " SimCLR backbone of the pretrained_backbone asset.",
    )
    weights_path: str = ""
    augmentation: bool = True
    class_balance: Literal["class", "class_video", "none"] = "class"
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 3
    val_fraction: float = 0.2
    blitz_skip: int = 3
    min_images_per_epoch: int = 256
    seed: int = 0


class PredictedLabelsSettings(_Section):
    """How the current label model predicts a video: ``batch_size`` frames per forward pass,
    ``smoothing_window`` neighbouring frames averaged (0 = off), ``skip_training_videos``;
    ``min_confidence``: a frame whose calibrated top probability is below it is flagged
    ``low_confidence`` (unset: the model's own, 0.6; :mod:`medvid.predict.trust`)."""

    batch_size: int = 64
    smoothing_window: int = 0
    skip_training_videos: bool = True
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)


class CustomModelSettings(_Section):
    """A user's model: ``function`` = ``package.module:function`` taking ``(N, H, W, 3) uint8
    RGB`` frames and returning N label names and N confidences; ``model_id`` names the source
    ``model:<model_id>``; ``batch_size`` frames per call."""

    function: str = ""
    model_id: str = ""
    batch_size: int = 32


class PretrainSettings(_Section):
    """SimCLR pretraining of the ``pretrained_backbone`` asset on every live extracted frame
    (no labels used; :mod:`medvid.predict.pretrain`): the architecture and input size are the
    label model's (``predict.model``); ``epochs``, every ``frame_step``-th live frame of each
    video, ``batch_size`` frames per step (two views each), ``temporal_gap`` (0: both views of
    one frame; n: the second from a frame at most n rows away), ``seed``."""

    epochs: int = 10
    frame_step: int = 3
    batch_size: int = 128
    temporal_gap: int = 0
    seed: int = 0


class EvaluationSettings(_Section):
    """The ``label_prediction_evaluation`` asset
    (:func:`medvid.predict.evaluate.evaluate_by_patient`): grouped ``folds``-fold by patient
    over the project's reviewed labels, repeated for each of ``seeds``; cold label with
    ``k_values`` frames per training video chosen by ``selection_methods`` (``uniform``,
    ``active``); blitz label with ``blitz_fractions`` of the training videos (every
    ``blitz_skip``-th frame); ``arch`` at ``input_size`` px with a frozen backbone per
    ``backbones`` (``none``: random initialisation, ``simclr``: pretrained on each fold's
    training patients); test probabilities smoothed over ``smoothing_window`` frames.
    Defaults: the lung benchmark's settings with one seed, uniform selection only and no
    SimCLR (the benchmark also ran seeds 1 and 2, active selection and SimCLR)."""

    folds: int = 5
    seeds: list[int] = Field(default_factory=lambda: [0])
    k_values: list[int] = Field(default_factory=lambda: [1, 3, 5, 10])
    selection_methods: list[str] = Field(default_factory=lambda: ["uniform"])
    blitz_fractions: list[float] = Field(default_factory=lambda: [0.25, 0.5, 1.0])
    blitz_skip: int = 3
    arch: Literal["tiny", "small", "resnet18", "resnet34"] = "small"
    input_size: int = 64
    backbones: list[str] = Field(default_factory=lambda: ["none"])
    smoothing_window: int = 9

    @field_validator("selection_methods", "backbones")
    @classmethod
    def _known_choices(cls, value: list[str], info) -> list[str]:
        allowed = {"selection_methods": ("uniform", "active"), "backbones": ("none", "simclr")}
        unknown = [v for v in value if v not in allowed[info.field_name]]
        if unknown:
            raise ValueError(f"{unknown} not among {list(allowed[info.field_name])}")
        return value


class PredictSettings(_Section):
    """Present in the home config = medvid trains ``model`` once labels change and predicts
    every video (``predicted_labels``), and/or runs ``custom_model`` on every video."""

    model: LabelModelSettings | None = None
    predicted_labels: PredictedLabelsSettings = Field(default_factory=PredictedLabelsSettings)
    custom_model: CustomModelSettings | None = None
    pretrain: PretrainSettings = Field(default_factory=PretrainSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)


class ExportSettings(_Section):
    """The training dataset: ``exports/<dataset_name>/``. ``val_ratio`` of the frames go to
    validation, drawn by patient with ``seed``; ``imagefolder_skip`` keeps every k-th positive
    frame per video and label in ``imagefolder/``; ``include_dead``/``include_disturbed``
    export flagged frames; ``link_mode`` ``hardlink`` (falls back to copy) or ``copy``;
    predictions only when reviewed, unless ``include_predictions`` or their model ids are in
    ``prediction_model_ids``, and then only those not flagged by the model's trust checks
    unless ``include_untrusted_predictions`` (which also lets in probe orientations of a model
    that did not beat the majority class on held-out studies); ``phi_scan_ocr_images``
    exported images are read by OCR in the blocking PHI scan (every text file and table is read
    whole)."""

    dataset_name: str = "default"
    val_ratio: float = 0.2
    seed: int = 0
    imagefolder_skip: int = 1
    include_dead: bool = False
    include_disturbed: bool = True
    link_mode: Literal["hardlink", "copy"] = "hardlink"
    include_predictions: bool = False
    prediction_model_ids: list[str] = Field(default_factory=list)
    include_untrusted_predictions: bool = Field(
        False,
        description="Export unreviewed predictions that predicted_labels flagged (low"
        " confidence or out-of-distribution video) too, and probe orientations from a model"
        " that did not beat the majority class on held-out studies.",
    )
    phi_scan_ocr_images: int = Field(
        16, description="Exported images the blocking PHI scan reads by OCR (a seeded sample)."
    )


class OrientationSettings(_Section):
    """The probe-orientation model (``probe_orientation``, :mod:`medvid.cleaning.orientation`):
    the orientations OCR read on stills (and on frames, ``frames``) are weak labels for a head
    on a frozen ``arch`` backbone at ``input_size`` px, held out by study in ``folds`` folds;
    it is trained only with ``min_per_class`` weak labels for at least 2 orientations and
    ``min_studies`` studies (else "not trained", nothing predicted); ``batch_size`` images per
    forward pass when predicting; ``seed``: head and folds."""

    arch: Literal["tiny", "small", "resnet18", "resnet34"] = Field(
        "small", description="Frozen backbone (random weights) under the fitted head."
    )
    input_size: int = Field(64, ge=32, description="Square network input (px).")
    folds: int = Field(3, ge=2, description="Folds of the held-out-by-study accuracy.")
    min_studies: int = Field(3, ge=2, description="Fewer studies with weak labels: not trained.")
    min_per_class: int = Field(
        5, ge=1, description="Weak labels an orientation needs to be a class."
    )
    frames: bool = Field(
        True, description="Also use the frames OCR read (frame_ocr_text), each video a group."
    )
    batch_size: int = Field(64, ge=1, description="Images per forward pass when predicting.")
    seed: int = 0


class CleaningSettings(_Section):
    """Cleaned images (:mod:`medvid.cleaning`): duplicate groups over every de-identified still
    and frame, and what the export does with them.

    ``duplicate_radius``: bits two 64-bit pHashes may differ by to be near duplicates (0..32;
    4: an x264 re-encode at CRF 23-28 moves a frame by 0-4 bits, see
    :mod:`medvid.cleaning.dedup`). ``duplicates``: ``representative`` exports one item per
    duplicate group and patient, ``all`` exports every copy; either way a group never spans two
    splits. ``crop_to_field_of_view``: exported frames and stills are cropped to their imaging
    region (:mod:`medvid.cleaning.fov`: the DICOM ultrasound region, else detected), recorded as
    ``crop_x0, crop_y0, crop_x1, crop_y1`` in annotations.csv and images.csv. Filters before
    export: ``max_colour_fraction`` drops ultrasound stills (Modality US) with more coloured
    pixels inside their crop than this fraction (colour or power Doppler; null keeps them,
    :mod:`medvid.cleaning.filters`); ``min_width``/``min_height`` drop frames and stills smaller
    than this after the crop (pixels, 0: no limit). ``marks``: what the export does with stills
    where the ``image_marks`` asset found on-image marks (:mod:`medvid.export.image_marks`):
    ``keep`` them as stored (the default: the mark finder calls calipers on clean stills of
    other vendors, 2 of 2 real ones, so nothing is altered or dropped on its word),
    ``inpaint`` (export the inpainted still), ``clean_twin_or_inpaint`` (leave out a marked
    still whose clean caliper twin is exported, inpaint the others) or ``drop`` (leave out
    stills with calipers). ``orientation``: the probe-orientation model for images whose text
    names no orientation (:class:`OrientationSettings`); images.csv's ``orientation`` is the
    text's, else the prediction of a model that beat the majority class on held-out studies
    (any model's with ``export.include_untrusted_predictions``)."""

    duplicate_radius: int = Field(
        4, ge=0, le=32, description="pHash Hamming radius (bits) of near-duplicate images."
    )
    duplicates: Literal["representative", "all"] = Field(
        "representative",
        description="representative: one image per duplicate group and patient; all: every copy.",
    )
    crop_to_field_of_view: bool = Field(
        True, description="Crop exported frames and stills to their imaging region."
    )
    max_colour_fraction: float | None = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="Drop ultrasound stills with more coloured pixels than this (Doppler).",
    )
    min_width: int = Field(0, ge=0, description="Drop images narrower than this (px, cropped).")
    min_height: int = Field(0, ge=0, description="Drop images lower than this (px, cropped).")
    marks: Literal["keep", "inpaint", "clean_twin_or_inpaint", "drop"] = Field(
        "keep",
        description="Stills with on-image marks: keep (as stored), inpaint, clean_twin_or_inpaint"
        " (the clean caliper twin, else inpainted) or drop (stills with calipers).",
    )
    orientation: OrientationSettings = Field(default_factory=OrientationSettings)


class MedvidSettings(_Section):
    """The whole home config."""

    normalize: NormalizeSettings = Field(default_factory=NormalizeSettings)
    frames: FrameSettings = Field(default_factory=FrameSettings)
    text: TextSettings = Field(default_factory=TextSettings)
    redaction: RedactionSettings = Field(default_factory=RedactionSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)
    segments: SegmentSettings = Field(default_factory=SegmentSettings)
    predict: PredictSettings | None = None
    cleaning: CleaningSettings = Field(default_factory=CleaningSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)


SECTIONS: tuple[str, ...] = tuple(MedvidSettings.model_fields)


def parse_settings(data: Any, *, source: str = "settings") -> MedvidSettings:
    """Validate a mapping of sections. Raises :class:`SettingsError` naming the bad key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(f"{source}: expected a mapping of sections {list(SECTIONS)}")
    try:
        return MedvidSettings.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise SettingsError(f"{source}: {problems}") from None


def load_settings(path: str | Path) -> MedvidSettings:
    """The settings in a YAML file; defaults when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return MedvidSettings()
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SettingsError(f"{path}: not valid YAML ({error})") from None
    return parse_settings(data, source=str(path))


def dump_settings(settings: MedvidSettings) -> str:
    """The settings as YAML, only what differs from the defaults (what a person wrote)."""
    data = settings.model_dump(exclude_defaults=True, mode="json")
    return yaml.safe_dump(data, sort_keys=True) if data else "{}\n"


def deep_merge(base: dict, update: dict) -> dict:
    """``base`` with ``update``'s keys replacing it, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def with_overrides(section: BaseModel, overrides: dict) -> BaseModel:
    """``section`` with the explicitly given fields of ``overrides`` (None means unset)."""
    explicit = _drop_none(overrides)
    if not explicit:
        return section
    return type(section).model_validate(deep_merge(section.model_dump(), explicit))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def fingerprint(section: BaseModel | dict) -> str:
    """12 hex digits identifying settings: equal settings, equal fingerprint."""
    data = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def changed_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two settings dumps."""
    names = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names += changed_fields(a, b, f"{prefix}{key}.")
        elif a != b:
            names.append(f"{prefix}{key}")
    return names
