"""Small plots for the Dagster UI's metadata, as PNG bytes (matplotlib figures drawn by its
Agg renderer, without pyplot's global state).

matplotlib is imported on the first plot, not with this module: it is about 30 MiB resident,
and most runs (intake, OCR, frames) draw nothing."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


def _subplots(figsize: tuple[float, float], dpi: int = 80):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots()


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def training_curve_png(history: Sequence[Mapping[str, float]]) -> bytes:
    """Train and validation loss (and validation accuracy) per epoch."""
    epochs = [int(h["epoch"]) for h in history]
    fig, ax = _subplots((5, 3))
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
    fig, ax = _subplots((1.2 + 0.8 * size, 1.0 + 0.8 * size))
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
    fig, ax = _subplots((6, 3))
    frame.plot.bar(ax=ax)
    ax.set_ylabel("positive frames")
    ax.set_title("label distribution by split")
    return _png(fig)


def labelling_cost_curve_png(
    rows: Sequence[Mapping[str, object]], baseline: float | None = None
) -> bytes:
    """Frame accuracy on new patients against the share of training frames a person labelled:
    one line per backbone, method and selection (``rows`` of
    :func:`medvid.predict.evaluate.evaluate_by_patient`'s ``results``), error bars the standard
    deviation over seeds, the majority-class baseline as a dashed line."""
    frame = pd.DataFrame(list(rows))
    fig, ax = _subplots((6, 3.5))
    if len(frame):
        for (backbone, method, selection), group in frame.groupby(
            ["backbone", "method", "selection"], sort=True
        ):
            group = group.sort_values("labelled_fraction")
            name = f"cold, {selection}" if method == "cold" else "blitz"
            ax.errorbar(
                group["labelled_fraction"] * 100,
                group["frame_accuracy"],
                yerr=group.get("frame_accuracy_sd"),
                marker="o",
                capsize=3,
                label=f"{name} ({backbone})",
            )
    if baseline is not None:
        ax.axhline(baseline, linestyle="--", color="grey", label="majority class")
    ax.set_xscale("log")
    ax.set_xlabel("training frames labelled (%)")
    ax.set_ylabel("frame accuracy, new patients")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("labelling-cost curve")
    return _png(fig)
