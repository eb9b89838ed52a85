"""Where results go: output targets, the segments a run writes, and the final step.

Each backend is a `Target` subclass in its own module (`text`, `stdout`,
`sqlite`, `parquet`); `output_target` picks one from the path.

Targets: JSON Lines (``.jsonl``, ``.ndjson``, or ``-`` for standard output), CSV
(``.csv``) and TSV (``.tsv``), each optionally compressed (``.gz``, ``.zst``);
a table of an SQLite database (``.sqlite``, ``.sqlite3``, ``.db``); a Parquet
file (``.parquet``, ``.pq``); or a table of a Parquet dataset: a folder (an
existing one, or a path ending in ``/``) whose sub-folder ``TABLE/`` holds the
table's ``part-*.parquet`` files.

A run writes its rows into segments in the job's parts folder, never into the
target: text as self-contained (compressed) pieces appended to one file per
run, SQLite rows into one staging database, Parquet rows as Arrow streams
appended to one file per run (written as Parquet, in row groups of 65,536 rows,
at the end). Every write is durable, so the job commits after each chunk. A
segment can be cut back to what the job committed (`trim`). `finish` then moves
the rows into the target in one step, honouring ``--if-exists``:

- ``fail`` (default): refuse a target that exists (a file; a table of a
  database or dataset: other tables are no obstacle).
- ``append``: add the rows to the target (a CSV/TSV header must match).
- ``replace``: replace the target; in a database or dataset only the named
  table, never anything else in it.
"""

from .base import IF_EXISTS, Segment, Target, finish, open_segment, trim
from .encode import jsonl_text
from .targets import OUTPUT_FORMATS, output_target

__all__ = [
    "IF_EXISTS",
    "OUTPUT_FORMATS",
    "Segment",
    "Target",
    "finish",
    "jsonl_text",
    "open_segment",
    "output_target",
    "trim",
]
