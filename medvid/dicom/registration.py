"""Indexing DICOM arrivals under their (pseudonymous) studies.

An arrival (a ``.dcm`` file, a file with the DICM preamble, a DICOMDIR's referenced file, or a
``.zip`` of studies, zips inside it unpacked too) has been copied into the protected zone by
intake. :func:`register_dicom_arrival` reads each instance's header (pixels not decoded) to find
its StudyInstanceUID and writes one index record per instance,
``protected/dicom_index/<study>/<instance_id>.json`` (the study key and instance id are salted
HMACs, :func:`medvid.deid.study_key`, :func:`medvid.deid.instance_key`). One record per file
means concurrent intake runs never overwrite each other's index, and registering an arrival
again writes the same records. Bad instances (not DICOM, truncated, no pixel data, unsupported
transfer syntax, no StudyInstanceUID) and nested zips that cannot be unpacked are quarantined;
the rest goes on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from medvid.catalog import keys
from medvid.deid.header import instance_key, study_key
from medvid.dicom.files import find_dicom_files, is_dicomdir, safe_unzip_nested
from medvid.dicom.header import read_header
from medvid.errors import CorruptMediaError, UnsupportedMediaError
from medvid.ids import content_id, sha256_file
from medvid.quarantine import QuarantineRecord, is_input_error, quarantine_error
from medvid.store import Store, read_json, stems, write_json

#: Elements read to index a file under its study (the full header is read later, once).
INDEX_KEYWORDS = ("StudyInstanceUID", "NumberOfFrames", "Rows", "Columns")


@dataclass
class DicomRegistration:
    """What :func:`register_dicom_arrival` found: per study key the instance ids of the
    arrival, and the inputs it quarantined."""

    studies: dict[str, list[str]] = field(default_factory=dict)
    quarantined: list[QuarantineRecord] = field(default_factory=list)


def _instance_files(
    store: Store, arrival_id: str, source_key: str, display: str, registration: DicomRegistration
) -> list[tuple[str, str]]:
    """``(store key, display name)`` of every DICOM file of an arrival (zips unpacked)."""
    if not source_key.endswith(".zip"):
        return [(source_key, display)]
    prefix = keys.dicom_unzip_prefix(arrival_id)
    root = store.local_path(f"{prefix}/.keep").parent
    files, problems = safe_unzip_nested(store.fetch(source_key), root)
    store.publish_prefix(prefix)
    for member, reason in problems:
        registration.quarantined.append(
            quarantine_error(
                store,
                UnsupportedMediaError(reason),
                content_id=content_id(
                    hashlib.sha256(f"{arrival_id}!{member}".encode()).hexdigest()
                ),
                file=f"{display}!{PurePosixPath(member).name}",
                stage="dicom_registration",
            )
        )
    found = find_dicom_files(root)
    del files  # every file was extracted; find_dicom_files decides which are DICOM
    return [
        (f"{prefix}/{path.relative_to(root).as_posix()}", f"{display}!{path.name}")
        for path in found
    ]


def register_dicom_arrival(
    store: Store, arrival_id: str, source_key: str, display: str, salt: str
) -> DicomRegistration:
    """Index every instance of one DICOM arrival under its study.

    Args:
        store: the media store (the arrival's verified copy is at ``source_key``).
        arrival_id: the arrival's content id.
        display: the arrival's display name (quarantine records and index records use it).
        salt: the de-identification secret.

    Returns the studies and instance ids found; a DICOMDIR itself indexes nothing (the files
    it references arrive as their own entries).

    Raises:
        CorruptMediaError, UnsupportedMediaError: the arrival as a whole is bad (an unreadable
            or unsafe outer zip); the caller quarantines it.
    """
    registration = DicomRegistration()
    if not source_key.endswith(".zip") and is_dicomdir(store.fetch(source_key)):
        return registration
    for key, name in _instance_files(store, arrival_id, source_key, display, registration):
        path = store.fetch(key)
        sha = sha256_file(path)
        try:
            header = read_header(path, sha256=sha, keywords=INDEX_KEYWORDS)
            uid = str(header.dataset.get("StudyInstanceUID", "") or "").strip()
            if not uid:
                raise CorruptMediaError("no StudyInstanceUID: cannot tell which study it is")
        except Exception as error:
            if not is_input_error(error):
                raise
            registration.quarantined.append(
                quarantine_error(
                    store, error, content_id=content_id(sha), file=name, stage="dicom_registration"
                )
            )
            continue
        study = study_key(uid, salt)
        instance = instance_key(sha, salt)
        write_json(
            store,
            keys.dicom_index_key(study, instance),
            {"key": key, "sha256": sha, "arrival": arrival_id, "name": name},
        )
        registration.studies.setdefault(study, []).append(instance)
    return registration


def read_study_index(store: Store, study: str) -> dict[str, dict]:
    """``{instance_id: {"key", "sha256", "arrival", "name"}}`` of a study (protected)."""
    prefix = keys.dicom_index_prefix(study)
    return {
        instance: read_json(store, keys.dicom_index_key(study, instance))
        for instance in stems(store, prefix)
    }


def registered_studies(store: Store) -> list[str]:
    """Every study key with at least one indexed instance, sorted."""
    base = keys.DICOM_INDEX + "/"
    return sorted(
        {
            k[len(base) :].split("/", 1)[0]
            for k in store.list_keys(keys.DICOM_INDEX)
            if "/" in k[len(base) :]
        }
    )


def study_digest(instance_ids: list[str]) -> str:
    """12 hex digits naming a study's set of instances: changes when an instance is added."""
    return hashlib.sha256(",".join(sorted(instance_ids)).encode()).hexdigest()[:12]
