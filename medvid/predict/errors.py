"""Bad-input errors of the prediction stage (all :class:`medvid.errors.MedvidInputError`)."""

from __future__ import annotations

from medvid.errors import MedvidInputError


class ModelFileError(MedvidInputError):
    """A model weights file or its JSON sidecar is missing, unreadable or does not fit the spec."""


class CustomModelError(MedvidInputError):
    """A custom model callable cannot be imported, or returned labels/confidences of the wrong
    shape, range or vocabulary."""


class LabellingQueueError(MedvidInputError):
    """A cold-label queue file is malformed (missing columns, unknown frames or labels)."""


class TrainingDataError(MedvidInputError):
    """The frames given for training cannot train a classifier (none, unknown classes...)."""


class FrameReadError(MedvidInputError):
    """A frame image listed in a manifest is missing or cannot be decoded."""


class FrameSelectionError(MedvidInputError):
    """A manifest cannot be sampled for labelling (missing columns, bad ``phash``, bad K)."""
