"""Policies applied to every medvid asset in one place.

- :func:`per_member`: the per-file policy of batch assets (a batch, :mod:`medvid.batches`, is
  the partition; its videos and studies are the members). Each member is worked on alone: a
  bad-input error (:func:`medvid.quarantine.is_input_error`) quarantines that member with its
  reason and stage and the others go on; members of a quarantined input are skipped at every
  later stage; members whose work is unchanged are reused (:mod:`medvid.status`). Other errors
  (bugs, a full disk, an unreachable store) leave that member for the next run, and the run
  fails after the others are done. An input is not tried again until it changes.
- :func:`settings_config` / :func:`resolve_settings`: every asset's settings come from the home
  config (:mod:`medvid.settings`), with single fields overridable in a run's config; the
  resolved settings and their fingerprint go into the materialization's metadata, and a rerun
  with other settings says which fields changed.
- :func:`table_preview`, :func:`deid_check_result`, :func:`markdown_image`: the UI's metadata.
"""

from __future__ import annotations

import base64
import functools
import inspect
import traceback
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import dagster as dg
import pyarrow as pa
import pydantic
from pydantic import BaseModel, Field

from medvid.batches import members as batch_members
from medvid.batches import members_digest as batch_members_digest
from medvid.intake.ledger import ledger_entry_or_none
from medvid.quarantine import is_input_error, quarantine_error, quarantined_ids
from medvid.settings import MedvidSettings, changed_fields, fingerprint, with_overrides
from medvid.status import MemberStatus, read_status, work_version, write_status
from medvid_assets.runs import record_worker
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


# --- the per-member policy of batch assets ------------------------------------------------------

REDO_TAG = "medvid/redo"
"""A run tagged ``medvid/redo: true`` recomputes every member of its batch, even unchanged."""
ONLY_TAG = "medvid/only"
"""A run tagged ``medvid/only: <id>[,<id>...]`` works only on those members of its batch (with
``medvid/redo: true``: redo one video from the UI's launchpad)."""
PREVIEWS_SHOWN = 4
FAILURES_SHOWN = 5  # errors named in a failed batch's Failure (all are in the log)


@dataclass
class MemberResult:
    """What a batch asset's body returns for one member: small JSON-able ``metadata`` (a row
    of the batch's table in the UI), ``checks`` (check name -> findings; none = passed) and
    an optional ``preview`` (JPEG bytes shown for the first members)."""

    metadata: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, list[str]] = field(default_factory=dict)
    preview: bytes | None = None


def member_display_name(store: MediaStore, member: str) -> str:
    """What a member is called outside protected/: a video's display name, else its key."""
    entry = ledger_entry_or_none(store, member)
    return entry.display_name if entry is not None else member


def per_member(
    kind: str,
    *,
    section: str | None = None,
    upstream: tuple[str, ...] = (),
    check_descriptions: dict[str, str] | None = None,
    version_of: Callable[[MediaStore, str], Any] | None = None,
    also: tuple[str, ...] = (),
) -> Callable:
    """Make a per-member body (``body(context, member_id, options, **params)``) into the body
    of a batch-partitioned asset.

    For each ``kind`` member (``video`` or ``study``) of the run's batch, in order: a member
    quarantined before (or whose ``upstream`` work was) is skipped; a member whose status
    (:mod:`medvid.status`) already has the version this run would compute (code version,
    settings of ``section`` or the run's own config, the home config's sections ``also`` that
    the body reads as well, upstream versions, and ``version_of(store)`` for inputs outside the
    batch such as the current model) is reused unless the run is tagged
    :data:`REDO_TAG`; otherwise the body runs. A bad-input error (:func:`is_input_error`)
    quarantines that member with its reason; any other error is logged and the member is left
    for the next run, the others go on, and the run fails at the end (so the planner tries the
    batch again). The batch's materialization shows counts and a table of its members; each
    check passes when no member has findings (ERROR severity, never blocking: what may leave
    medvid is decided per member by the export gate).
    """

    def decorate(body: Callable) -> Callable:
        signature = inspect.signature(body, eval_str=True)
        exposed = [p for n, p in signature.parameters.items() if n not in ("member_id", "options")]

        @functools.wraps(body)
        def wrapper(context: dg.AssetExecutionContext, **kwargs):
            store: MediaStore = kwargs["media_store"]
            record_worker(context)
            asset = context.asset_key.to_user_string()
            batch = context.partition_key
            options, recorded = (
                resolve_settings(context, kwargs["settings"], section, kwargs.get("config"))
                if section
                else (None, {})
            )
            if options is not None:
                settings_print = fingerprint(options)
            elif kwargs.get("config") is not None:
                settings_print = fingerprint(kwargs["config"].model_dump(mode="json"))
            else:
                settings_print = ""
            outside: list[Any] = []
            if also:
                home = kwargs["settings"].load()
                outside += [fingerprint(getattr(home, name)) for name in also]
            code = context.assets_def.code_versions_by_key.get(context.asset_key) or ""
            redo = context.run.tags.get(REDO_TAG) == "true"
            ids = batch_members(store, batch, kind)
            if only := context.run.tags.get(ONLY_TAG):
                ids = [i for i in ids if i in set(only.split(","))]
            quarantined = quarantined_ids(store)
            counts = {"processed": 0, "reused": 0, "quarantined": 0, "skipped": 0, "failed": 0}
            rows, previews, findings = [], [], {}
            errors: list[str] = []  # "<member>: <error>" of the members that failed
            for number, member in enumerate(ids, start=1):
                shown = member_display_name(store, member)
                ups = [read_status(store, up, member) for up in upstream]
                if member in quarantined or any(u is None or u.outcome != "ok" for u in ups):
                    counts["skipped"] += 1
                    rows.append({"member": shown, "outcome": "skipped"})
                    continue
                own = version_of(store, member) if version_of is not None else None
                version = work_version(code, settings_print, [u.version for u in ups], outside, own)
                status = read_status(store, asset, member)
                if redo or status is None or status.version != version or status.outcome != "ok":
                    context.log.info(f"{asset}: {kind} {number}/{len(ids)} {shown}")
                    try:
                        result = body(context, member, options, **kwargs) or MemberResult()
                    except Exception as error:
                        if is_input_error(error):
                            record = quarantine_error(
                                store, error, content_id=member, file=shown, stage=asset
                            )
                            context.log.warning(f"quarantined {shown} at {asset}: {record.reason}")
                            counts["quarantined"] += 1
                            rows.append({"member": shown, "outcome": "quarantined"})
                        else:
                            counts["failed"] += 1
                            context.log.error(
                                f"{asset} failed for {shown} (tried again next run):\n"
                                + traceback.format_exc()
                            )
                            rows.append({"member": shown, "outcome": "failed"})
                            errors.append(f"{shown}: {type(error).__name__}: {error}")
                        continue
                    status = MemberStatus(
                        asset=asset,
                        member=member,
                        outcome="ok",
                        version=version,
                        metadata=result.metadata,
                        checks={name: {"findings": f} for name, f in result.checks.items()},
                    )
                    write_status(store, status)
                    counts["processed"] += 1
                    if result.preview is not None and len(previews) < PREVIEWS_SHOWN:
                        previews.append((shown, result.preview))
                else:
                    counts["reused"] += 1
                rows.append({"member": shown, "outcome": "ok", **status.metadata})
                for name, check in status.checks.items():
                    findings.setdefault(name, [])
                    findings[name] += [f"{shown}: {f}" for f in check["findings"]]
            if counts["failed"]:
                shown_errors = "\n".join(f"  {e}" for e in errors[:FAILURES_SHOWN])
                more = len(errors) - FAILURES_SHOWN
                raise dg.Failure(
                    description=f"{asset}: {counts['failed']} of {len(ids)} {kind}(s) failed"
                    " (tracebacks in the log); the others are done and the batch is tried again:\n"
                    + shown_errors
                    + (f"\n  ... and {more} more" if more > 0 else ""),
                    metadata=counts,
                )
            metadata: dict[str, Any] = {
                **counts,
                f"{kind}s": len(ids),
                "members_digest": batch_members_digest(store, batch),
                kind + "_table": table_preview(pa.Table.from_pylist(rows), empty="(none)"),
                **recorded,
            }
            for index, (shown, image) in enumerate(previews):
                metadata[f"preview_{index + 1}"] = markdown_image(image, shown, "image/jpeg")
            yield dg.MaterializeResult(metadata=metadata)
            for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
                found = findings.get(key.name, [])
                yield dg.AssetCheckResult(
                    asset_key=key.asset_key,
                    check_name=key.name,
                    passed=not found,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={
                        "findings": dg.MetadataValue.json(found[:50]),
                        "members_with_findings": len({f.split(": ", 1)[0] for f in found}),
                    },
                    description=(check_descriptions or {}).get(key.name, "")
                    if not found
                    else f"{len(found)} finding(s): those {kind}s stay out of exports",
                )

        wrapper.__signature__ = signature.replace(parameters=exposed)  # type: ignore[attr-defined]
        return wrapper

    return decorate


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
