"""Benchmark label prediction on this machine, and evaluate it on new patients.

Usage::

    .venv/bin/python benchmarks/predict.py                 # inference frames/s, training s/image
    .venv/bin/python benchmarks/predict.py --evaluate --skip-benchmark --report report.json

Speed: the five lung-ultrasound clips of ``../shared/data/videos`` (``covid19us_*``) go through
medvid's own path once (probe, normalization to H.264 clips, extraction of every frame to JPEG
with the frame manifest), cached under ``--work-dir``; then

- **inference**, end to end (JPEG read + resize + forward + frame-label table,
  :func:`medvid.predict.infer.predict_frames`, batches of 64) of ResNet18 at 128 px over every
  frame, as frames/s and as a ratio to the AIGVA tool's 8 frames/s on a laptop CPU (seed 003,
  section 5.2; target >= 25x); the forward pass alone and 224 px for context;
- **training**, seconds per image (forward + backward + step) of ResNet18 at 128 px, 2 epochs.

``--evaluate``: the 66 lung point-of-care ultrasound clips of ``../shared/data/lung``
(healthy, COVID-19, bacterial and viral pneumonia; class and patient group per clip from
``lung/MANIFEST.tsv``, the only place this script reads them) go through the same
normalization and extraction; a clip medvid quarantines is reported and left out. Every frame
gets its clip's class as a reviewed label, and
:func:`medvid.predict.evaluate.evaluate_by_patient` runs the grouped k-fold evaluation by
patient group: cold label with K frames per training video (uniform vs active selection),
blitz label with a share of the training videos, each with a randomly initialised backbone and
with a SimCLR backbone pretrained on the fold's training patients' frames, against the
majority-class baseline, over several seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medvid.errors import MedvidInputError  # noqa: E402
from medvid.frames.extract import extract_frames  # noqa: E402
from medvid.frames.sampling import SamplingConfig  # noqa: E402
from medvid.ids import content_id, sha256_file  # noqa: E402
from medvid.predict.evaluate import (  # noqa: E402
    EvaluationConfig,
    evaluate_by_patient,
    evaluation_markdown,
    truth_labels,
)
from medvid.predict.infer import (  # noqa: E402
    cpu_has_native_bf16,
    inference_model,
    predict_frames,
    resolve_precision,
    select_device,
)
from medvid.predict.model import ModelSpec, build_model  # noqa: E402
from medvid.predict.pretrain import PretrainConfig  # noqa: E402
from medvid.predict.train import TrainConfig, every_nth_frame, train_classifier  # noqa: E402
from medvid.video.normalize import normalize_video  # noqa: E402
from medvid.video.probe import probe_video  # noqa: E402

AIGVA_CPU_FPS = 8.0
TARGET_RATIO = 25.0
SHARED_DATA = Path(os.environ.get("MEDVID_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_VIDEOS = SHARED_DATA / "videos"
LUNG = SHARED_DATA / "lung"
#: Targets of the issue on grouped 5-fold lung evaluation.
TARGET_FRAME_ACCURACY, TARGET_MACRO_F1, TARGET_FEW_LABELS_SHARE = 0.80, 0.60, 0.97


def extract_video(video_path: Path, work_dir: Path) -> pd.DataFrame:
    """Normalize one video and extract every frame with medvid; return its frame manifest
    (plus ``file_name``). Cached: a video already extracted is read back."""
    video_id = content_id(sha256_file(video_path))
    cached = work_dir / "manifests" / f"{video_id}.parquet"
    if cached.exists():
        return pd.read_parquet(cached)
    info = probe_video(video_path)
    clips = normalize_video(video_path, work_dir / "normalized" / video_id, info)
    table = extract_frames(
        clips,
        video_id,
        work_dir / "frames",
        sampling=SamplingConfig(strategy="all"),
        total_frames=sum(c.frame_count for c in clips),
    )
    manifest = table.to_pandas().assign(file_name=video_path.name)
    cached.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_parquet(cached)
    return manifest


def speed_manifest(work_dir: Path) -> pd.DataFrame:
    """Every frame of the five ``covid19us_*`` clips via medvid's extractor (speed runs)."""
    paths = sorted(SHARED_VIDEOS.glob("covid19us_*"))
    if not paths:
        raise SystemExit(f"no covid19us_* clips in {SHARED_VIDEOS}")
    return pd.concat([extract_video(p, work_dir) for p in paths], ignore_index=True)


def lung_dataset(work_dir: Path) -> tuple[pd.DataFrame, dict, dict, dict]:
    """The lung clips of ``lung/MANIFEST.tsv`` through medvid's extraction.

    Returns ``(manifest, video_classes, patient_of_video, quarantined)``: the frame manifest
    (plus ``file_name``), ``{video_id: class}``, ``{video_id: patient_group}`` and
    ``{file: reason}`` for clips medvid refused.
    """
    sheet = pd.read_csv(LUNG / "MANIFEST.tsv", sep="\t", dtype=str)
    parts, classes, patients, quarantined = [], {}, {}, {}
    for row in sheet.to_dict("records"):
        try:
            manifest = extract_video(LUNG / row["file"], work_dir / "lung")
        except MedvidInputError as error:
            quarantined[row["file"]] = error.reason
            continue
        video_id = str(manifest["video_id"].iloc[0])
        classes[video_id], patients[video_id] = row["class"], row["patient_group"]
        parts.append(manifest)
    return pd.concat(parts, ignore_index=True), classes, patients, quarantined


def forward_fps(spec: ModelSpec, device: torch.device, precision: str, prepared: bool) -> float:
    """Best-of-3 frames/s of the forward pass alone on random input (no decode), batches of 64:
    the plain network, or the one medvid runs (:func:`inference_model`: BatchNorm folded,
    channels-last) in ``precision``."""
    model = build_model(spec).eval()
    model = inference_model(model, device) if prepared else model.to(device)
    x = torch.randn(64, 3, spec.input_size, spec.input_size, device=device)
    if prepared:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    )
    best = 0.0
    with torch.inference_mode(), autocast:
        model(x)  # warm-up
        for _ in range(3):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(4):
                model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = max(best, 4 * 64 / (time.perf_counter() - started))
    return best


def inference_fps(
    spec: ModelSpec,
    manifest: pd.DataFrame,
    frames_root: Path,
    device: torch.device,
    repeats: int,
    precision: str,
) -> float:
    """Best of ``repeats`` end-to-end frames/s of :func:`predict_frames` over the manifest."""
    torch.manual_seed(0)
    model = build_model(spec)
    run = dict(device=str(device), precision=precision)
    predict_frames(model, spec, frames_root, manifest.head(64), **run)  # warm-up
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        table = predict_frames(model, spec, frames_root, manifest, **run)
        best = max(best, len(manifest) / (time.perf_counter() - started))
        assert table.num_rows == len(manifest) * len(spec.classes)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/medvid-bench-predict"))
    parser.add_argument("--evaluate", action="store_true", help="run the evaluation too")
    parser.add_argument("--report", type=Path, help="write the evaluation report JSON here")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3, help="best of N inference passes")
    parser.add_argument("--skip-benchmark", action="store_true", help="only --evaluate")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3, 5, 10])
    parser.add_argument("--blitz", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--backbones", nargs="+", default=["none", "simclr"])
    parser.add_argument("--pretrain-epochs", type=int, default=PretrainConfig.epochs)
    parser.add_argument("--pretrain-step", type=int, default=PretrainConfig.frame_step)
    parser.add_argument(
        "--pretrain-scope", choices=["training_patients", "all_frames"], default="training_patients"
    )
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--arch", default="small")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device("auto")
    print(f"device {device}, torch threads {torch.get_num_threads()}, torch {torch.__version__}")

    if not args.skip_benchmark:
        started = time.perf_counter()
        manifest = speed_manifest(args.work_dir)
        frames_root = args.work_dir / "frames"
        classes = ("a", "b", "c")
        print(
            f"frames: {len(manifest)} from {manifest['video_id'].nunique()} videos, extracted by"
            f" medvid ({time.perf_counter() - started:.1f} s, cached after the first run)"
        )
        default = ModelSpec(classes=classes)
        auto = resolve_precision("auto", device)
        print(
            f"precision auto -> {auto} on this {device.type} (native bf16: {cpu_has_native_bf16()})"
        )
        for spec in (default, ModelSpec(classes=classes, input_size=224)):
            label = f"{spec.arch}@{spec.input_size}" + (" (default)" if spec == default else "")
            plain = forward_fps(spec, device, "fp32", prepared=False)
            ready = forward_fps(spec, device, auto, prepared=True)
            print(
                f"forward pass only, {label}: plain fp32 {plain:.0f} frames/s, as medvid runs it"
                f" ({auto}, BatchNorm folded, channels-last) {ready:.0f} frames/s"
            )
            for precision in dict.fromkeys([auto, "fp32"]):
                fps = inference_fps(spec, manifest, frames_root, device, args.repeats, precision)
                ratio = fps / AIGVA_CPU_FPS
                print(
                    f"inference {label} {precision}, JPEG read + resize + forward,"
                    f" {len(manifest)} frames: {fps:.0f} frames/s = {ratio:.1f}x the"
                    f" {AIGVA_CPU_FPS:.0f} frames/s reference (target >= {TARGET_RATIO:.0f}x:"
                    f" {'met' if ratio >= TARGET_RATIO else 'not met'})"
                )
        video_index = {v: i for i, v in enumerate(sorted(manifest["video_id"].unique()))}
        truth = [classes[video_index[v] % len(classes)] for v in manifest["video_id"]]
        items = manifest.assign(label_name=truth)
        items = every_nth_frame(items, 3)
        result = train_classifier(
            frames_root, items, None, default, TrainConfig(epochs=2, batch_size=32)
        )
        print(
            f"training {default.arch}@{default.input_size} (default): "
            f"{result.seconds_per_image:.4f} s per image ({len(items)} images x 2 epochs, the"
            f" first epoch includes JPEG decode)"
        )

    if args.evaluate:
        evaluate(args)


def evaluate(args: argparse.Namespace) -> None:
    """The grouped k-fold lung evaluation; prints the Markdown report and the targets."""
    started = time.perf_counter()
    manifest, video_classes, patient_of_video, quarantined = lung_dataset(args.work_dir)
    print(
        f"lung: {len(manifest)} frames of {len(video_classes)} clips,"
        f" {len(set(patient_of_video.values()))} patient groups"
        f" ({time.perf_counter() - started:.0f} s, cached after the first run)"
    )
    for file, reason in quarantined.items():
        print(f"quarantined by medvid, left out: {file}: {reason}")
    config = EvaluationConfig(
        folds=args.folds,
        seeds=tuple(args.seeds),
        k_values=tuple(args.k),
        blitz_fractions=tuple(args.blitz),
        arch=args.arch,
        input_size=args.input_size,
        backbones=tuple(args.backbones),
        pretrain=dataclasses.replace(
            PretrainConfig(),
            epochs=args.pretrain_epochs,
            frame_step=args.pretrain_step,
            num_threads=args.threads,
        ),
        pretrain_scope=args.pretrain_scope,
    )
    report = evaluate_by_patient(
        manifest,
        args.work_dir / "lung" / "frames",
        truth_labels(manifest, video_classes),
        patient_of_video,
        config,
        log=lambda line: print(f"  [{time.perf_counter() - started:5.0f} s] {line}", flush=True),
    )
    report["quarantined"] = quarantined
    report["machine"] = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    print(f"\nevaluation ({report['seconds']:.0f} s):\n")
    print(evaluation_markdown(report))
    full = [
        r for r in report["results"] if r["method"] == "blitz" and r["budget"] == "100% of videos"
    ]
    for row in full:
        few = [
            r
            for r in report["results"]
            if r["backbone"] == row["backbone"]
            and r["method"] == "cold"
            and int(r["budget"].removeprefix("K=")) <= 5
        ]
        best_few = max(few, key=lambda r: r["frame_accuracy"]) if few else None
        share = best_few["frame_accuracy"] / row["frame_accuracy"] if best_few else float("nan")
        print(
            f"targets, backbone {row['backbone']}: frame accuracy {row['frame_accuracy']:.3f}"
            f" (>= {TARGET_FRAME_ACCURACY}: {row['frame_accuracy'] >= TARGET_FRAME_ACCURACY}),"
            f" macro F1 {row['macro_f1']:.3f} (>= {TARGET_MACRO_F1}:"
            f" {row['macro_f1'] >= TARGET_MACRO_F1}), baseline"
            f" {report['baseline']['frame_accuracy']:.3f}; best with <= 5 frames per video"
            f" {best_few and best_few['selection']} {best_few and best_few['budget']}:"
            f" {share:.1%} of it (>= {TARGET_FEW_LABELS_SHARE:.0%}:"
            f" {share >= TARGET_FEW_LABELS_SHARE})"
        )
    if args.report:
        args.report.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
