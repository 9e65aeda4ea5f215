"""Partitions: batches (a UTC day of landing x a shard: :mod:`medvid.batches`) for the per-video
and per-study work, and UTC days for intake.

A batch's videos and studies are its members; every batch asset works member by member
(:func:`medvid_assets.policy.per_member`), so one run processes many videos and the number of
partitions grows with days, not videos. A day's batches are the keys starting with that day
(``2026-11-30.*``): backfill them in the UI to take a day through the whole path again.
"""

import dagster as dg

batch_partitions = dg.DynamicPartitionsDefinition(name="batches")
"""One partition per batch that has members, keyed ``YYYY-MM-DD.SS`` (added by intake)."""

landing_days = dg.DailyPartitionsDefinition(start_date="2020-01-01", timezone="UTC", end_offset=1)
"""One partition per UTC day on which landing files were last modified: the day's intake
(today included: files land all day)."""
