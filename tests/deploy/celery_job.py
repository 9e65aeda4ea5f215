"""A two-step asset job run by the Celery tests: ``decoded`` on the default queue, ``inferred``
tagged like medvid's GPU assets (``pool="gpu"`` and :data:`GPU_OP_TAGS`). Workers import it by
module name, so it lives in a file rather than inside a test."""

import dagster as dg

from medvid_assets.executors import GPU_OP_TAGS, celery_executor_def


@dg.asset
def decoded() -> int:
    return 21


@dg.asset(pool="gpu", op_tags=GPU_OP_TAGS)
def inferred(decoded: int) -> int:
    return decoded * 2


celery_pipeline = dg.define_asset_job(
    "celery_pipeline",
    selection=dg.AssetSelection.assets(decoded, inferred),
    executor_def=celery_executor_def(),
)

defs = dg.Definitions(assets=[decoded, inferred], jobs=[celery_pipeline])
