"""Benchmark the mark finder and the inpainting of marks on held-out real frames.

Usage::

    python benchmarks/cleaning.py --train   # retrain the shipped weights (CPU, 1 thread, ~11 min)
    python benchmarks/cleaning.py [--weights FILE] [--frames-per-clip 3] [--report FILE]

Frames: clean real frames decoded with PyAV from ``../shared/data/lung`` (66 lung POCUS clips
with patient groups). Patient groups are split once, seeded (seed 0): a quarter of the groups
are held out and never trained on. Frames with saturated yellow/green/cyan pixels of their own
(colour Doppler, vendor overlays) are skipped. Held out as well, from other machines and
another modality: ``videos/itkpocus_clarius-ocular-short.mp4`` (1280x960 ocular phantom) and
``videos/rvimlab_endo.mp4`` (1280x720 laparoscopy). ``videos/covid19us_*`` are copies of lung
clips and the SonoSite clip has real calipers: neither is used.

Mark finding (held-out frames with synthetic marks, :func:`medvid.cleaning.render_marks`,
seed 1): pixel IoU / precision / recall of the mark mask (pooled over frames) and
``has_calipers`` accuracy of :func:`medvid.cleaning.find_marks` beside the colour-threshold
baseline :func:`medvid.cleaning.colour_marks` (``has_calipers`` = at least 20 pixels).

Inpainting (the same frames, the true mark mask): PSNR and MAE inside the mask against the
clean original for OpenCV Telea, Navier-Stokes and a mean fill, at full resolution and after
a resize to 256x256 and back (what the seed's tool does); also the PSNR of the whole frame
when the 256-pixel round trip is kept whole, as that tool does.

Twins (the same held-out frames): a frame and the same frame with marks, both stored as JPEG
(quality 80), must be found as one twin pair with the right one marked; a frame and the
clip's next frame must not be (false twins).

Real checks: ``has_calipers`` on real images with real calipers (OBXXXX1A, the Philips echo
DICOM, the SonoSite clip's first frame, the Interson capture with D1/D2) and without
(the Interson capture before measuring, the Clarius still).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import av
import numpy as np
import pandas as pd
import torch

from medvid.cleaning.inpaint import INPAINT_METHODS, inpaint
from medvid.cleaning.mark_net import (
    DEFAULT_WEIGHTS,
    TrainConfig,
    find_marks,
    load_mark_net,
    save_mark_net,
    train_mark_net,
)
from medvid.cleaning.marks import colour_marks, render_marks
from medvid.cleaning.twins import find_twins, twin_difference

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
OTHER_HELD_OUT = ("itkpocus_clarius-ocular-short.mp4", "rvimlab_endo.mp4")


def patient_split(manifest: pd.DataFrame, seed: int = 0, held_out: float = 0.25):
    """(training files, held-out files) of the lung manifest, split by ``patient_group``."""
    groups = sorted(manifest["patient_group"].unique())
    rng = np.random.default_rng(seed)
    rng.shuffle(groups)
    test_groups = set(groups[: int(round(held_out * len(groups)))])
    test = manifest["patient_group"].isin(test_groups)
    return list(manifest.loc[~test, "file"]), list(manifest.loc[test, "file"])


def clean_frames(path: Path, count: int, neighbours: bool = False) -> list[np.ndarray]:
    """``count`` frames spread evenly over a clip, ``(H, W, 3) uint8`` RGB, skipping frames
    with saturated coloured pixels (over 1 in 10,000) and near-black frames. ``neighbours``:
    each picked frame's next frame instead (for the false-twin count)."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if len(frames) < 2:
        return []
    # Interior points of 0..n-1: never the last frame, so every pick has a next frame.
    picks = np.linspace(0, len(frames) - 1, count + 2)[1:-1].round().astype(int)
    kept = []
    for index in picks:
        frame = frames[int(index)]
        if colour_marks(frame).mean() > 1e-4 or frame.mean() < 8 or min(frame.shape[:2]) < 96:
            continue
        kept.append(np.ascontiguousarray(frames[int(index) + 1] if neighbours else frame))
    return kept


def load_frames(
    files, folder: Path, per_clip: int, neighbours: bool = False
) -> list[tuple[str, np.ndarray]]:
    out = []
    for name in files:
        for frame in clean_frames(folder / name, per_clip, neighbours):
            out.append((name, frame))
    return out


def train(args) -> None:
    manifest = pd.read_csv(DATA / "lung" / "MANIFEST.tsv", sep="\t")
    train_files, _ = patient_split(manifest)
    frames = [f for _, f in load_frames(train_files, DATA / "lung", args.train_frames_per_clip)]
    print(f"{len(frames)} training frames from {len(train_files)} clips", flush=True)
    torch.set_num_threads(args.threads)
    config = TrainConfig(steps=args.steps, seed=args.seed)
    model, metadata = train_mark_net(
        frames, config, device="cpu", log=lambda line: print(line, flush=True)
    )
    seconds = metadata.pop("seconds")  # kept out of the sidecar: a rerun writes the same bytes
    metadata["training_clips"] = sorted(train_files)
    metadata["command"] = "python benchmarks/cleaning.py --train"
    model_id = save_mark_net(model, args.weights, metadata)
    size = Path(args.weights).stat().st_size
    print(f"saved {args.weights} ({size} bytes), model_id {model_id}, {seconds} s")


def _pixel_scores(truth: np.ndarray, found: np.ndarray) -> dict[str, float]:
    tp = float((truth & found).sum())
    fp = float((~truth & found).sum())
    fn = float((truth & ~found).sum())
    return {
        "iou": tp / max(tp + fp + fn, 1),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
    }


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def evaluate(args) -> dict:
    manifest = pd.read_csv(DATA / "lung" / "MANIFEST.tsv", sep="\t")
    _, test_files = patient_split(manifest)
    held_out = {
        "lung (held-out patients)": load_frames(test_files, DATA / "lung", args.frames_per_clip),
        "other machines": load_frames(OTHER_HELD_OUT, DATA / "videos", args.frames_per_clip),
    }
    nexts = {
        "lung (held-out patients)": load_frames(
            test_files, DATA / "lung", args.frames_per_clip, True
        ),
        "other machines": load_frames(OTHER_HELD_OUT, DATA / "videos", args.frames_per_clip, True),
    }
    torch.set_num_threads(args.threads)
    loaded = load_mark_net(args.weights)
    report: dict = {"model_id": loaded.model_id, "weights": str(args.weights), "sets": {}}
    rng = np.random.default_rng(1)
    for set_name, frames in held_out.items():
        truth_all, net_all, base_all, white = [], [], [], []
        calls = {"net": [], "baseline": [], "truth": []}
        inpainting: dict[str, list] = {}
        seconds = []
        for _, frame in frames:
            rendered = render_marks(frame, rng)
            started = time.perf_counter()
            finding = find_marks(rendered.image, loaded.model, device=args.device)
            seconds.append(time.perf_counter() - started)
            baseline = colour_marks(rendered.image)
            white.append(len(set(rendered.colour)) == 1)
            truth_all.append(rendered.mask.ravel())
            net_all.append(finding.mask.ravel())
            base_all.append(baseline.ravel())
            calls["truth"].append(rendered.has_calipers)
            calls["net"].append(finding.has_calipers)
            calls["baseline"].append(int(baseline.sum()) >= 20)
            if not rendered.mask.any():
                continue
            for method in INPAINT_METHODS:
                for size in (None, 256):
                    filled = inpaint(rendered.image, rendered.mask, method=method, work_size=size)
                    inside = rendered.mask
                    diff = filled[inside].astype(float) - frame[inside].astype(float)
                    row = inpainting.setdefault(f"{method}@{size or 'full'}", [])
                    row.append((np.abs(diff).mean(), _psnr(filled[inside], frame[inside])))
        twins_found, twins_marked = 0, 0
        for _, frame in frames:
            rendered = render_marks(frame, rng, caliper_pairs=1)
            pair = {"clean": _jpeg(frame), "marked": _jpeg(rendered.image)}
            found = find_twins(pair)
            twins_found += len(found) == 1
            twins_marked += len(found) == 1 and found[0].marked_id == "marked"
        false_twins = sum(
            twin_difference(a, b) is not None
            for (_, a), (_, b) in zip(frames, nexts[set_name], strict=True)
        )
        truth, net, base = (np.concatenate(x) for x in (truth_all, net_all, base_all))
        by_colour = {}
        for label, pick in (("white", True), ("coloured", False)):
            rows = [i for i, w in enumerate(white) if w == pick]
            if rows:
                t = np.concatenate([truth_all[i] for i in rows])
                by_colour[label] = {
                    "frames": len(rows),
                    "net_iou": _pixel_scores(t, np.concatenate([net_all[i] for i in rows]))["iou"],
                    "baseline_iou": _pixel_scores(t, np.concatenate([base_all[i] for i in rows]))[
                        "iou"
                    ],
                }
        has = np.array(calls["truth"])
        report["sets"][set_name] = {
            "frames": len(frames),
            "clips": len({name for name, _ in frames}),
            "sizes": sorted({f"{f.shape[1]}x{f.shape[0]}" for _, f in frames}),
            "with_calipers": int(has.sum()),
            "net": _pixel_scores(truth, net)
            | {"has_calipers_accuracy": float(np.mean(np.array(calls["net"]) == has))},
            "baseline": _pixel_scores(truth, base)
            | {"has_calipers_accuracy": float(np.mean(np.array(calls["baseline"]) == has))},
            "by_colour": by_colour,
            "find_marks_seconds_per_frame": float(np.mean(seconds)),
            "inpainting": {
                key: {
                    "mae": float(np.mean([r[0] for r in rows])),
                    "psnr": float(np.mean([r[1] for r in rows])),
                }
                for key, rows in inpainting.items()
            },
            "twins": {
                "synthetic_pairs": len(frames),
                "found": twins_found,
                "marked_one_right": twins_marked,
                "next_frame_pairs": len(frames),
                "false_twins": int(false_twins),
            },
            "whole_frame_psnr_256_round_trip": float(
                np.mean([_psnr(_round_trip(f), f) for _, f in frames])
            ),
        }
    report["real"] = real_checks(loaded.model, args.device)
    return report


def _jpeg(image: np.ndarray, quality: int = 80) -> np.ndarray:
    import cv2

    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]


def _round_trip(frame: np.ndarray, size: int = 256) -> np.ndarray:
    import cv2

    small = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, frame.shape[1::-1], interpolation=cv2.INTER_LINEAR)


def real_checks(model, device) -> list[dict]:
    from medvid.dicom import read_frame
    from medvid.images import read_rgb

    items = [
        ("dicom/OBXXXX1A.dcm", True),
        ("dicom/JPGLosslessP14SV1_1s_1f_8b.dcm", True),
        ("videos/itkpocus_sonosite-anon-eye1-video.mp4", True),
        ("images/itkpocus_interson-image-annotation.jpg", True),
        ("images/itkpocus_interson-image.jpg", False),
        ("images/itkpocus_clarius-ocular-image.png", False),
    ]
    out = []
    for name, truth in items:
        path = DATA / name
        if name.startswith("dicom/"):
            image = read_frame(path)
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            image = _to_uint8(image)
        elif name.startswith("videos/"):
            with av.open(str(path)) as container:
                image = next(container.decode(video=0)).to_ndarray(format="rgb24")
        else:
            image = read_rgb(path)
        finding = find_marks(image, model, device=device)
        out.append(
            {
                "image": name,
                "size": f"{image.shape[1]}x{image.shape[0]}",
                "has_calipers_truth": truth,
                "net": finding.has_calipers,
                "net_caliper_pixels": finding.caliper_pixels,
                "baseline": int(colour_marks(image).sum()) >= 20,
            }
        )
    return out


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    low, high = float(image.min()), float(image.max())
    return ((image - low) / max(high - low, 1) * 255).round().astype(np.uint8)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="retrain and save the weights")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for training (1: fastest on shared cores)",
    )
    parser.add_argument("--train-frames-per-clip", type=int, default=4)
    parser.add_argument("--frames-per-clip", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--report", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.train:
        train(args)
        return 0
    report = evaluate(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        args.report.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
