"""Training-dataset export: patient splits, the dataset folder, and its verification.

The export tests use real ultrasound frames: the first 24 frames of a lung POCUS clip from
``shared/data/videos`` decoded with PyAV and written as JPEG, spread over four synthetic
videos (two of one patient, one of another, one without a patient).
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
from datetime import UTC, datetime
from pathlib import Path

import av
import cv2
import pandas as pd
import pytest

from medvid.export import (
    ANNOTATION_COLUMNS,
    ExportConfig,
    ExportSummary,
    PatientIdError,
    split_by_patient,
    verify_export,
    write_training_dataset,
)
from medvid.export.dataset import FRAME_ORIENTATION_COLUMNS
from medvid.export.phi_scan import scan_export
from medvid.ids import frame_id
from medvid.labels.schema import LabelSchema, frame_labels_from_pandas
from medvid.labels.sheets import labels_from_ranges

CLIP = "covid19us_Vir_whitelung_h1n1.mp4"  # 270x270, 25 fps, 123 frames
CREATED = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
MODEL_DATE = datetime(2024, 6, 2, 9, 0, tzinfo=UTC)

VA, VB, VC, VD, VE = (c * 16 for c in "abcde")
P1, P2, P3 = "P0A1B2C3D4E5", "P1F2E3D4C5B6", "P2ABCDEF0123"  # medvid pseudonyms
PATIENTS = {VA: P1, VB: P1, VC: None, VD: P2, VE: P3}
FRAME_NUMBERS = [0, 5, 10, 15, 20, 25]  # every 5th frame at 25 fps: t = 0.0 ... 1.0 s
SCHEMA = LabelSchema.from_names(["b_lines", "pleural effusion"])  # b_lines=0, effusion=1
SHEET = pd.DataFrame(
    [
        (VA, 0.0, 0.4, "b_lines"),
        (VA, 0.6, 1.0, "pleural effusion"),
        (VB, 0.2, 1.0, "b_lines"),
        (VC, 0.0, 0.0, "b_lines"),
        (VD, 0.0, 1.0, "pleural effusion"),
    ],
    columns=["video", "start_s", "end_s", "label"],
)


# --- split_by_patient ----------------------------------------------------------------------------


def _videos(patients: dict[str, str | None]) -> pd.DataFrame:
    return pd.DataFrame({"video_id": list(patients), "patient_id": list(patients.values())})


def _many_patients(seed: int) -> tuple[pd.DataFrame, dict[str, int]]:
    rng = random.Random(seed)
    patients: dict[str, str | None] = {}
    counts: dict[str, int] = {}
    for index in range(60):
        video_id = f"{index:016x}"
        patients[video_id] = f"P{rng.randrange(25)}" if index % 6 else None
        counts[video_id] = rng.randrange(20, 200)
    return _videos(patients), counts


def test_split_is_deterministic_for_a_seed() -> None:
    videos, counts = _many_patients(1)
    first = split_by_patient(videos, counts, val_ratio=0.2, seed=7)
    again = split_by_patient(
        videos.iloc[::-1], dict(reversed(counts.items())), val_ratio=0.2, seed=7
    )
    assert first == again


def test_split_never_puts_a_patient_in_both_splits() -> None:
    videos, counts = _many_patients(2)
    for seed in range(5):
        splits = split_by_patient(videos, counts, val_ratio=0.3, seed=seed)
        sides: dict[str, set[str]] = {}
        for video_id, patient in zip(videos["video_id"], videos["patient_id"], strict=True):
            if not pd.isna(patient):
                sides.setdefault(patient, set()).add(splits[video_id])
        assert all(len(s) == 1 for s in sides.values())


def test_split_frame_fraction_is_close_to_val_ratio() -> None:
    videos, counts = _many_patients(3)
    total = sum(counts.values())
    for seed in range(5):
        splits = split_by_patient(videos, counts, val_ratio=0.2, seed=seed)
        val = sum(n for v, n in counts.items() if splits[v] == "val")
        assert abs(val / total - 0.2) < 0.05


def test_split_of_equal_patients_hits_the_ratio_exactly() -> None:
    videos = _videos({f"{i:016x}": f"P{i}" for i in range(10)})
    counts = dict.fromkeys(videos["video_id"], 100)
    splits = split_by_patient(videos, counts, val_ratio=0.2, seed=0)
    assert sorted(splits.values()).count("val") == 2


def test_videos_without_patient_are_groups_of_their_own() -> None:
    videos = _videos({VA: None, VB: None})
    splits = split_by_patient(videos, {VA: 10, VB: 10}, val_ratio=0.5, seed=0)
    assert sorted(splits.values()) == ["train", "val"]


def test_split_with_two_groups_and_a_small_ratio_fills_both_splits() -> None:
    videos = _videos({VA: "P1", VB: "P1", VC: "P2"})
    splits = split_by_patient(videos, {VA: 100, VB: 100, VC: 100}, val_ratio=0.05, seed=0)
    assert splits == {VA: "train", VB: "train", VC: "val"}


def test_split_with_ratio_zero_is_all_train() -> None:
    splits = split_by_patient(_videos({VA: "P1", VB: "P2"}), {VA: 5, VB: 5}, val_ratio=0.0, seed=0)
    assert set(splits.values()) == {"train"}


# --- write_training_dataset ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def frames_root(tmp_path_factory: pytest.TempPathFactory, videos_dir: Path) -> Path:
    """A frames folder like the media store's ``frames/``: real JPEG frames of four videos."""
    root = tmp_path_factory.mktemp("store") / "frames"
    with av.open(str(videos_dir / CLIP)) as container:
        images = [
            frame.to_ndarray(format="bgr24")
            for _, frame in zip(range(24), container.decode(video=0), strict=False)
        ]
    for v, video_id in enumerate([VA, VB, VC, VD]):
        for k, number in enumerate(FRAME_NUMBERS):
            path = root / f"video_{video_id}" / f"frame_{frame_id(video_id, number)}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), images[v * 6 + k])
    return root


def _frame_table() -> pd.DataFrame:
    rows = []
    for video_id in [VA, VB, VC, VD]:
        for number in FRAME_NUMBERS:
            fid = frame_id(video_id, number)
            rows.append(
                {
                    "frame_id": fid,
                    "video_id": video_id,
                    "frame_number": number,
                    "frame_timestamp": number / 25,
                    "frame_relative_path": f"video_{video_id}/frame_{fid}.jpg",
                    "is_dead": video_id == VA and number == 25,
                    "is_disturbed": video_id == VC and number == 10,
                }
            )
    return pd.DataFrame(rows)


def _label_table(frames: pd.DataFrame) -> pd.DataFrame:
    parts = [
        labels_from_ranges(
            frames[frames["video_id"] == video_id],
            SHEET[SHEET["video"] == video_id],
            schema=SCHEMA,
            created_at=CREATED,
        ).to_pandas()
        for video_id in [VA, VB, VC, VD]
    ]
    model_row = (
        parts[0]
        .iloc[[0]]
        .assign(  # frame A-0 b_lines, the sheet says True
            value=False,
            float_value=0.3,
            source="model:resnet18-v1",
            confidence=0.7,
            annotator="resnet18-v1",
            reviewed=False,
            date_created=pd.Timestamp(MODEL_DATE),
            date_modified=pd.Timestamp(MODEL_DATE),
        )
    )
    labels = pd.concat([*parts, model_row], ignore_index=True)
    frame_labels_from_pandas(labels)  # the fixture itself fits the shared schema
    return labels


def _video_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "video_id": list(PATIENTS),
            "video_hash": [video_id * 4 for video_id in PATIENTS],
            "original_name": [f"Doe_John_{i}.mp4" for i in range(len(PATIENTS))],
            "patient_id": list(PATIENTS.values()),
            "diagnosis": ["covid", "covid", None, "h1n1", "healthy"],
        }
    )


def _export(
    out: Path, frames_root: Path, frame_orientations: pd.DataFrame | None = None, **config: object
) -> ExportSummary:
    frames = _frame_table()
    return write_training_dataset(
        out,
        frames=frames,
        labels=_label_table(frames),
        videos=_video_table(),
        frames_root=frames_root,
        config=ExportConfig(
            dataset_name="lung",
            val_ratio=0.3,
            imagefolder_skip=2,
            **config,  # type: ignore[arg-type]
        ),
        medvid_version="0.1.0",
        sampling_config={"every_nth_frame": 5},
        frame_orientations=frame_orientations,
    )


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.reader(stream))


def test_export_writes_exactly_the_labelled_live_frames(tmp_path: Path, frames_root: Path) -> None:
    summary = _export(tmp_path / "ds", frames_root)
    expected = {
        f"video_{v}/frame_{frame_id(v, n)}.jpg"
        for v in [VA, VB, VC, VD]
        for n in FRAME_NUMBERS
        if not (v == VA and n == 25)  # dead
    }
    assert _files(tmp_path / "ds" / "frames") == expected
    assert (summary.n_frames, summary.n_videos, summary.n_annotations) == (23, 4, 29)


def test_export_files_are_hardlinks_by_default(tmp_path: Path, frames_root: Path) -> None:
    _export(tmp_path / "ds", frames_root)
    rel = f"video_{VB}/frame_{frame_id(VB, 5)}.jpg"
    assert os.stat(tmp_path / "ds" / "frames" / rel).st_ino == os.stat(frames_root / rel).st_ino


def test_export_copy_mode_writes_independent_identical_files(
    tmp_path: Path, frames_root: Path
) -> None:
    _export(tmp_path / "ds", frames_root, link_mode="copy")
    rel = f"video_{VB}/frame_{frame_id(VB, 5)}.jpg"
    exported = tmp_path / "ds" / "frames" / rel
    assert os.stat(exported).st_ino != os.stat(frames_root / rel).st_ino
    assert exported.read_bytes() == (frames_root / rel).read_bytes()


def test_annotations_csv_has_the_exact_columns_and_rows(tmp_path: Path, frames_root: Path) -> None:
    _export(tmp_path / "ds", frames_root)
    header, *rows = _read_csv(tmp_path / "ds" / "annotations.csv")
    assert tuple(header) == ANNOTATION_COLUMNS
    assert len(rows) == 29
    first, second = (dict(zip(header, row, strict=True)) for row in rows[:2])
    assert first == {
        "annotation_id": "0",
        "video_id": VA,
        "video_hash": VA * 4,
        "frame_id": f"{VA}-0000000",
        "frame_number": "0",
        "frame_relative_path": f"video_{VA}/frame_{VA}-0000000.jpg",
        "frame_timestamp": "0.0",
        "label_id": "0",
        "label_name": "b_lines",
        "value": "false",
        "float_value": "0.3",
        "annotator": "resnet18-v1",
        "information_source_id": "100",
        "information_source_name": "model:resnet18-v1",
        "model_meta_id": "resnet18-v1",
        "date_created": "2024-01-01T00:00:00.000000+00:00",  # the year only
        "date_modified": "2024-01-01T00:00:00.000000+00:00",
        **dict.fromkeys(("crop_x0", "crop_y0", "crop_x1", "crop_y1"), ""),  # not cropped
    }
    assert (second["information_source_name"], second["information_source_id"]) == ("sheet", "2")
    assert (second["value"], second["float_value"], second["model_meta_id"]) == ("true", "", "")
    assert [int(row[0]) for row in rows] == list(range(29))


def test_annotations_json_holds_the_csv_rows(tmp_path: Path, frames_root: Path) -> None:
    _export(tmp_path / "ds", frames_root)
    header, *rows = _read_csv(tmp_path / "ds" / "annotations.csv")
    objects = json.loads((tmp_path / "ds" / "annotations.json").read_text())

    def as_csv_text(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    assert [list(obj) for obj in objects] == [header] * len(rows)
    assert [[as_csv_text(v) for v in obj.values()] for obj in objects] == rows


def test_imagefolder_holds_every_second_positive_per_video_and_label(
    tmp_path: Path, frames_root: Path
) -> None:
    summary = _export(tmp_path / "ds", frames_root)
    split = summary.splits
    expected = {
        f"{split[v]}/{folder}/{frame_id(v, n)}.jpg"
        for v, folder, numbers in [
            (VA, "b_lines", [0, 10]),  # positives 0, 5, 10 (frame 0: sheet beats model)
            (VB, "b_lines", [5, 15, 25]),  # positives 5 ... 25
            (VC, "b_lines", [0]),
            (VA, "pleural_effusion", [15]),  # positives 15, 20 (25 is dead)
            (VD, "pleural_effusion", [0, 10, 20]),
        ]
        for n in numbers
    }
    assert _files(tmp_path / "ds" / "imagefolder") == expected
    for s in set(split.values()):  # every class folder exists in every split
        assert sorted(p.name for p in (tmp_path / "ds" / "imagefolder" / s).iterdir()) == [
            "b_lines",
            "pleural_effusion",
        ]


def test_imagefolder_negative_class_when_not_positive_only(
    tmp_path: Path, frames_root: Path
) -> None:
    summary = _export(tmp_path / "ds", frames_root, positive_only_imagefolder=False)
    negatives = {p.name for p in (tmp_path / "ds" / "imagefolder").glob("*/_negative/*.jpg")}
    # Frames negative for all their labels: A-20 (b_lines F; effusion T) is positive; B-0 and
    # C-5..C-25 are negative -> per video every 2nd: B-0, C-5, C-15, C-25.
    assert negatives == {
        f"{frame_id(VB, 0)}.jpg",
        f"{frame_id(VC, 5)}.jpg",
        f"{frame_id(VC, 15)}.jpg",
        f"{frame_id(VC, 25)}.jpg",
    }
    assert summary.n_frames == 23


def test_splits_csv_keeps_patients_together_and_attributes(
    tmp_path: Path, frames_root: Path
) -> None:
    summary = _export(tmp_path / "ds", frames_root)
    header, *rows = _read_csv(tmp_path / "ds" / "splits.csv")
    assert header == ["video_id", "patient_id", "split", "diagnosis"]
    assert [row[0] for row in rows] == [VA, VB, VC, VD]  # VE has no labels: not exported
    assert rows[0][1:] == [P1, summary.splits[VA], "covid"]
    assert rows[2][1] == "" and rows[2][3] == ""
    assert summary.splits[VA] == summary.splits[VB]
    assert set(summary.splits.values()) == {"train", "val"}
    text = "".join(p.read_text() for p in (tmp_path / "ds").glob("*.*"))
    assert "Doe_John" not in text  # original file names are not exported


def test_manifest_counts(tmp_path: Path, frames_root: Path) -> None:
    summary = _export(tmp_path / "ds", frames_root)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["dataset_name"] == "lung" and manifest["medvid_version"] == "0.1.0"
    assert manifest["created"] == "2024-01-01T00:00:00.000000+00:00"  # newest label's year
    assert manifest["config"]["imagefolder_skip"] == 2
    assert manifest["sampling_config"] == {"every_nth_frame": 5}
    assert manifest["label_schema"] == {"b_lines": 0, "pleural effusion": 1}
    assert manifest["information_sources"] == {"sheet": 2, "model:resnet18-v1": 100}
    labels = manifest["counts"]["labels"]
    assert labels["b_lines"]["total"] == {"frames": 17, "annotations": 18, "positives": 9}
    assert labels["pleural effusion"]["total"] == {"frames": 11, "annotations": 11, "positives": 8}
    per_split = manifest["counts"]["splits"]
    assert sum(s["annotations"] for s in per_split.values()) == 29
    assert sum(s["frames"] for s in per_split.values()) == 23
    assert sum(s["videos"] for s in per_split.values()) == 4
    assert sum(s["patients"] for s in per_split.values()) == 2
    assert sum(s["videos_without_patient"] for s in per_split.values()) == 1
    assert per_split[summary.splits[VC]]["videos_without_patient"] == 1
    assert manifest["source_video_sha256"] == sorted(v * 4 for v in [VA, VB, VC, VD])
    excluded = manifest["excluded"]
    assert (excluded["dead_frames"], excluded["dead_annotations"]) == (1, 2)
    assert excluded["frames"] == [f"video_{VA}/frame_{frame_id(VA, 25)}.jpg"]
    assert manifest["counts"] == summary.counts


def test_include_dead_exports_the_dead_frame(tmp_path: Path, frames_root: Path) -> None:
    summary = _export(tmp_path / "ds", frames_root, include_dead=True)
    assert (summary.n_frames, summary.n_annotations) == (24, 31)


def test_exclude_disturbed_drops_the_disturbed_frame(tmp_path: Path, frames_root: Path) -> None:
    summary = _export(tmp_path / "ds", frames_root, include_disturbed=False)
    assert (summary.n_frames, summary.n_annotations) == (22, 28)


def test_export_is_byte_identical_on_rerun(tmp_path: Path, frames_root: Path) -> None:
    _export(tmp_path / "one", frames_root)
    _export(tmp_path / "two", frames_root)
    _export(tmp_path / "two", frames_root)  # over an existing export
    for name in ("annotations.csv", "annotations.json", "splits.csv", "manifest.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no temp folders left


def test_failed_export_leaves_the_previous_dataset(tmp_path: Path, frames_root: Path) -> None:
    _export(tmp_path / "ds", frames_root)
    broken_root = tmp_path / "broken"
    shutil.copytree(frames_root, broken_root)
    (broken_root / f"video_{VD}" / f"frame_{frame_id(VD, 10)}.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=f"frame_{VD}-0000010.jpg"):
        _export(tmp_path / "ds", broken_root)
    assert verify_export(tmp_path / "ds") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "ds"]


def test_progress_reports_each_frame(tmp_path: Path, frames_root: Path) -> None:
    calls: list[tuple[int, int]] = []
    frames = _frame_table()
    write_training_dataset(
        tmp_path / "ds",
        frames=frames,
        labels=_label_table(frames),
        videos=_video_table(),
        frames_root=frames_root,
        config=ExportConfig(dataset_name="lung"),
        medvid_version="0.1.0",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(i, 23) for i in range(1, 24)]


# --- verify_export -------------------------------------------------------------------------------


def test_verify_export_of_a_good_export_is_clean(tmp_path: Path, frames_root: Path) -> None:
    _export(tmp_path / "ds", frames_root)
    assert verify_export(tmp_path / "ds") == []


def test_verify_export_reports_a_deleted_frame(tmp_path: Path, frames_root: Path) -> None:
    _export(tmp_path / "ds", frames_root)
    rel = f"video_{VC}/frame_{frame_id(VC, 5)}.jpg"
    (tmp_path / "ds" / "frames" / rel).unlink()
    problems = verify_export(tmp_path / "ds")
    assert problems == [f"1 frame_relative_path(s) do not resolve under frames/: {rel}"]


def test_verify_export_reports_a_patient_in_two_splits(tmp_path: Path, frames_root: Path) -> None:
    _export(tmp_path / "ds", frames_root)
    path = tmp_path / "ds" / "splits.csv"
    header, *rows = _read_csv(path)
    for row in rows:
        if row[0] == VB:
            row[2] = "val" if row[2] == "train" else "train"
    with path.open("w", newline="") as stream:
        csv.writer(stream, lineterminator="\n").writerows([header, *rows])
    assert verify_export(tmp_path / "ds") == [f"patient(s) in more than one split: {P1}"]


def test_verify_export_reports_json_that_differs_from_csv(
    tmp_path: Path, frames_root: Path
) -> None:
    _export(tmp_path / "ds", frames_root)
    path = tmp_path / "ds" / "annotations.json"
    objects = json.loads(path.read_text())
    objects[3]["value"] = not objects[3]["value"]
    path.write_text(json.dumps(objects))
    assert verify_export(tmp_path / "ds") == [
        "annotations.json and annotations.csv differ at row 3 (annotation_id 3)"
    ]


def test_verify_export_reports_a_missing_imagefolder_file(
    tmp_path: Path, frames_root: Path
) -> None:
    summary = _export(tmp_path / "ds", frames_root)
    rel = f"{summary.splits[VD]}/pleural_effusion/{frame_id(VD, 10)}.jpg"
    (tmp_path / "ds" / "imagefolder" / rel).unlink()
    assert verify_export(tmp_path / "ds") == [f"1 imagefolder/ file(s) missing: {rel}"]


def test_verify_export_reports_zero_annotation_rows(tmp_path: Path, frames_root: Path) -> None:
    frames = _frame_table()
    labels = _label_table(frames).iloc[0:0]
    write_training_dataset(
        tmp_path / "ds",
        frames=frames,
        labels=labels,
        videos=_video_table(),
        frames_root=frames_root,
        config=ExportConfig(dataset_name="empty"),
        medvid_version="0.1.0",
    )
    assert verify_export(tmp_path / "ds") == [
        "annotations.csv has zero annotation rows (and no still images)"
    ]


# --- patients, dates and spreadsheet cells -------------------------------------------------------


def test_export_refuses_patient_ids_that_are_not_pseudonyms(
    tmp_path: Path, frames_root: Path
) -> None:
    frames = _frame_table()
    videos = _video_table().assign(patient_id=["MRN5551234", "MRN5551234", None, P2, P3])
    with pytest.raises(PatientIdError, match="2 patient_id value") as raised:
        write_training_dataset(
            tmp_path / "ds",
            frames=frames,
            labels=_label_table(frames),
            videos=videos,
            frames_root=frames_root,
            config=ExportConfig(dataset_name="lung"),
            medvid_version="0.1.0",
        )
    assert "MRN5551234" not in str(raised.value)
    assert not (tmp_path / "ds").exists()


def test_export_refuses_still_images_with_raw_patient_ids(
    tmp_path: Path, frames_root: Path
) -> None:
    frames = _frame_table()
    images = pd.DataFrame(
        {"image_id": ["i0123456789abcde"], "patient_id": ["12345"], "image_relative_path": ["x"]}
    )
    with pytest.raises(PatientIdError, match="still images"):
        write_training_dataset(
            tmp_path / "ds",
            frames=frames,
            labels=_label_table(frames),
            videos=_video_table(),
            frames_root=frames_root,
            config=ExportConfig(dataset_name="lung"),
            medvid_version="0.1.0",
            still_images=images,
        )


def test_export_takes_other_patient_ids_only_when_allowed(
    tmp_path: Path, frames_root: Path
) -> None:
    frames = _frame_table()
    write_training_dataset(
        tmp_path / "ds",
        frames=frames,
        labels=_label_table(frames),
        videos=_video_table().assign(patient_id=["A", "A", None, "B", "C"]),
        frames_root=frames_root,
        config=ExportConfig(dataset_name="lung"),
        medvid_version="0.1.0",
        allow_unpseudonymized_patient_ids=True,
    )
    header, *rows = _read_csv(tmp_path / "ds" / "splits.csv")
    assert [row[1] for row in rows] == ["A", "A", "", "B"]


def test_cells_a_spreadsheet_would_run_are_quoted_in_csv_and_kept_in_json(
    tmp_path: Path, frames_root: Path
) -> None:
    frames = _frame_table()
    labels = _label_table(frames)
    model = labels["source"] == "model:resnet18-v1"
    labels.loc[model, "float_value"] = -0.25
    labels.loc[model, "annotator"] = "=cmd|' /C calc'!A0"
    payload = '=HYPERLINK("http://x","y")'
    write_training_dataset(
        tmp_path / "ds",
        frames=frames,
        labels=labels,
        videos=_video_table().assign(diagnosis=[payload, "covid", None, "h1n1", "healthy"]),
        frames_root=frames_root,
        config=ExportConfig(dataset_name="lung"),
        medvid_version="0.1.0",
    )
    header, first, *_ = _read_csv(tmp_path / "ds" / "annotations.csv")
    row = dict(zip(header, first, strict=True))
    assert (row["annotator"], row["float_value"]) == ("'=cmd|' /C calc'!A0", "-0.25")
    splits = {r[0]: r[3] for r in _read_csv(tmp_path / "ds" / "splits.csv")[1:]}
    assert splits[VA] == "'" + payload
    document = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert document["videos"][0]["attributes"] == {"diagnosis": payload}
    assert document["frame_annotations"][0]["annotator"] == "=cmd|' /C calc'!A0"
    assert verify_export(tmp_path / "ds") == []


def test_frame_orientations_csv_lists_the_exported_frames_with_an_orientation(
    tmp_path: Path, frames_root: Path
) -> None:
    orientations = pd.DataFrame(
        {
            "frame_id": [frame_id(VB, 5), frame_id(VB, 0), frame_id(VA, 25), frame_id(VD, 10)],
            "orientation": ["LONG", "TRANS", "SAG", None],
            "orientation_source": ["model:0123456789abcdef", "text", "text", None],
            "orientation_confidence": [0.8123, None, None, None],
        }
    )
    summary = _export(tmp_path / "ds", frames_root, frame_orientations=orientations)
    split = summary.splits[VB]
    assert _read_csv(tmp_path / "ds" / "frame_orientations.csv") == [
        list(FRAME_ORIENTATION_COLUMNS),
        [
            frame_id(VB, 0),
            VB,
            f"video_{VB}/frame_{frame_id(VB, 0)}.jpg",
            split,
            "TRANS",
            "text",
            "",
        ],
        [
            frame_id(VB, 5),
            VB,
            f"video_{VB}/frame_{frame_id(VB, 5)}.jpg",
            split,
            "LONG",
            "model:0123456789abcdef",
            "0.8123",
        ],
    ]  # VA 25 is dead (not exported), VD 10 has no orientation
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["n_frames_with_orientation"] == 2
    assert manifest["files"]["frame_orientations_csv"] == "frame_orientations.csv"
    assert verify_export(tmp_path / "ds") == []
    assert scan_export(tmp_path / "ds", identifiers=["Doe", "John"]) == []  # nothing flagged
    _export(tmp_path / "plain", frames_root)
    assert not (tmp_path / "plain" / "frame_orientations.csv").exists()
