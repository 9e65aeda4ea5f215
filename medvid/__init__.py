"""medvid: the framework-free core of the medical video and DICOM data platform.

Plain functions and small classes over numpy arrays, paths and Arrow/pandas tables.
Nothing in this package imports Dagster, boto3 or Labelbox.
"""

__version__ = "0.1.0"
