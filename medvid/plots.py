"""Small plots for the Dagster UI's metadata, as PNG bytes (matplotlib, Agg backend)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def training_curve_png(history: Sequence[Mapping[str, float]]) -> bytes:
    """Train and validation loss (and validation accuracy) per epoch."""
    epochs = [int(h["epoch"]) for h in history]
    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    accuracy = [h["val_accuracy"] for h in history]
    if not all(np.isnan(accuracy)):
        twin = ax.twinx()
        twin.plot(epochs, accuracy, "s--", color="tab:green", label="validation accuracy")
        twin.set_ylim(0, 1)
        twin.set_ylabel("accuracy")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title("training curve")
    return _png(fig)


def confusion_matrix_png(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = "confusion matrix"
) -> bytes:
    """A confusion matrix (rows true, columns predicted) with the counts written in."""
    counts = np.asarray(matrix, dtype=int)
    size = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * size, 1.0 + 0.8 * size), dpi=80)
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(size), classes, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(size), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (row, column), value in np.ndenumerate(counts):
        ax.text(column, row, str(value), ha="center", va="center", fontsize=8)
    ax.set_title(title)
    return _png(fig)


def label_distribution_png(counts: Mapping[str, Mapping[str, int]]) -> bytes:
    """Bars of positive frames per label (``{label: {split: count}}``) and split."""
    frame = pd.DataFrame(counts).fillna(0).T
    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    frame.plot.bar(ax=ax)
    ax.set_ylabel("positive frames")
    ax.set_title("label distribution by split")
    return _png(fig)
