"""The catalog: every storage key (:mod:`medvid.catalog.keys`) and table schema
(:mod:`medvid.catalog.schemas`) medvid uses, in one place."""

from medvid.catalog import keys
from medvid.catalog.keys import Tables, protected_table_key, table_key

__all__ = ["Tables", "keys", "protected_table_key", "table_key"]
