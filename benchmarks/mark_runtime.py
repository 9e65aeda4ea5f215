"""The mark finder on torch and on onnxruntime, side by side: seconds per still and the resident
memory of a process that only finds marks.

Usage::

    python benchmarks/mark_runtime.py [--stills N] [--threads 1] [--repeats 3] [--json FILE]

Stills: the first frame of each clip of ``../shared/data/videos`` (``samples/landing`` when
missing), 270x270 to 1280x960, with synthetic calipers (:func:`medvid.cleaning.render_marks`,
seed 0), plus each enlarged to 2x (tiled above 1024 pixels a side). Each runtime runs in its own
fresh interpreter, the two interleaved ``--repeats`` times (best of); a child reports its peak
resident set (``ru_maxrss``), the resident set after loading the finder, seconds per still
(finding and thresholding, after one warm-up still) and the masks' digest, which must be equal
between the runtimes. torch: :func:`medvid.cleaning.mark_net.load_mark_net` +
``find_marks``, what ``image_marks`` ran before; onnxruntime:
:func:`medvid.cleaning.mark_onnx.load_onnx_mark_finder`, what it runs on a CPU now.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import hashlib, json, resource, sys, time
import av, numpy as np
from medvid.cleaning.marks import render_marks
import cv2

runtime, threads, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def rss_mib():
    with open("/proc/self/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1]) / 1024

stills = []
for i, path in enumerate(paths):
    with av.open(path) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    rng = np.random.default_rng(i)
    marked = render_marks(frame, rng, style="plus_yellow", caliper_pairs=2).image
    stills += [marked, cv2.resize(marked, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)]
before = rss_mib()
if runtime == "torch":
    import torch
    torch.set_num_threads(threads)
    from medvid.cleaning.mark_net import load_mark_net
    finder = load_mark_net()
    find = lambda image: finder.find(image, device="cpu")
else:
    from medvid.cleaning.mark_onnx import load_onnx_mark_finder
    finder = load_onnx_mark_finder(threads=threads)
    find = finder.find
loaded = rss_mib()
find(stills[0])
digest = hashlib.sha256()
started = time.perf_counter()
for still in stills:
    result = find(still)
    digest.update(np.packbits(result.mask).tobytes() + np.packbits(result.caliper_mask).tobytes())
seconds = (time.perf_counter() - started) / len(stills)
print(json.dumps({
    "runtime": runtime,
    "stills": len(stills),
    "pixels": int(sum(s.shape[0] * s.shape[1] for s in stills)),
    "s_per_still": seconds,
    "rss_before_load_mib": before,
    "rss_after_load_mib": loaded,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "torch_imported": "torch" in sys.modules,
    "masks_sha256": digest.hexdigest(),
}))
"""


def clips(limit: int) -> list[str]:
    folder = REPO.parent / "shared" / "data" / "videos"
    if not folder.is_dir():
        folder = REPO / "samples" / "landing"
    found = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in {".mp4", ".avi", ".mov", ".mpeg"}
    )
    return [str(p) for p in found[:limit]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stills", type=int, default=8, help="clips to take a still from")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    paths = clips(args.stills)
    best: dict[str, dict] = {}
    for _ in range(args.repeats):
        for runtime in ("torch", "onnxruntime"):
            done = subprocess.run(
                [sys.executable, "-c", CHILD, runtime, str(args.threads), *paths],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if runtime not in best or result["s_per_still"] < best[runtime]["s_per_still"]:
                best[runtime] = result
    torch_run, onnx_run = best["torch"], best["onnxruntime"]
    same = torch_run["masks_sha256"] == onnx_run["masks_sha256"]
    print(
        f"{len(paths)} clips, {torch_run['stills']} stills ({torch_run['pixels'] / 1e6:.1f} Mpx), "
        f"{args.threads} thread(s), best of {args.repeats}; masks identical: {same}"
    )
    print("| | torch | onnxruntime | onnxruntime / torch |")
    print("|---|---:|---:|---:|")
    for key, label in (
        ("s_per_still", "seconds per still"),
        ("rss_after_load_mib", "resident after loading the finder, MiB"),
        ("peak_rss_mib", "peak resident set, MiB"),
    ):
        a, b = torch_run[key], onnx_run[key]
        print(f"| {label} | {a:.3f} | {b:.3f} | {b / a:.2f} |")
    print(f"| torch imported | {torch_run['torch_imported']} | {onnx_run['torch_imported']} | |")
    if args.json:
        args.json.write_text(json.dumps({"best": best, "masks_identical": same}, indent=2))
    if not same:
        raise SystemExit("the runtimes' masks differ")


if __name__ == "__main__":
    main()
