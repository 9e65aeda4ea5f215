"""The one Definitions: every stage loads without any Labelbox setting, the asset graph keeps
its names and lineage (a rename shows up here), and stages never import each other."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from medvid_assets.definitions import build_definitions
from medvid_assets.orchestration.jobs import JOBS

LABEL_ASSETS = {
    "label_sheets": set(),
    "frame_labels": {"video_frames", "label_sheets"},
    "segment_labels": {"video_frames", "label_sheets"},
    "labelbox_uploads": {"video_frames", "cold_label_queue"},
    "labelbox_labels": {"labelbox_uploads", "label_sheets"},
    "cold_label_queue": {"video_frames"},
    "cold_label_answers": {"cold_label_queue", "labelbox_labels"},
    "label_model": {
        "cold_label_answers",
        "frame_labels",
        "segment_labels",
        "labelbox_labels",
        "pretrained_backbone",
    },
    "pretrained_backbone": {"video_frames"},
    "label_prediction_evaluation": {"frame_labels", "segment_labels", "cold_label_answers"},
    "predicted_labels": {"label_model", "video_frames"},
    "custom_model_labels": {"video_frames"},
}


def test_definitions_load_without_labelbox_settings(tmp_path: Path, monkeypatch) -> None:
    for name in ("LABELBOX_API_KEY", "MEDVID_LABELBOX_PROJECT_ID", "MEDVID_LABELBOX_DATASET"):
        monkeypatch.delenv(name, raising=False)
    defs = build_definitions(tmp_path)
    dg.Definitions.validate_loadable(defs)
    assert {"labelbox", "torch_device"} <= set(defs.resources)
    for job in JOBS:
        assert defs.resolve_job_def(job.name).name == job.name


def test_loading_the_definitions_does_not_import_torch_or_matplotlib(tmp_path: Path) -> None:
    # torch and torchvision are ~0.8 GB resident: only the steps that train or predict load
    # them; matplotlib (~30 MiB) only the steps that draw a plot, scipy's sparse graphs
    # (~17 MiB) only duplicate grouping
    code = (
        "import sys; from pathlib import Path;"
        "from medvid_assets.definitions import build_definitions;"
        f"build_definitions(Path({str(tmp_path)!r}));"
        "print(sorted(m for m in ('torch', 'torchvision', 'matplotlib', 'scipy.sparse.csgraph')"
        " if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_label_assets_keep_their_names_and_upstreams(tmp_path: Path) -> None:
    graph = build_definitions(tmp_path).resolve_asset_graph()
    for name, upstream in LABEL_ASSETS.items():
        node = graph.get(dg.AssetKey(name))
        parents = {key.to_user_string() for key in node.parent_keys}
        assert upstream <= parents, (name, parents)
    export_parents = {
        key.to_user_string() for key in graph.get(dg.AssetKey("training_dataset")).parent_keys
    }
    assert {
        "frame_labels",
        "segment_labels",
        "labelbox_labels",
        "cold_label_answers",
        "predicted_labels",
        "custom_model_labels",
    } <= export_parents


STAGES = (
    "intake",
    "videos",
    "dicom",
    "ocr",
    "deid",
    "frames",
    "cleaning",
    "labels",
    "labelbox",
    "predict",
    "export",
    "quality",
)


def test_stages_meet_only_through_the_core_and_asset_keys() -> None:
    import ast

    root = Path(__file__).resolve().parents[2] / "medvid_assets"
    for stage in STAGES:
        for path in (root / stage).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    parts = node.module.split(".")
                    if parts[0] == "medvid_assets" and len(parts) > 1 and parts[1] in STAGES:
                        assert parts[1] == stage, f"{path.name} of {stage} imports {node.module}"


def test_every_storage_key_is_named_in_the_catalog() -> None:
    """No code outside medvid/catalog/keys.py spells a store key (docstrings may show one)."""
    import ast
    import re

    root = Path(__file__).resolve().parents[2]
    prefix = re.compile(r"^(tables|media|protected|exports|ledger|quarantine|deid_status)/")
    offenders = []
    for folder in ("medvid", "medvid_assets"):
        for path in (root / folder).rglob("*.py"):
            if path.name == "keys.py":
                continue
            tree = ast.parse(path.read_text())
            docstrings = {
                id(node.value)
                for node in ast.walk(tree)
                if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            }
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and id(node) not in docstrings
                    and prefix.match(node.value)
                ):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []


def test_the_export_job_cleans_before_it_exports(tmp_path: Path) -> None:
    defs = build_definitions(tmp_path)
    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("training_dataset")).parent_keys}
    assert {"duplicate_groups", "fields_of_view", "image_marks"} <= parents
    job = defs.resolve_job_def("export_job")
    selected = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert {"duplicate_groups", "fields_of_view", "image_marks", "training_dataset"} <= selected
    assert defs.get_assets_def(dg.AssetKey("image_marks")).op.pool == "gpu"


def test_probe_orientation_is_a_gpu_op_the_export_reads(tmp_path: Path) -> None:
    defs = build_definitions(tmp_path)
    graph = defs.resolve_asset_graph()
    for export in ("training_dataset", "daily_snapshot"):
        parents = {k.to_user_string() for k in graph.get(dg.AssetKey(export)).parent_keys}
        assert "probe_orientation" in parents, export
    upstream = graph.get(dg.AssetKey("probe_orientation")).parent_keys
    assert {k.to_user_string() for k in upstream} == {"dicom_images", "frame_ocr_text"}
    asset = defs.get_assets_def(dg.AssetKey("probe_orientation"))
    assert asset.op.pool == "gpu"
    checks = {k.name for k in asset.check_keys}
    assert checks == {"beats_majority_on_held_out_studies"}
    job = defs.resolve_job_def("export_job")
    assert "probe_orientation" in {
        k.to_user_string() for k in job.asset_layer.executable_asset_keys
    }


def test_batch_keys_are_dagsters_own_and_built_once_an_hour() -> None:
    import datetime as dt

    from medvid_assets.partitions import batch_partitions

    plain = dg.MultiPartitionsDefinition(
        {d.name: d.partitions_def for d in batch_partitions.partitions_defs}
    )
    last_second = dt.datetime(2026, 11, 30, 23, 59, 59, tzinfo=dt.UTC)
    keys = batch_partitions.get_partition_keys(current_time=last_second)
    # 05:29 at +05:30 is 23:59 UTC: the same hour, so the same list, not rebuilt
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    later = dt.datetime(2026, 12, 1, 5, 29, tzinfo=india)
    assert batch_partitions.get_partition_keys(current_time=later) is keys
    assert keys == plain.get_partition_keys(current_time=last_second)
    assert keys[-1] == "2026-11-30|15"
    next_day = dt.datetime(2026, 12, 1, 0, 0, 0, tzinfo=dt.UTC)  # a new day's 16 batches
    keys = batch_partitions.get_partition_keys(current_time=next_day)
    assert keys == plain.get_partition_keys(current_time=next_day)
    assert keys[-1] == "2026-12-01|15"
