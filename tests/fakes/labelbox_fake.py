"""A hand-written fake of the Labelbox SDK's client boundary (``labelbox.Client`` and the objects
it hands out), for tests without network.

It implements only what :class:`medvid_resources.labelbox.LabelboxResource` calls, with the
SDK 7.x signatures and return shapes (``get_data_row_ids_for_global_keys`` returns
``{"status", "results", "errors"}`` with ``""`` for unknown keys; ``create_data_rows`` returns
a task with ``wait_till_done``/``errors``/``result``; ``project.export`` returns an export task
whose ``get_buffered_stream()`` yields objects with a ``.json`` attribute). It **records** every
call in :attr:`FakeLabelboxClient.calls` and keeps the data rows and batches it was asked to
create, so tests assert exactly what reached "Labelbox".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from labelbox.schema.export_task import StreamType
from lbox.exceptions import AuthenticationError, LabelboxError

_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):020d}"


@dataclass
class FakeUpsertTask:
    """Stands in for ``labelbox.schema.task.DataUpsertTask`` (already finished)."""

    created: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    waited: bool = False
    status: str = "COMPLETE"

    def wait_till_done(self, timeout_seconds: float = 300.0, check_frequency: float = 2.0) -> None:
        self.waited = True

    @property
    def errors(self) -> list[dict[str, Any]] | None:
        return self.failed or None

    @property
    def result(self) -> list[dict[str, Any]]:
        return self.created

    @property
    def created_data_rows(self) -> list[dict[str, Any]]:
        return self.created

    @property
    def failed_data_rows(self) -> list[dict[str, Any]] | None:
        return self.errors


@dataclass
class FakeDataset:
    """Stands in for ``labelbox.Dataset``."""

    client: FakeLabelboxClient
    uid: str
    name: str

    def create_data_rows(self, items: list[dict[str, Any]], **_: Any) -> FakeUpsertTask:
        items = [dict(item) for item in items]
        self.client.calls.append(("create_data_rows", {"dataset": self.name, "count": len(items)}))
        created: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for item in items:
            key = item.get("global_key")
            if key in self.client.data_rows:
                failed.append(
                    {
                        "message": f"Duplicate global key: '{key}'",
                        "spec": item,
                        "failedDataRows": [],
                    }
                )
                continue
            row = {"id": _new_id("dr"), "dataset": self.uid, **item}
            self.client.data_rows[key] = row
            created.append({k: row.get(k) for k in ("id", "global_key", "external_id", "row_data")})
        self.client.created_rows.extend(created)
        return FakeUpsertTask(created=created, failed=failed)


@dataclass
class FakeBatch:
    """Stands in for ``labelbox.schema.batch.Batch``."""

    uid: str
    name: str
    global_keys: list[str]

    @property
    def size(self) -> int:
        return len(self.global_keys)


@dataclass
class FakeJsonOutput:
    """Stands in for ``BufferedJsonConverterOutput`` (one export row in ``.json``)."""

    json: Any


@dataclass
class FakeExportTask:
    """Stands in for ``labelbox.schema.export_task.ExportTask`` (already complete)."""

    rows: list[dict[str, Any]]
    error_rows: list[dict[str, Any]] = field(default_factory=list)
    status: str = "COMPLETE"
    waited: bool = False

    def wait_till_done(self, timeout_seconds: int = 7200) -> None:
        self.waited = True

    def has_errors(self) -> bool:
        return bool(self.error_rows)

    def has_result(self) -> bool:
        return bool(self.rows)

    def get_buffered_stream(
        self, stream_type: StreamType = StreamType.RESULT
    ) -> Iterator[FakeJsonOutput]:
        if self.status != "COMPLETE":
            raise LabelboxError("Task is not ready yet")
        source = self.rows if stream_type == StreamType.RESULT else self.error_rows
        return iter([FakeJsonOutput(json=row) for row in source])


@dataclass
class FakeProject:
    """Stands in for ``labelbox.Project``."""

    client: FakeLabelboxClient
    uid: str
    name: str
    export_rows: list[dict[str, Any]]
    export_errors: list[dict[str, Any]] = field(default_factory=list)
    created_batches: list[FakeBatch] = field(default_factory=list)

    def batches(self) -> Iterable[FakeBatch]:
        self.client.calls.append(("batches", {"project": self.uid}))
        return list(self.created_batches)

    def create_batch(
        self,
        name: str,
        data_rows: list[str] | None = None,
        priority: int = 5,
        consensus_settings: dict[str, Any] | None = None,
        global_keys: list[str] | None = None,
    ) -> FakeBatch:
        self.client.calls.append(("create_batch", {"name": name, "count": len(global_keys or [])}))
        if (data_rows is None) == (global_keys is None):
            raise ValueError("Must pass either `data_rows` or `global_keys`, not both")
        if any(batch.name == name for batch in self.created_batches):
            raise LabelboxError(f"Batch with name {name} already exists in project")
        keys = list(global_keys or [])
        unknown = [key for key in keys if key not in self.client.data_rows]
        if unknown:
            raise LabelboxError(f"Data rows not found for global keys: {unknown[:3]}")
        batch = FakeBatch(uid=_new_id("batch"), name=name, global_keys=keys)
        self.created_batches.append(batch)
        return batch

    def export(
        self,
        task_name: str | None = None,
        filters: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> FakeExportTask:
        self.client.calls.append(("export", {"params": dict(params or {})}))
        return FakeExportTask(rows=list(self.export_rows), error_rows=list(self.export_errors))

    def export_v2(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("export_v2 is deprecated; medvid must call project.export()")


class FakeLabelboxClient:
    """Stands in for ``labelbox.Client``.

    Args:
        project_id: id of the one project this fake knows.
        export_rows: what ``project.export()`` streams (e.g. the rows of a fixture NDJSON).
        datasets: names of datasets that already exist.
        leak_key_in_errors: when set, ``get_project`` raises an ``AuthenticationError`` whose
            text contains this string, like an HTTP error that echoes request headers; used to
            check that the resource redacts the API key.
    """

    def __init__(
        self,
        *,
        project_id: str,
        export_rows: Iterable[dict[str, Any]] = (),
        datasets: Iterable[str] = (),
        leak_key_in_errors: str | None = None,
    ) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.data_rows: dict[str | None, dict[str, Any]] = {}
        self.created_rows: list[dict[str, Any]] = []
        self.datasets: list[FakeDataset] = [
            FakeDataset(self, _new_id("ds"), name) for name in datasets
        ]
        self.project = FakeProject(self, project_id, "fake project", list(export_rows))
        self.leak_key_in_errors = leak_key_in_errors

    @property
    def batches(self) -> list[FakeBatch]:
        return self.project.created_batches

    def get_project(self, project_id: str) -> FakeProject:
        self.calls.append(("get_project", {"project_id": project_id}))
        if self.leak_key_in_errors:
            raise AuthenticationError(
                f"401 Unauthorized: header Authorization: Bearer {self.leak_key_in_errors}"
            )
        if project_id != self.project.uid:
            raise LabelboxError(f"Project {project_id} not found")
        return self.project

    def get_datasets(self, where: Any = None) -> list[FakeDataset]:
        # ``where`` is the SDK's ``Dataset.name == name`` comparison; record the name it asks for
        # and return every dataset, so the resource must filter exactly itself.
        self.calls.append(("get_datasets", {"name": getattr(where, "value", None)}))
        return list(self.datasets)

    def get_dataset(self, dataset_id: str) -> FakeDataset:
        self.calls.append(("get_dataset", {"dataset_id": dataset_id}))
        for dataset in self.datasets:
            if dataset.uid == dataset_id:
                return dataset
        raise LabelboxError(f"Dataset {dataset_id} not found")

    def create_dataset(self, iam_integration: Any = None, **kwargs: Any) -> FakeDataset:
        self.calls.append(("create_dataset", {"name": kwargs.get("name")}))
        dataset = FakeDataset(self, _new_id("ds"), str(kwargs["name"]))
        self.datasets.append(dataset)
        return dataset

    def get_data_row_ids_for_global_keys(
        self, global_keys: list[str], timeout_seconds: int = 60
    ) -> dict[str, Any]:
        self.calls.append(("get_data_row_ids_for_global_keys", {"count": len(global_keys)}))
        results = [
            self.data_rows[key]["id"] if key in self.data_rows else "" for key in global_keys
        ]
        errors = [
            {"global_key": key, "error": "Data Row not found"}
            for key in global_keys
            if key not in self.data_rows
        ]
        if not errors:
            status = "Success"
        elif any(results):
            status = "Partial Success"
        else:
            status = "Failure"
        return {"status": status, "results": results, "errors": errors}

    def calls_named(self, name: str) -> list[dict[str, Any]]:
        """The recorded arguments of every call to ``name``, in order."""
        return [args for called, args in self.calls if called == name]
