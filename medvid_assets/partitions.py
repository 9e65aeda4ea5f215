"""Partitions: one dynamic partition per video (keyed by content id) and per DICOM study
(keyed by a pseudonymous study id), and one daily partition per UTC day of landing."""

from __future__ import annotations

import dagster as dg

video_partitions = dg.DynamicPartitionsDefinition(name="videos")
"""One partition per video, keyed by its content id (first 16 hex digits of its sha256), or a
salted id for a DICOM cine loop (:func:`medvid.deid.cine_video_id`)."""

study_partitions = dg.DynamicPartitionsDefinition(name="studies")
"""One partition per DICOM study, keyed by a pseudonymous study id (``s`` + 15 hex digits of a
salted HMAC of the StudyInstanceUID, :func:`medvid.deid.study_key`), never by a raw UID."""

landing_days = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="UTC", end_offset=1)
"""One partition per UTC day on which landing files were last modified: the day's intake
(today included: files land all day)."""
