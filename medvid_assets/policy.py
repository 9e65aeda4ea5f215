"""Policies applied to every medvid asset in one place.

- :func:`per_file`: the bad-input policy of partitioned assets. Each video or study partition
  is one input; any bad-input error (:func:`medvid.quarantine.is_input_error`) raised by the
  asset ends as a quarantine record with its reason and stage, the asset reports ``quarantined``
  and the run succeeds; later assets of a quarantined partition report ``skipped``. Other errors
  (bugs, a full disk, an unreachable store) fail the run as usual. The input is not tried again
  until it changes (new bytes are a new partition).
- :func:`settings_config` / :func:`resolve_settings`: every asset's settings come from the home
  config (:mod:`medvid.settings`), with single fields overridable in a run's config; the
  resolved settings and their fingerprint go into the materialization's metadata, and a rerun
  with other settings says which fields changed.
- :func:`table_preview`, :func:`deid_check_result`, :func:`markdown_png`: the UI's metadata.
"""

from __future__ import annotations

import base64
import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal, Optional

import dagster as dg
import pyarrow as pa
import pydantic
from pydantic import BaseModel, Field

from medvid.intake.ledger import ledger_entry_or_none
from medvid.quarantine import is_input_error, quarantine_error, quarantined_record
from medvid.settings import MedvidSettings, changed_fields, fingerprint, with_overrides
from medvid_resources import MediaStore

# --- settings ---------------------------------------------------------------------------------


def _override_type(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Literal:  # Dagster cannot make a Literal optional: a str, validated later
        return str
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _override_type(inner[0]) if len(inner) == 1 else annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return settings_config(annotation)
    return annotation


@functools.cache
def settings_config(model: type[BaseModel], name: str | None = None) -> type[dg.Config]:
    """The Dagster ``Config`` of a settings section: the same fields, every one optional.

    Unset (null) means "as in the home config"; the launchpad of each job is pre-filled with
    the home config's values (see :mod:`medvid_assets.orchestration.jobs`)."""
    fields = {
        field_name: (
            Optional[_override_type(info.annotation)],  # noqa: UP045 - Dagster needs Optional
            Field(
                None,
                description=(info.description or "")
                + " (unset: the home config medvid.yaml, else "
                + repr(info.get_default(call_default_factory=True))
                + ")",
            ),
        )
        for field_name, info in model.model_fields.items()
    }
    doc = (model.__doc__ or "").strip() + "\n\nUnset fields take the home config's value."
    return pydantic.create_model(
        name or model.__name__.replace("Settings", "Config"),
        __base__=dg.Config,
        __doc__=doc,
        **fields,
    )


class SettingsResource(dg.ConfigurableResource):
    """The home config (``<home>/medvid.yaml``), read when a run starts (never at import)."""

    path: str = Field(description="The home config file (medvid.yaml); absent = defaults.")

    def load(self) -> MedvidSettings:
        from medvid.settings import load_settings

        return load_settings(self.path)


def resolve_settings(
    context: dg.AssetExecutionContext,
    settings: SettingsResource,
    section: str,
    config: dg.Config | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The settings at ``section`` (``"frames"``, ``"predict.model"``...) for this run: the home
    config's (defaults for a section it lacks), with the fields ``config`` sets explicitly.
    Returns ``(settings, metadata)``; the metadata records them (and, when the last
    materialization of this partition used other settings, which fields changed)."""
    base: Any = settings.load()
    model: type[BaseModel] = MedvidSettings
    for name in section.split("."):
        annotation = model.model_fields[name].annotation
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        model = inner[0] if inner else annotation
        base = getattr(base, name) if base is not None else None
    if base is None:
        base = model()
    resolved = with_overrides(base, config.model_dump() if config is not None else {})
    dump = resolved.model_dump(mode="json")
    metadata: dict[str, Any] = {
        "settings": dg.MetadataValue.json(dump),
        "settings_fingerprint": fingerprint(dump),
    }
    previous = _previous_settings(context)
    if previous is not None and previous != dump:
        changed = changed_fields(previous, dump)
        context.log.warning(
            f"{context.asset_key.to_user_string()} made again with other {section} settings:"
            f" {', '.join(changed)}"
        )
        metadata["settings_changed"] = dg.MetadataValue.json(changed)
    return resolved, metadata


def _previous_settings(context: dg.AssetExecutionContext) -> dict | None:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=context.asset_key,
            asset_partitions=[context.partition_key] if context.has_partition_key else None,
        ),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get("settings")
    return value.value if value is not None else None  # type: ignore[return-value]


# --- the bad-input policy ---------------------------------------------------------------------


def partition_display_name(store: MediaStore, partition_key: str) -> str:
    """What a partition is called outside protected/: a video's display name, else its key."""
    entry = ledger_entry_or_none(store, partition_key)
    return entry.display_name if entry is not None else partition_key


def _check_results(context: dg.AssetExecutionContext, description: str) -> list:
    return [
        dg.AssetCheckResult(
            asset_key=key.asset_key, check_name=key.name, passed=True, description=description
        )
        for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name)
    ]


def per_file(fn: Callable) -> Callable:
    """Decorate a partitioned asset's body with the bad-input policy (module docstring).

    The body takes ``context`` and a ``media_store`` parameter and returns or yields its
    results; the decorated function is what ``@dg.asset`` wraps."""
    is_generator = inspect.isgeneratorfunction(fn)

    @functools.wraps(fn)
    def wrapper(context: dg.AssetExecutionContext, *args, **kwargs):
        store: MediaStore = kwargs["media_store"]
        stage = context.asset_key.to_user_string()
        record = quarantined_record(store, context.partition_key)
        if record is not None:
            context.log.info(f"skipping: input quarantined at {record.stage}: {record.reason}")
            yield dg.MaterializeResult(
                metadata={
                    "status": "skipped",
                    "reason": f"quarantined at {record.stage}: {record.reason}",
                }
            )
            yield from _check_results(context, "input quarantined: nothing written")
            return
        try:
            if is_generator:
                yield from fn(context, *args, **kwargs)
            else:
                yield fn(context, *args, **kwargs)
        except Exception as error:
            if not is_input_error(error):
                raise
            name = partition_display_name(store, context.partition_key)
            record = quarantine_error(
                store, error, content_id=context.partition_key, file=name, stage=stage
            )
            context.log.warning(f"quarantined {name} at {stage}: {record.reason}")
            yield dg.MaterializeResult(
                metadata={"status": "quarantined", "reason": record.reason, "stage": stage}
            )
            yield from _check_results(context, "input quarantined: nothing written")

    # Dagster reads the parameters' types: give it the body's, resolved in the body's module
    wrapper.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
    return wrapper


# --- metadata for the UI ------------------------------------------------------------------------


def table_preview(
    table: pa.Table, columns: Sequence[str] | None = None, *, empty: str = "(empty)"
) -> dg.MetadataValue:
    """A Markdown table of ``table`` (optionally only ``columns``), or ``empty`` without rows."""
    if table.num_rows == 0:
        return dg.MetadataValue.md(empty)
    selected = table.select(list(columns)) if columns is not None else table
    return dg.MetadataValue.md(selected.to_pandas().to_markdown(index=False))


def deid_check_result(
    check_name: str, findings: list[str], *, checked: int, what: str, passed_text: str
) -> dg.AssetCheckResult:
    """A de-identification check: passed without findings; the findings (which name what was
    found and where, never the PHI) go into the metadata, the first 50 of them."""
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=not findings,
        metadata={f"{what}_checked": checked, "findings": dg.MetadataValue.json(findings[:50])},
        description=passed_text
        if not findings
        else f"{len(findings)} finding(s): not exported until fixed",
    )


def markdown_image(data: bytes, alt: str, mime: str = "image/png") -> dg.MetadataValue:
    """An image (PNG or JPEG bytes) shown inline in the UI's metadata."""
    return dg.MetadataValue.md(f"![{alt}](data:{mime};base64,{base64.b64encode(data).decode()})")
