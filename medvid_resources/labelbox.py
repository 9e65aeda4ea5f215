"""Labelbox, through the official ``labelbox`` SDK: upload frames as data rows, stream project
exports, archive every retrieval.

Parsing the export into tables is pure core code (:mod:`medvid.labels.labelbox`); this resource
only talks to Labelbox. The API key arrives through ``dg.EnvVar("LABELBOX_API_KEY")`` and never
appears in logs, ``repr`` or error messages (errors raised from the SDK are re-raised as
:class:`LabelboxResourceError` with the key replaced by ``***``).

Tests replace the SDK client by overriding :meth:`LabelboxResource._client` in a subclass, so the
code that runs in production is the code under test.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from medvid.io import atomic_path
from medvid.labels.labelbox import data_rows_for_frames

__all__ = ["LabelboxResource", "LabelboxResourceError", "UploadReport"]

#: ``project.export()`` parameters: everything the parser reads (label details for reviews and
#: dates, project details for the workflow status, every frame of a video object).
EXPORT_PARAMS: dict[str, bool] = {
    "data_row_details": True,
    "metadata_fields": False,
    "attachments": False,
    "project_details": True,
    "label_details": True,
    "performance_details": False,
    "interpolated_frames": True,
}

_REDACTED = "***"


class LabelboxResourceError(RuntimeError):
    """A Labelbox call failed (network, authentication, server-side error); the API key is
    redacted from the message."""


@dataclass(frozen=True)
class UploadReport:
    """Outcome of :meth:`LabelboxResource.upload_frames`.

    Attributes:
        dataset_id: the Labelbox dataset that holds the data rows.
        requested: frames asked for.
        already_present: global keys that already had a data row (not created again).
        created: data rows created by this call.
        failed: ``{"global_key", "message"}`` for rows Labelbox refused.
        batches_created / batches_skipped: batch names created now / already in the project.
    """

    dataset_id: str
    requested: int
    already_present: int
    created: int
    failed: tuple[dict[str, str], ...] = ()
    batches_created: tuple[str, ...] = ()
    batches_skipped: tuple[str, ...] = ()
    created_global_keys: tuple[str, ...] = field(default=(), repr=False)

    def summary(self) -> dict[str, Any]:
        """Counts for asset metadata (JSON-serialisable)."""
        return {
            "dataset_id": self.dataset_id,
            "requested": self.requested,
            "already_present": self.already_present,
            "created": self.created,
            "failed": len(self.failed),
            "batches_created": list(self.batches_created),
            "batches_skipped": list(self.batches_skipped),
        }


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class LabelboxResource(dg.ConfigurableResource):
    """A Labelbox project (and the dataset its frames are uploaded to).

    Configure in ``Definitions`` with the key from the environment::

        LabelboxResource(api_key=dg.EnvVar("LABELBOX_API_KEY"), project_id="...",
                         dataset_name="medvid-frames")
    """

    api_key: str = Field(
        description="Labelbox API key. Pass dg.EnvVar('LABELBOX_API_KEY'); never logged.",
        repr=False,
    )
    project_id: str = Field(description="Id of the Labelbox project labels are read from.")
    dataset_name: str = Field(
        default="medvid-frames",
        description="Labelbox dataset that uploaded frames go to (created when absent).",
    )
    batch_size: int = Field(
        default=1000,
        description="Data rows per create_data_rows call and per project batch (max 100000).",
    )
    endpoint: str | None = Field(
        default=None,
        description="GraphQL endpoint for on-premise Labelbox; default: the SDK's cloud URL.",
    )
    export_timeout_s: int = Field(
        default=7200, description="Seconds to wait for a project export to finish."
    )

    # -- secrecy

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (_REDACTED if name == "api_key" else value)

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self.__repr_args__())
        return f"{type(self).__name__}({args})"

    def __str__(self) -> str:
        return self.__repr__()

    def _redact(self, text: str) -> str:
        return text.replace(self.api_key, _REDACTED) if self.api_key else text

    def _error(self, what: str, exc: BaseException) -> LabelboxResourceError:
        return LabelboxResourceError(
            self._redact(f"Labelbox {what} failed: {type(exc).__name__}: {exc}")
        )

    @property
    def _log(self) -> logging.Logger:
        return dg.get_dagster_logger("medvid.labelbox")

    # -- the SDK boundary

    def _client(self) -> Any:
        """A ``labelbox.Client``; tests override this method with a fake client."""
        import labelbox

        kwargs: dict[str, Any] = {"api_key": self.api_key}
        if self.endpoint:
            kwargs["endpoint"] = self.endpoint
        return labelbox.Client(**kwargs)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one SDK call; any exception becomes a redacted :class:`LabelboxResourceError`
        (``from None``, so the original text with a possible key is not chained)."""
        try:
            return fn()
        except Exception as exc:  # SDK, HTTP and network errors all end here
            error = self._error(what, exc)
        raise error from None

    def _dataset(self, client: Any) -> Any:
        from labelbox import Dataset

        where = Dataset.name == self.dataset_name
        datasets = self._call("get_datasets", lambda: list(client.get_datasets(where=where)))
        for dataset in datasets:  # filter again: the name match must be exact
            if dataset.name == self.dataset_name:
                return dataset
        self._log.info("creating Labelbox dataset %r", self.dataset_name)
        return self._call("create_dataset", lambda: client.create_dataset(name=self.dataset_name))

    def _existing_keys(self, client: Any, keys: list[str]) -> set[str]:
        existing: set[str] = set()
        for chunk in _chunks(keys, self.batch_size):
            answer = self._call(
                "get_data_row_ids_for_global_keys",
                lambda chunk=chunk: client.get_data_row_ids_for_global_keys(chunk),
            )
            results = list(answer.get("results") or [])
            if len(results) == len(chunk):
                existing.update(key for key, row_id in zip(chunk, results, strict=True) if row_id)
            else:
                missing = {error.get("global_key") for error in answer.get("errors") or []}
                existing.update(key for key in chunk if key not in missing)
        return existing

    # -- public API

    def upload_frames(
        self, frames: pd.DataFrame, url_for: Callable[[str], str], batch_name: str
    ) -> UploadReport:
        """Create a data row per frame (global key = ``frame_id``) and attach them to the
        project in batches named ``<batch_name>-<NNNN>``.

        Idempotent: global keys that already have a data row are not created again, and a batch
        whose name already exists in the project is not created again, so re-running the same
        upload creates nothing; re-running after a crash between the two steps attaches the rows
        that were created but not batched.

        Args:
            frames: frame manifest with ``frame_id`` and ``frame_relative_path``.
            url_for: ``frame_relative_path`` -> URL that Labelbox can fetch.
            batch_name: prefix of the batch names, unique per upload (e.g. the partition key).

        Raises:
            LabelboxResourceError: a Labelbox call failed (message without the API key).
            ValueError: the manifest lacks a column or repeats a frame id.
        """
        payloads = data_rows_for_frames(frames, url_for)
        keys = [payload["global_key"] for payload in payloads]
        client = self._client()
        project = self._call("get_project", lambda: client.get_project(self.project_id))
        dataset = self._dataset(client)
        existing = self._existing_keys(client, keys)
        new_payloads = [payload for payload in payloads if payload["global_key"] not in existing]
        created_keys: list[str] = []
        failed: list[dict[str, str]] = []
        for chunk in _chunks(new_payloads, self.batch_size):
            task = self._call(
                "create_data_rows", lambda chunk=chunk: dataset.create_data_rows(chunk)
            )
            self._call("create_data_rows (wait)", task.wait_till_done)
            for error in task.errors or []:
                spec = error.get("spec") or {}
                failed.append(
                    {
                        "global_key": str(spec.get("global_key", "")),
                        "message": self._redact(str(error.get("message", error))),
                    }
                )
            created_keys.extend(str(row.get("global_key")) for row in task.result or [])
        self._log.info(
            "Labelbox upload to dataset %r: %d frames, %d already present, %d created, %d failed",
            self.dataset_name,
            len(keys),
            len(existing),
            len(created_keys),
            len(failed),
        )
        failed_keys = {entry["global_key"] for entry in failed}
        batchable = [key for key in keys if key not in failed_keys]
        batch_names = {
            batch.name for batch in self._call("batches", lambda: list(project.batches()))
        }
        batches_created: list[str] = []
        batches_skipped: list[str] = []
        for index, chunk in enumerate(_chunks(batchable, self.batch_size)):
            name = f"{batch_name}-{index:04d}"
            if name in batch_names:
                batches_skipped.append(name)
                continue
            self._call(
                "create_batch",
                lambda name=name, chunk=chunk: project.create_batch(name, global_keys=chunk),
            )
            batches_created.append(name)
        return UploadReport(
            dataset_id=str(dataset.uid),
            requested=len(keys),
            already_present=len(existing),
            created=len(created_keys),
            failed=tuple(failed),
            batches_created=tuple(batches_created),
            batches_skipped=tuple(batches_skipped),
            created_global_keys=tuple(created_keys),
        )

    def export_rows(self) -> Iterator[dict[str, Any]]:
        """Stream the project's export rows (``project.export()`` with :data:`EXPORT_PARAMS`,
        read through ``get_buffered_stream()``; the deprecated ``export_v2`` is not used).

        Yields:
            One dict per data row (the export v2 row shape read by
            :func:`medvid.labels.labelbox.parse_export_v2_rows`).

        Raises:
            LabelboxResourceError: the export task failed or reported errors.
        """
        from labelbox.schema.export_task import StreamType

        client = self._client()
        project = self._call("get_project", lambda: client.get_project(self.project_id))
        task = self._call("export", lambda: project.export(params=dict(EXPORT_PARAMS)))
        self._call(
            "export (wait)", lambda: task.wait_till_done(timeout_seconds=self.export_timeout_s)
        )
        if getattr(task, "status", "COMPLETE") == "FAILED":
            raise LabelboxResourceError(f"Labelbox export of project {self.project_id} failed")
        if self._call("export errors", task.has_errors):
            errors = [
                output.json
                for output in self._call(
                    "export errors", lambda: list(task.get_buffered_stream(StreamType.ERRORS))
                )
            ]
            raise LabelboxResourceError(
                self._redact(
                    f"Labelbox export of project {self.project_id} reported "
                    f"{len(errors)} error(s): {json.dumps(errors[:3], default=str)[:2000]}"
                )
            )
        stream = self._call("export stream", lambda: task.get_buffered_stream(StreamType.RESULT))
        count = 0
        for output in stream:
            count += 1
            yield output.json
        self._log.info("Labelbox export of project %s: %d data rows", self.project_id, count)

    def archive_export(self, rows: Iterable[dict[str, Any]], archive_dir: str | Path) -> Path:
        """Write ``rows`` as NDJSON to a new file in ``archive_dir`` and return its path.

        The name is ``labelbox_<project_id>_<UTC yyyymmddThhmmss.ffffff>Z.ndjson``; an existing
        file is never overwritten (a ``-<n>`` suffix is added on a clash). The write is atomic:
        a failed stream leaves no partial file.
        """
        archive_dir = Path(archive_dir)
        archive_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
        base = f"labelbox_{self.project_id}_{stamp}Z"
        target = archive_dir / f"{base}.ndjson"
        suffix = 1
        while target.exists():
            target = archive_dir / f"{base}-{suffix}.ndjson"
            suffix += 1
        count = 0
        with atomic_path(target) as tmp, tmp.open("w", encoding="utf-8") as stream:
            for row in rows:
                stream.write(json.dumps(row, sort_keys=True, default=str))
                stream.write("\n")
                count += 1
        self._log.info("archived %d Labelbox export rows to %s", count, target.name)
        return target

    def fetch_mask(self, url: str) -> bytes:
        """PNG bytes of a mask URL from an export (authorised with the API key; 60 s timeout).

        Raises:
            LabelboxResourceError: the download failed (message without the API key).
        """
        import requests

        def get() -> bytes:
            response = requests.get(
                url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=60
            )
            response.raise_for_status()
            return response.content

        return self._call("mask download", get)
