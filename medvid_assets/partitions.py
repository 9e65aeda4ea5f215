"""Partitions: one dynamic partition per video (keyed by content id), one per DICOM study (keyed
by a pseudonymous study id), and daily partitions for landing-zone arrivals."""

from __future__ import annotations

import dagster as dg

video_partitions = dg.DynamicPartitionsDefinition(name="videos")
"""One partition per video, keyed by its content id (first 16 hex digits of its sha256)."""

study_partitions = dg.DynamicPartitionsDefinition(name="studies")
"""One partition per DICOM study, keyed by a pseudonymous study id (``s`` + 15 hex digits of a
salted HMAC of the StudyInstanceUID, :func:`medvid.deid.study_key`), never by a raw UID."""

arrival_days = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC")
"""One partition per calendar day (UTC) of landing-zone arrivals."""
