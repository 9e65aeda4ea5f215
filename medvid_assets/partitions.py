"""Partitions: batches (a UTC day of landing x a shard: :mod:`medvid.batches`) for the per-video
and per-study work, and UTC days for intake.

A batch's videos and studies are its members; every batch asset works member by member
(:func:`medvid_assets.policy.per_member`), so one run processes many videos and the number of
partitions grows with days, not videos: a hospital archive of a million videos is still a few
thousand batches with members. Batch assets depend on the day's intake through the ``day``
dimension, so a backfill of a day (all assets, that day) takes the day's arrivals through the
whole path, then the labels and the dataset they changed. Shards without members are done in an
instant and never planned.
"""

import datetime as dt
import warnings
from collections.abc import Sequence

import dagster as dg

from medvid.batches import FIRST_DAY, SHARDS

landing_days = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC", end_offset=1)
"""One partition per UTC day on which landing files were last modified: the day's intake
(today included: files land all day; older files count as the first day)."""


class BatchPartitionsDefinition(dg.MultiPartitionsDefinition):
    """Dagster's day x shard partitions with its key list computed once per UTC hour.

    Dagster lists every key of a partitioned upstream asset at the start of each step of an
    unpartitioned asset that depends on it (its input data versions,
    ``dagster._core.execution.context.data_version_cache``), only to drop the list when it holds
    100 keys or more, which the batch keys always do. ``MultiPartitionsDefinition`` caches the
    list per exact ``current_time``, which is a new instant at every step, so each such step
    rebuilt 16 shards x every day since :data:`FIRST_DAY` (40,000 keys, about 2 s; 13 steps and
    26 s of a 90 s ``medvid run`` on two short clips, and growing by 16 keys a day). The keys of
    daily UTC partitions change only at midnight UTC, so the list of the current hour is the list
    of any instant in it: the same keys, built once an hour.
    """

    def _get_partition_keys(self, _current_time: dt.datetime) -> Sequence[dg.MultiPartitionKey]:
        if _current_time.tzinfo is not None:
            _current_time = _current_time.astimezone(dt.UTC).replace(
                minute=0, second=0, microsecond=0
            )
        return super()._get_partition_keys(_current_time)


batch_partitions = BatchPartitionsDefinition(
    {
        "day": landing_days,
        "shard": dg.StaticPartitionsDefinition([f"{i:02d}" for i in range(SHARDS)]),
    }
)
"""One partition per batch, keyed ``YYYY-MM-DD|SS`` (:func:`medvid.batches.batch_key`)."""

with warnings.catch_warnings():  # beta in Dagster 1.13, and the mapping this graph needs
    warnings.simplefilter("ignore", dg.BetaWarning)
    FROM_THE_DAYS_INTAKE = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="day")
    FROM_THE_DAYS_BATCHES = dg.MultiToSingleDimensionPartitionMapping(
        partition_dimension_name="day"
    )
"""FROM_THE_DAYS_INTAKE: a batch depends on its day's intake. FROM_THE_DAYS_BATCHES: a
day-partitioned asset (``daily_snapshot``) depends on every batch (shard) of its day."""
