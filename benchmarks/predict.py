"""Benchmark label prediction on this machine, and optionally run the lung-ultrasound evaluation.

Usage::

    .venv/bin/python benchmarks/predict.py                 # inference frames/s, training s/image
    .venv/bin/python benchmarks/predict.py --evaluate      # also the cold/blitz evaluation
    .venv/bin/python benchmarks/predict.py --evaluate --report report.json

The lung-ultrasound clips of ``../shared/data/videos`` (``covid19us_*``, labelled by file name:
``Reg`` healthy, ``Cov`` COVID-19, ``Vir`` viral pneumonia) go through medvid's own path once:
probe, normalization to H.264 clips (:func:`medvid.video.normalize.normalize_video`) and frame
extraction of every frame to JPEG with the frame manifest
(:func:`medvid.frames.extract.extract_frames`), cached under ``--work-dir``.

Measured:

- **inference**, end to end (JPEG read + resize + forward + frame-label table,
  :func:`medvid.predict.infer.predict_frames`, batches of 64) of the default model (ResNet18 at
  128 px, :class:`medvid.predict.model.ModelSpec` defaults) over every frame, as frames/s and as a
  ratio to the reference: the AIGVA tool predicted about 8 frames/s on a laptop CPU (seed 003,
  section 5.2); the target is >= 25x (>= 200 frames/s). The forward pass alone and 224 px are
  shown for context. ``precision="auto"`` runs bfloat16 where the CPU computes it natively
  (AVX512-BF16/AMX); the fp32 numbers are printed beside it.
- **training**, seconds per image (forward + backward + step, JPEG decode of the first epoch
  included) of the default model on every 3rd frame, 2 epochs.
- ``--evaluate``: :func:`medvid.predict.evaluate.evaluate_on_videos`: blitz label leave one video
  out, cold label with K = 1, 3, 5 frames per video, and the same classifier trained on all
  videos; frame accuracy, macro F1 and the fraction of frames a person labelled.
"""

from __future__ import annotations

import argparse
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

from medvid.frames.extract import extract_frames  # noqa: E402
from medvid.frames.sampling import SamplingConfig  # noqa: E402
from medvid.ids import content_id, sha256_file  # noqa: E402
from medvid.predict.evaluate import (  # noqa: E402
    evaluate_on_videos,
    evaluation_markdown,
    lung_ultrasound_class,
)
from medvid.predict.infer import (  # noqa: E402
    cpu_has_native_bf16,
    inference_model,
    predict_frames,
    resolve_precision,
    select_device,
)
from medvid.predict.model import ModelSpec, build_model  # noqa: E402
from medvid.predict.train import TrainConfig, every_nth_frame, train_classifier  # noqa: E402
from medvid.video.normalize import normalize_video  # noqa: E402
from medvid.video.probe import probe_video  # noqa: E402

AIGVA_CPU_FPS = 8.0
TARGET_RATIO = 25.0
SHARED_VIDEOS = (
    Path(os.environ.get("MEDVID_SHARED_DATA", REPO.parent / "shared" / "data")) / "videos"
)


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


def lung_manifest(work_dir: Path) -> pd.DataFrame:
    """Every frame of every lung-ultrasound clip (``covid19us_*``) via medvid's extractor."""
    paths = sorted(SHARED_VIDEOS.glob("covid19us_*"))
    if not paths:
        raise SystemExit(f"no covid19us_* clips in {SHARED_VIDEOS}")
    return pd.concat([extract_video(p, work_dir) for p in paths], ignore_index=True)


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device("auto")
    print(f"device {device}, torch threads {torch.get_num_threads()}, torch {torch.__version__}")

    started = time.perf_counter()
    manifest = lung_manifest(args.work_dir)
    frames_root = args.work_dir / "frames"
    classes = tuple(sorted({lung_ultrasound_class(n) for n in manifest["file_name"]}))
    print(
        f"frames: {len(manifest)} from {manifest['video_id'].nunique()} videos, extracted by"
        f" medvid ({time.perf_counter() - started:.1f} s, cached after the first run)"
    )

    if not args.skip_benchmark:
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
        truth = [lung_ultrasound_class(n) for n in manifest["file_name"]]
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
        video_classes = {
            v: lung_ultrasound_class(name)
            for v, name in manifest[["video_id", "file_name"]]
            .drop_duplicates()
            .itertuples(index=False)
        }
        started = time.perf_counter()
        report = evaluate_on_videos(manifest, frames_root, video_classes)
        report["seconds"] = time.perf_counter() - started
        names = dict(manifest[["video_id", "file_name"]].drop_duplicates().values)
        for video in report["videos"]:
            video["file_name"] = names[video["video_id"]]
        print(f"\nevaluation ({report['seconds']:.0f} s):\n")
        for video in report["videos"]:
            print(f"- {video['file_name']}: {video['class']}, {video['frames']} frames")
        print()
        print(evaluation_markdown(report))
        if args.report:
            args.report.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
