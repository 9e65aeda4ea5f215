"""The cleaning stage through ``medvid run``: duplicate groups over real stills and frames, and
what the export does with them (one image per copy, a group never in two splits).

One home for the module: OBXXXX1A and its RLE copy (same pixels), the H1N1 clip and a copy of it
re-encoded by PyAV (x264 CRF 23), a labels sheet for both clips. Later steps add a patients sheet
that files the copy under another patient, then ask for every copy.
"""

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.images import read_rgb
from tests.stages.conftest import MP4, Home
from tests.stages.label_pipeline import LIGHT_TEXT

COPY = "h1n1_reencoded.mp4"
SALT = "test-salt-not-a-secret"
SETTINGS = (
    "labels: {label_ids: {viral: 0}}\nexport: {val_ratio: 0.5, phi_scan_ocr_images: 2}\n"
    + f"text: {json.dumps(LIGHT_TEXT)}\n"  # not a PHI test: see LIGHT_TEXT
)
LABELS = f"video,start_s,end_s,label\n{MP4},0,100,viral\n{COPY},0,100,viral\n"


def reencode(source: Path, target: Path, crf: int = 23) -> None:
    """Decode every frame of ``source`` and write it again as H.264 (yuv420p) at its rate, on
    one encoder thread: x264's frame threads make the bytes, so the copy's content id, differ
    from run to run."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream_in = inp.streams.video[0]
        rate = stream_in.average_rate or Fraction(25)
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = stream_in.codec_context.width, stream_in.codec_context.height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "threads": "1"}
        for frame in inp.decode(stream_in):
            image = frame.reformat(format="yuv420p")
            image.pts = None
            out.mux(stream.encode(image))
        out.mux(stream.encode(None))


def _groups(home: Home) -> pd.DataFrame:
    return pd.read_parquet(home.path / table_key(Tables.DUPLICATE_GROUPS))


def _latest(home: Home, asset: str):
    records = home.instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
    return records[0].asset_materialization.metadata


def _check(home: Home, name: str):
    records = home.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("duplicate_groups"), name), limit=1
    )
    return records[0].event.dagster_event.event_specific_data


def _export(home: Home) -> Path:
    return home.path / "exports" / "default"


def _video_of(home: Home, name: str) -> str:
    from medvid.intake.ledger import ledger_entries

    (entry,) = [e for e in ledger_entries(home.store, kind="video") if e.original_name == name]
    return entry.content_id


@pytest.fixture(scope="module")
def home(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("cleaning")
    (root / "home").mkdir()
    landing = root / "landing"
    landing.mkdir()
    for name in ("OBXXXX1A.dcm", "OBXXXX1A_rle.dcm"):
        shutil.copyfile(shared_data / "dicom" / name, landing / name)
    shutil.copyfile(shared_data / "videos" / MP4, landing / MP4)
    reencode(shared_data / "videos" / MP4, landing / COPY)
    (landing / "labels.csv").write_text(LABELS)
    previous = os.environ.get("MEDVID_DEID_SALT")
    os.environ["MEDVID_DEID_SALT"] = SALT
    try:
        with dg.instance_for_test() as instance:
            home = Home(root / "home", landing, instance)
            home.configure(SETTINGS)
            home.run()
            yield home
    finally:
        if previous is None:
            os.environ.pop("MEDVID_DEID_SALT", None)
        else:
            os.environ["MEDVID_DEID_SALT"] = previous


def test_the_rle_copy_of_a_still_is_grouped_with_it_and_exported_once(home):
    groups = _groups(home)
    images = groups[groups["kind"] == "image"]
    assert len(images) == 2
    assert images["group_id"].nunique() == 1 and set(images["group_size"]) == {2}
    assert images["representative"].sum() == 1
    exported = pd.read_csv(_export(home) / "images.csv")
    assert len(exported) == 1
    assert exported["image_id"].iloc[0] == images.loc[images["representative"], "item_id"].iloc[0]


def test_the_still_is_cropped_to_its_ultrasound_region(home):
    # OBXXXX1A's SequenceOfUltrasoundRegions: 120, 60, 800, 518 (inclusive) on 800x600
    row = pd.read_csv(_export(home) / "images.csv").iloc[0]
    assert (row["crop_x0"], row["crop_y0"], row["crop_x1"], row["crop_y1"]) == (120, 60, 800, 519)
    image = read_rgb(_export(home) / "images" / row["image_relative_path"])
    assert image.shape == (459, 680, 3)


def test_marks_of_the_stills_are_found_and_the_stored_pixels_exported_by_default(home):
    marks = pd.read_parquet(home.path / table_key(Tables.IMAGE_MARKS))
    assert len(marks) == 2 and marks["model_id"].nunique() == 1
    assert marks["clean_twin"].isna().all()  # the RLE copy has the same pixels: no twin
    meta = _latest(home, "image_marks")
    assert meta["still_images"].value == 2 and meta["read_now"].value == 2
    if meta["device"].value == "cpu":  # on a CPU the ONNX twin, not torch
        assert meta["runtime"].value == "onnxruntime-cpu"
    row = pd.read_csv(_export(home) / "images.csv").iloc[0]
    assert not row["inpainted"]  # cleaning.marks: keep
    assert row["has_calipers"] == marks.set_index("image_id").loc[row["image_id"], "has_calipers"]
    exported = read_rgb(_export(home) / "images" / row["image_relative_path"])
    stored = read_rgb(home.path / keys.DICOM_IMAGES / row["image_relative_path"])
    np.testing.assert_array_equal(exported, stored[60:519, 120:800])
    before = (home.path / table_key(Tables.IMAGE_MARKS)).read_bytes()
    assert home.materialize("image_marks").success
    assert _latest(home, "image_marks")["read_now"].value == 0
    assert (home.path / table_key(Tables.IMAGE_MARKS)).read_bytes() == before


def test_frames_of_a_reencoded_video_share_groups_with_the_original(home):
    groups = _groups(home)
    original, copy = _video_of(home, MP4), _video_of(home, COPY)
    frames = groups[groups["kind"] == "frame"]
    of_original = frames[frames["source_id"] == original]
    of_copy = frames[frames["source_id"] == copy]
    assert len(of_original) == len(of_copy) == 13  # every 10th of 123 frames
    # x264 CRF 23 moves a frame's pHash by 0-4 bits: every frame of the copy joins a group of
    # the original's (this lung clip's frames also chain into one another)
    assert set(of_copy["group_id"]) <= set(of_original["group_id"])
    # no patient on either: one representative per group, so one video's frames represent the
    # groups and the other's are dropped (which one is decided by the ids, i.e. the bytes)
    kept, dropped = (
        (of_original, of_copy) if of_original["representative"].any() else (of_copy, of_original)
    )
    assert kept["representative"].all() and not dropped["representative"].any()
    exported = pd.read_csv(_export(home) / "annotations.csv")
    assert set(exported["video_id"]) == set(kept["source_id"])
    assert not exported["frame_id"].isin(dropped["item_id"]).any()
    meta = _latest(home, "training_dataset")
    assert meta["duplicates_dropped"].value == 13 + 1  # the copy's frames and the RLE still
    pairs = pd.read_parquet(home.path / table_key(Tables.DUPLICATE_VIDEOS))
    assert list(zip(pairs["video_a"], pairs["video_b"], strict=True)) == [
        tuple(sorted((original, copy)))
    ]


def test_frames_are_cropped_to_their_videos_moving_region(home):
    fields = pd.read_parquet(home.path / table_key(Tables.FIELDS_OF_VIEW)).set_index("video_id")
    # the exported one of the two copies (the other's frames are duplicates)
    (kept,) = pd.read_csv(_export(home) / "annotations.csv")["video_id"].unique()
    assert fields.loc[kept, "source"] == "motion"
    box = tuple(int(fields.loc[kept, c]) for c in ("x0", "y0", "x1", "y1"))
    x0, y0, x1, y1 = box
    assert x1 - x0 >= 200 and y1 - y0 >= 200  # the 270x270 clip is mostly image
    exported = pd.read_csv(_export(home) / "annotations.csv").drop_duplicates("frame_id")
    mine = exported[exported["video_id"] == kept]
    crops = mine[["crop_x0", "crop_y0", "crop_x1", "crop_y1"]].drop_duplicates()
    assert [tuple(r) for r in crops.itertuples(index=False)] == [box]
    image = read_rgb(_export(home) / "frames" / mine["frame_relative_path"].iloc[0])
    assert image.shape == (y1 - y0, x1 - x0, 3)


def test_duplicate_groups_metadata_and_a_rerun_writes_the_same_bytes(home):
    meta = _latest(home, "duplicate_groups")
    assert meta["items"].value == 28 and meta["still_images"].value == 2
    assert meta["largest_group"].value >= 2
    assert meta["items_added"].value == 28
    assert _check(home, "no_group_spans_patients").passed
    before = {
        name: (home.path / table_key(name)).read_bytes()
        for name in (
            Tables.DUPLICATE_GROUPS,
            Tables.DUPLICATE_INDEX,
            Tables.DUPLICATE_VIDEOS,
            Tables.FIELDS_OF_VIEW,
        )
    }
    assert home.materialize("duplicate_groups", "fields_of_view").success
    assert _latest(home, "duplicate_groups")["items_added"].value == 0
    assert _latest(home, "fields_of_view")["measured"].value == 0
    for name, data in before.items():
        assert (home.path / table_key(name)).read_bytes() == data, name
    assert pq.read_table(home.path / table_key(Tables.DUPLICATE_INDEX)).num_rows == 28


def test_a_copy_filed_under_another_patient_is_warned_and_split_with_the_original(home):
    (home.landing / "patients.csv").write_text(f"video,patient_id\n{MP4},P001\n{COPY},P002\n")
    home.run()
    check = _check(home, "no_group_spans_patients")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    original, copy = _video_of(home, MP4), _video_of(home, COPY)
    splits = pd.read_csv(_export(home) / "splits.csv").set_index("video_id")["split"]
    assert splits[original] == splits[copy]
    assert splits[original] != pd.read_csv(_export(home) / "images.csv")["split"].iloc[0]
    # two patients: each keeps its own representative, no frame is dropped
    exported = pd.read_csv(_export(home) / "annotations.csv")
    assert exported.groupby("video_id")["frame_id"].nunique().to_dict() == {
        original: 13,
        copy: 13,
    }


def test_cleaning_duplicates_all_exports_every_copy(home):
    home.configure(SETTINGS + "cleaning: {duplicates: all}\n")
    home.run()
    assert len(pd.read_csv(_export(home) / "images.csv")) == 2
    assert _latest(home, "training_dataset")["duplicates_dropped"].value == 0


def test_probe_orientation_without_orientation_text_is_not_trained_and_predicts_nothing(home):
    # the real stills carry no orientation text (nor does any shared image): no weak labels
    assert home.materialize("probe_orientation").success
    meta = _latest(home, "probe_orientation")
    assert meta["trained"].value is False
    assert meta["not_trained_because"].text.startswith("0 orientation(s) with at least 5")
    assert (meta["images"].value, meta["predicted"].value) == (2, 0)
    assert "device" not in meta  # nothing to train: torch not even imported
    assert pd.read_parquet(home.path / table_key(Tables.ORIENTATION_PREDICTIONS)).empty
    record = json.loads((home.path / keys.CURRENT_ORIENTATION_MODEL).read_text())
    assert (record["trained"], record["weights_key"]) == (False, None)
    check = home.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("probe_orientation"), "beats_majority_on_held_out_studies"),
        limit=1,
    )[0].event.dagster_event.event_specific_data
    assert (check.passed, check.severity) == (False, dg.AssetCheckSeverity.WARN)
    row = pd.read_csv(_export(home) / "images.csv").iloc[0]
    assert pd.isna(row["orientation"]) and pd.isna(row["orientation_source"])


# A fresh interpreter (torch not yet imported) materializes image_marks on an empty home.
NO_STILLS = """
import sys
from pathlib import Path
import dagster as dg
from medvid.cleaning.marks_store import read_image_marks
from medvid_assets.definitions import build_definitions
from medvid_resources import LocalMediaStore
home = Path(sys.argv[1])
defs = build_definitions(home)
asset = defs.get_assets_def(dg.AssetKey("image_marks"))
resources = {k: defs.resources[k] for k in asset.required_resource_keys if k in defs.resources}
with dg.DagsterInstance.ephemeral() as instance:
    result = dg.materialize([asset], instance=instance, resources=resources)
rows = len(read_image_marks(LocalMediaStore(root=str(home))))
print(result.success, rows, "torch" in sys.modules)
"""


def test_without_stills_image_marks_writes_an_empty_table_without_loading_torch(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", NO_STILLS, str(tmp_path)], capture_output=True, text=True
    )
    assert done.stdout.split() == ["True", "0", "False"], done.stderr[-2000:]
