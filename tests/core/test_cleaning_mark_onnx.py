"""The mark finder's ONNX twin: the same probabilities and masks as the torch network (one pass
and tiled), the same ``image_marks`` table and PNG bytes, chosen without importing torch on a
CPU, refused when it is not the twin of the weights beside it, and exported byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from medvid.cleaning import render_marks
from medvid.cleaning.mark_net import (
    export_mark_net_onnx,
    load_mark_net,
    mark_probabilities,
    save_mark_net,
)
from medvid.cleaning.mark_onnx import (
    DEFAULT_WEIGHTS,
    load_mark_finder,
    load_onnx_mark_finder,
    onnx_twin_path,
)
from medvid.cleaning.marks_store import image_marks_table, read_image_marks
from medvid.ids import sha256_file
from medvid.predict.errors import ModelFileError
from medvid_resources import LocalMediaStore
from tests.core.conftest import decode_rgb
from tests.core.test_cleaning_image_marks import _put
from tests.core.test_cleaning_marks import HELD_OUT


@pytest.fixture(scope="module")
def frame(shared_data: Path) -> np.ndarray:
    return decode_rgb(shared_data / HELD_OUT, limit=1)[0]


@pytest.fixture(scope="module")
def marked(frame) -> np.ndarray:
    return render_marks(frame, np.random.default_rng(4), style="plus_yellow", caliper_pairs=2).image


@pytest.fixture(scope="module")
def torch_net():
    return load_mark_net()


@pytest.fixture(scope="module")
def onnx_finder():
    return load_onnx_mark_finder(threads=1)


def test_the_shipped_twin_is_the_shipped_weights(torch_net, onnx_finder) -> None:
    sidecar = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert onnx_finder.model_id == torch_net.model_id == sidecar["model_id"]
    assert sidecar["onnx"] == {
        "model_id": torch_net.model_id,
        "sha256": sha256_file(onnx_twin_path(DEFAULT_WEIGHTS)),
    }


@pytest.mark.parametrize("size", [None, (1500, 1100)], ids=["own size", "tiled 1500x1100"])
def test_onnx_gives_the_torch_probabilities_and_masks(torch_net, onnx_finder, marked, size):
    image = marked if size is None else cv2.resize(marked, size, interpolation=cv2.INTER_CUBIC)
    expected = mark_probabilities(torch_net.model, image, device="cpu")
    got = onnx_finder.probabilities(image)
    assert got.shape == expected.shape == (2, *image.shape[:2])
    assert np.abs(got - expected).max() < 1e-4
    assert np.array_equal(got >= 0.5, expected >= 0.5)
    assert (got[0] >= 0.5).sum() > 100  # the drawn marks are found, not an empty mask twice


def test_both_runtimes_write_the_same_table_and_pngs(tmp_path, torch_net, onnx_finder, frame):
    rows, tables = [], []
    for runtime, finder in (("torch", torch_net), ("onnx", onnx_finder)):
        store = LocalMediaStore(root=str(tmp_path / runtime))
        rng = np.random.default_rng(7)
        marked = render_marks(frame, rng, style="x_white", caliper_pairs=1).image
        stills = pd.DataFrame(
            [_put(store, "s1", "iclean", frame), _put(store, "s1", "imarked", marked)]
        )
        update = image_marks_table(store, stills, read_image_marks(store), finder, num_threads=1)
        tables.append(update.table.to_pylist())
        rows.append(
            {
                key: store.local_path(key).read_bytes()
                for row in update.table.to_pylist()
                for key in (row["mask_key"], row["inpainted_key"])
                if key
            }
        )
    assert tables[0] == tables[1]
    assert rows[0] == rows[1] and len(rows[0]) == 3  # two masks, one inpainted still


def test_on_a_cpu_the_finder_is_chosen_and_run_without_torch(frame) -> None:
    code = (
        "import sys, numpy as np\n"
        "from medvid.cleaning.mark_onnx import load_mark_finder\n"
        "chosen = load_mark_finder('auto', threads=1)\n"
        "chosen.finder.find(np.zeros((64, 96, 3), np.uint8))\n"
        "print(chosen.runtime, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    if "cuda" in out.stdout:
        pytest.skip("a GPU is present: torch or onnxruntime-cuda is the right choice here")
    assert out.stdout.split() == ["onnxruntime-cpu", "False"]


def _copy_weights(folder: Path) -> Path:
    for suffix in (".pt", ".json", ".onnx"):
        shutil.copyfile(DEFAULT_WEIGHTS.with_suffix(suffix), folder / f"mark_net{suffix}")
    return folder / "mark_net.pt"


def test_a_stale_or_missing_twin_falls_back_to_torch_and_says_so(tmp_path, torch_net) -> None:
    weights = _copy_weights(tmp_path)
    said: list[str] = []
    # new weights saved without a twin: the old .onnx stays beside them, the sidecar drops it
    save_mark_net(torch_net.model, weights, {"note": "retrained"}, onnx_twin=False)
    with pytest.raises(ModelFileError, match="no ONNX twin"):
        load_onnx_mark_finder(weights)
    chosen = load_mark_finder("cpu", weights=weights, log=said.append)
    assert chosen.runtime == "torch-cpu" and "running the weights on torch" in said[0]
    # a twin changed after export: its sha256 is not the sidecar's
    save_mark_net(torch_net.model, weights, {"note": "retrained"})
    assert load_onnx_mark_finder(weights).model_id == torch_net.model_id
    onnx_twin_path(weights).write_bytes(onnx_twin_path(weights).read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="not the twin"):
        load_onnx_mark_finder(weights)
    # a twin of other weights whose hash was written into the sidecar: the graph says so
    export_mark_net_onnx(torch_net.model, onnx_twin_path(weights), "0123456789abcdef")
    sidecar = json.loads(weights.with_suffix(".json").read_text())
    sidecar["onnx"]["sha256"] = sha256_file(onnx_twin_path(weights))
    weights.with_suffix(".json").write_text(json.dumps(sidecar))
    with pytest.raises(ModelFileError, match="carries model_id 0123456789abcdef"):
        load_onnx_mark_finder(weights)
    # a sidecar of another kind of model
    weights.with_suffix(".json").write_text(json.dumps({"format": "medvid.predict.model/1"}))
    with pytest.raises(ModelFileError, match="is not a medvid.cleaning.mark_net/1 sidecar"):
        load_onnx_mark_finder(weights)


def test_export_gives_the_same_bytes_and_the_model_id_inside(tmp_path, torch_net) -> None:
    first = export_mark_net_onnx(torch_net.model, tmp_path / "a.onnx", torch_net.model_id)
    second = export_mark_net_onnx(torch_net.model, tmp_path / "b.onnx", torch_net.model_id)
    assert first.read_bytes() == second.read_bytes()  # on one machine, byte for byte
    # The shipped twin: the same graph, and the same folded weights up to the last bits (the
    # export folds BatchNorm into the convolutions in float32, whose rounding follows the
    # CPU's vector instructions: a fresh clone on another host differed in the last bit).
    import onnx
    from onnx import numpy_helper

    fresh, shipped = onnx.load(first), onnx.load(onnx_twin_path(DEFAULT_WEIGHTS))
    assert [(n.op_type, list(n.input), list(n.output)) for n in fresh.graph.node] == [
        (n.op_type, list(n.input), list(n.output)) for n in shipped.graph.node
    ]
    assert [i.name for i in fresh.graph.initializer] == [i.name for i in shipped.graph.initializer]
    for a, b in zip(fresh.graph.initializer, shipped.graph.initializer, strict=True):
        np.testing.assert_allclose(
            numpy_helper.to_array(a), numpy_helper.to_array(b), rtol=1e-5, atol=1e-7
        )
    import onnxruntime as ort

    meta = ort.InferenceSession(str(first), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert meta.custom_metadata_map["model_id"] == torch_net.model_id
