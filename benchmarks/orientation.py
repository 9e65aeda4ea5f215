"""Benchmark probe orientation from weak labels on a synthetic set, held out by study.

Usage::

    python benchmarks/orientation.py [--studies 40] [--per-study 10] [--seeds 0 1 2]
                                     [--threads 1] [--report FILE]

No image in ``../shared/data`` carries orientation text (TRANS, LONG, SAG, RAD, ARAD, OBL):
the real stills and clips there give zero weak labels, so ``probe_orientation`` records "not
trained" on them. This benchmark therefore measures the *mechanism* on synthetic images
(:func:`medvid.cleaning.orientation.synthetic_probe_image`): a vessel cut across (``TRANS``,
a dark disc) or along (``LONG``, a dark band) in Rayleigh speckle, each study with its own
gain, 40 % TRANS. About half the images (``--text-fraction``) have the orientation burned in
as a scanner writes it ("LT BREAST TRANSVERSE"), read back through
:func:`medvid.ocr.parse.parse_annotation_text` (the OCR engine itself is not run: its
accuracy is measured in the dicom benchmark). It says nothing about clinical accuracy on real
breast ultrasound, where orientation shows in far subtler anatomy.

Reported per seed (the set, the head and the folds all follow the seed):

- ``held_out_study_accuracy``: out-of-fold accuracy of the model on the images whose text was
  read, grouped 3-fold by study (no study on both sides), beside ``majority_baseline`` on the
  same images (what the ``beats_majority_on_held_out_studies`` check compares);
- ``textless_accuracy``: accuracy of the predictions on the images without text (their true
  orientation is known here), beside the majority class of the weak labels on them;
- ``--shuffle-labels``: the weak labels permuted across images, a null control: the held-out
  accuracy must then fall to about the majority class, or the held-out number leaks;
- ``train_images_per_s`` (weak labels / training seconds: features, 3 folds, calibration,
  refit) and ``predict_images_per_s`` on the CPU with ``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medvid.cleaning.orientation import (
    OrientationConfig,
    predict_orientation,
    synthetic_probe_image,
    train_orientation_model,
)
from medvid.ocr.parse import parse_annotation_text
from medvid.predict import train as _engine  # noqa: F401 (torch imported before any timing)

WORD = {"TRANS": "TRANSVERSE", "LONG": "LONG"}


def synthetic_set(
    root: Path, studies: int, per_study: int, text_fraction: float, seed: int
) -> pd.DataFrame:
    """Write the images under ``root``; one item row per image with its true orientation."""
    rng = np.random.default_rng(seed)
    rows = []
    for study in range(studies):
        gain = float(rng.uniform(0.6, 1.4))
        for index in range(per_study):
            truth = "TRANS" if rng.random() < 0.4 else "LONG"
            text = f"LT BREAST {WORD[truth]}" if rng.random() < text_fraction else ""
            image = synthetic_probe_image(
                truth, seed * 1_000_003 + study * 1000 + index, gain=gain, text=text
            )
            path = f"study_{study}/image_{index}.png"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / path), image[..., ::-1])
            rows.append(
                {
                    "item_id": f"s{study}i{index}",
                    "kind": "image",
                    "study_id": f"study:{study}",
                    "relative_path": path,
                    "text_orientation": parse_annotation_text(text)["orientation"],
                    "truth": truth,
                }
            )
    return pd.DataFrame(rows)


def run(args: argparse.Namespace, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        items = synthetic_set(root, args.studies, args.per_study, args.text_fraction, seed)
        if args.shuffle_labels:  # a null control: weak labels unrelated to the pixels
            read = items["text_orientation"].notna()
            shuffled = np.random.default_rng(seed).permutation(items.loc[read, "text_orientation"])
            items.loc[read, "text_orientation"] = shuffled
        config = OrientationConfig(seed=seed, device="cpu", num_threads=args.threads)
        started = time.perf_counter()
        model = train_orientation_model(root, items, config)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        predictions = predict_orientation(
            root,
            items,
            model.model,
            model.spec,
            model.model_id,
            model.beats_majority,
            device="cpu",
        ).to_pandas()
        predict_seconds = time.perf_counter() - started
    textless = items[items["text_orientation"].isna()].set_index("item_id")
    read = items["text_orientation"].dropna()
    predicted = predictions.set_index("item_id")["orientation"].reindex(textless.index)
    return {
        "seed": seed,
        "weak_labels": model.weak_labels,
        "studies": model.studies,
        "held_out_study_accuracy": model.held_out_accuracy,
        "majority_baseline": model.majority_baseline,
        "beats_majority": model.beats_majority,
        "textless_images": len(textless),
        "textless_accuracy": float((predicted == textless["truth"]).mean()),
        "textless_majority": float((textless["truth"] == read.value_counts().idxmax()).mean()),
        "train_seconds": round(train_seconds, 2),
        "train_images_per_s": round(len(read) / train_seconds, 1),
        "predict_seconds": round(predict_seconds, 2),
        "predict_images_per_s": round(len(textless) / predict_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--per-study", type=int, default=10)
    parser.add_argument("--text-fraction", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--shuffle-labels",
        action="store_true",
        help="permute the weak labels across images (null control: held-out accuracy should"
        " fall to the majority class)",
    )
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = [run(args, seed) for seed in args.seeds]
    for row in rows:
        print(json.dumps(row))
    frame = pd.DataFrame(rows)
    summary = {
        "set": f"{args.studies} studies x {args.per_study} images, text on {args.text_fraction}"
        + (", weak labels shuffled" if args.shuffle_labels else ""),
        "held_out_study_accuracy": f"{frame.held_out_study_accuracy.mean():.3f}"
        f" ± {frame.held_out_study_accuracy.std():.3f}",
        "majority_baseline": f"{frame.majority_baseline.mean():.3f}",
        "textless_accuracy": f"{frame.textless_accuracy.mean():.3f}"
        f" ± {frame.textless_accuracy.std():.3f}",
        "textless_majority": f"{frame.textless_majority.mean():.3f}",
        "train_images_per_s": float(frame.train_images_per_s.median()),
        "predict_images_per_s": float(frame.predict_images_per_s.median()),
        "threads": args.threads,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(summary, indent=2))
    if args.report:
        args.report.write_text(json.dumps({"runs": rows, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
