"""Training-dataset export: annotations CSV/JSON, frames, ImageFolder, splits and manifest.

- :mod:`medvid.export.annotations` — :data:`ANNOTATION_COLUMNS` and the CSV/JSON cell formats.
- :mod:`medvid.export.splits` — :func:`split_by_patient`.
- :mod:`medvid.export.dataset` — :class:`ExportConfig`, :func:`write_training_dataset`.
- :mod:`medvid.export.labelsets` — :func:`export_labels`: which label sets go into an export.
- :mod:`medvid.export.multilabel` — ``multilabel.json``: image path, label vector, label mask.
- :mod:`medvid.export.dataset_file` — ``dataset.json``: the dataset as one JSON document.
- :mod:`medvid.export.torch_dataset` — :class:`MultilabelFrameDataset` (imports torch; import
  it from its module).
- :mod:`medvid.export.verify` — :func:`verify_export`, the checks run before training.
- :mod:`medvid.export.phi_scan` — :func:`~medvid.export.phi_scan.scan_export`, the PHI scan of
  a written export (imports the de-identification stack; import it from its module).
"""

from medvid.export.annotations import ANNOTATION_COLUMNS, information_source_ids
from medvid.export.dataset import (
    ExportConfig,
    ExportSummary,
    PatientIdError,
    export_date,
    label_folder_name,
    write_training_dataset,
)
from medvid.export.labelsets import ExportLabels, export_labels
from medvid.export.splits import split_by_patient
from medvid.export.verify import verify_export

__all__ = [
    "ANNOTATION_COLUMNS",
    "ExportConfig",
    "ExportLabels",
    "ExportSummary",
    "PatientIdError",
    "export_date",
    "export_labels",
    "information_source_ids",
    "label_folder_name",
    "split_by_patient",
    "verify_export",
    "write_training_dataset",
]
