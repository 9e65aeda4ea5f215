"""Probe orientation from weak labels (:mod:`medvid.cleaning.orientation`) and its export
(:func:`medvid.export.images.with_orientation`).

The end-to-end set is synthetic (the shared media hold no image with orientation text): a
vessel cut across (TRANS, a disc) or along (LONG, a band), six studies with their own gain,
the orientation burned in on some images and read back through the annotation parser, the
others without text.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from medvid.catalog.schemas import FRAME_FIELDS_SCHEMA
from medvid.cleaning.orientation import (
    OrientationConfig,
    held_out_folds,
    items_to_predict,
    orientation_items_of_frames,
    orientation_items_of_stills,
    predict_orientation,
    synthetic_probe_image,
    train_orientation_model,
    training_items,
    weak_label_counts,
    weak_labels,
)
from medvid.export.images import with_orientation
from medvid.ocr.parse import normalize_orientation, parse_annotation_text

FAST = OrientationConfig(num_threads=1, device="cpu", min_per_class=3)


def test_normalize_orientation_maps_every_synonym_to_its_code() -> None:
    assert [
        normalize_orientation(w)
        for w in ("transverse", "TRV", "Longitudinal", "sagittal", "Anti-Radial", "obl", "", None)
    ] == ["TRANS", "TRANS", "LONG", "SAG", "ARAD", "OBL", None, None]


def test_weak_labels_are_the_orientations_ocr_read_one_per_frame() -> None:
    texts = {
        "f1": "LT BREAST 2:00 5CM FN TRANSVERSE",
        "f2": "RT BREAST 10:00\nLONGITUDINAL",
        "f3": "RT BREAST 9:00 4CM FN",  # no orientation
        "f4": "ANTI-RADIAL",
    }
    fields = pd.DataFrame(
        [
            {"frame_id": f, "frame_number": i, "text": t, **parse_annotation_text(t)}
            for i, (f, t) in enumerate(texts.items())
        ]
    )
    fields = fields[list(FRAME_FIELDS_SCHEMA.names)]
    manifest = pd.DataFrame(
        {
            "frame_id": ["f1", "f2", "f3", "f4", "f5"],  # f5: OCR did not read it
            "video_id": ["v1", "v1", "v1", "v2", "v2"],
            "frame_relative_path": [f"video_v/frame_{i}.jpg" for i in range(5)],
        }
    )
    items = orientation_items_of_frames(manifest, pd.concat([fields, fields.iloc[:1]]), "frames")
    labels = weak_labels(items)
    assert list(zip(labels["item_id"], labels["orientation"], strict=True)) == [
        ("f1", "TRANS"),
        ("f2", "LONG"),
        ("f4", "ARAD"),
    ]
    assert list(labels["study_id"]) == ["video:v1", "video:v1", "video:v2"]
    assert labels["relative_path"].iloc[0] == "frames/video_v/frame_0.jpg"
    assert weak_label_counts(labels) == {"TRANS": 1, "LONG": 1, "ARAD": 1}
    assert list(items_to_predict(items)["item_id"]) == ["f3"]


def test_stills_are_grouped_by_their_study() -> None:
    images = pd.DataFrame(
        {
            "instance_id": ["i1", "i2"],
            "study_key": ["s1", "s2"],
            "image_relative_path": ["study_s1/image_i1.png", "study_s2/image_i2.png"],
            "orientation": ["SAG", None],
        }
    )
    items = orientation_items_of_stills(images, "dicom_images")
    assert items["text_orientation"].isna().tolist() == [False, True]
    assert items.fillna({"text_orientation": ""}).to_dict("records") == [
        {
            "item_id": "i1",
            "kind": "image",
            "study_id": "study:s1",
            "relative_path": "dicom_images/study_s1/image_i1.png",
            "text_orientation": "SAG",
        },
        {
            "item_id": "i2",
            "kind": "image",
            "study_id": "study:s2",
            "relative_path": "dicom_images/study_s2/image_i2.png",
            "text_orientation": "",
        },
    ]


def test_held_out_folds_never_put_a_study_on_both_sides() -> None:
    sizes = [9, 1, 4, 4, 2, 7, 3]  # uneven studies, so a per-image split would cut some
    labels = pd.DataFrame(
        {
            "item_id": [f"s{s}i{i}" for s, n in enumerate(sizes) for i in range(n)],
            "study_id": [f"study:s{s}" for s, n in enumerate(sizes) for _ in range(n)],
            "relative_path": "x.png",
            "orientation": [("TRANS", "LONG")[i % 2] for n in sizes for i in range(n)],
        }
    )
    items = training_items(labels)
    folds = held_out_folds(items, FAST)
    folds_of_study = items.assign(fold=folds).groupby("patient_id")["fold"].nunique()
    assert (folds_of_study == 1).all()
    assert sorted(set(folds.tolist())) == [0, 1, 2]


def _items(orientations: list[str], studies: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(len(orientations))],
            "kind": "image",
            "study_id": studies,
            "relative_path": "missing.png",  # never read: not trained before any image is
            "text_orientation": orientations,
        }
    )


def test_one_orientation_read_is_not_trained_and_says_why(tmp_path: Path) -> None:
    model = train_orientation_model(tmp_path, _items(["TRANS"] * 6, list("aabbcc")), FAST)
    assert (model.trained, model.model, model.beats_majority) == (False, None, False)
    assert (
        model.reason
        == "1 orientation(s) with at least 3 weak labels (read: {'TRANS': 6}); 2 are needed"
    )


def test_too_few_studies_is_not_trained(tmp_path: Path) -> None:
    items = _items(["TRANS", "LONG"] * 3, list("aaabbb"))
    model = train_orientation_model(tmp_path, items, FAST)
    assert not model.trained
    assert model.reason.startswith("2 studies with weak labels; at least 3 are needed")
    assert model.summary()["weak_labels"] == {"TRANS": 3, "LONG": 3}


def test_a_rare_orientation_is_left_out_of_the_classes(tmp_path: Path) -> None:
    items = _items(["TRANS", "TRANS", "TRANS", "OBL"], list("abcd"))
    model = train_orientation_model(tmp_path, items, FAST)
    assert not model.trained
    assert model.weak_labels == {"TRANS": 3, "OBL": 1}
    assert model.reason.startswith("1 orientation(s) with at least 3 weak labels")


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """6 studies x 8 stills; the orientation burned in (and read) on about half of them."""
    root = tmp_path_factory.mktemp("orientation")
    rng = np.random.default_rng(3)
    rows = []
    for study in range(6):
        gain = float(rng.uniform(0.7, 1.3))
        for index in range(8):
            truth = ("TRANS", "LONG")[int(rng.random() < 0.5)]
            text = f"LT BREAST {('TRANSVERSE', 'LONG')[truth == 'LONG']}" if index % 2 else ""
            image = synthetic_probe_image(truth, study * 100 + index, gain=gain, text=text)
            path = f"study_{study}/image_{index}.png"
            (root / path).parent.mkdir(exist_ok=True)
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
    return root, pd.DataFrame(rows)


def test_predictions_fill_only_the_images_without_orientation_text(synthetic_set) -> None:
    root, items = synthetic_set
    model = train_orientation_model(root, items, FAST)
    assert model.trained and model.classes == ("TRANS", "LONG")
    assert model.studies == 6 and model.held_out_accuracy is not None
    # the engine held out whole studies (6 groups), not images (24 with text)
    held_out = model.metadata["held_out"]
    assert (held_out["patients"], held_out["folds"], held_out["frames"]) == (6, 3, 24)
    predictions = predict_orientation(
        root, items, model.model, model.spec, model.model_id, model.beats_majority, device="cpu"
    ).to_pandas()
    textless = items[items["text_orientation"].isna()]
    assert sorted(predictions["item_id"]) == sorted(textless["item_id"])
    assert set(predictions["label_set"]) == {f"model:{model.model_id}"}
    assert predictions["confidence"].between(0.5, 1.0).all()
    truth = textless.set_index("item_id")["truth"]
    accuracy = float((predictions.set_index("item_id")["orientation"] == truth).mean())
    read = items["text_orientation"].dropna()
    majority = float((truth == read.value_counts().idxmax()).mean())
    assert accuracy > majority  # the content carries the orientation: the model saw it


def test_text_that_was_read_wins_over_any_prediction() -> None:
    images = pd.DataFrame(
        {"image_id": ["a", "b", "c", "d"], "text_orientation": ["RAD", None, "", None]}
    )
    predictions = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "orientation": ["TRANS", "LONG", "LONG"],
            "confidence": np.array([0.99, 0.81234, 0.7], dtype=np.float32),
            "label_set": "model:0123456789abcdef",
            "beats_majority": True,
        }
    )
    out = with_orientation(images, predictions)
    assert list(out["orientation"]) == ["RAD", "LONG", "LONG", None]
    assert list(out["orientation_source"]) == ["text", *["model:0123456789abcdef"] * 2, None]
    assert out["orientation_confidence"].round(4).tolist()[1:3] == [0.8123, 0.7]
    assert np.isnan(out["orientation_confidence"].iloc[0])


def test_predictions_of_a_model_that_lost_to_the_majority_are_not_exported() -> None:
    images = pd.DataFrame({"image_id": ["b"], "text_orientation": [None]})
    predictions = pd.DataFrame(
        {
            "item_id": ["b"],
            "orientation": ["LONG"],
            "confidence": [0.9],
            "label_set": "model:x",
            "beats_majority": False,
        }
    )
    assert with_orientation(images, predictions)["orientation"].isna().all()
    untrusted = with_orientation(images, predictions, include_untrusted=True)
    assert untrusted["orientation_source"].tolist() == ["model:x"]
