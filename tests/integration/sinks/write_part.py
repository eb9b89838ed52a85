"""A worker writing one part, for the SIGKILL tests (run as a script, never imported).

Usage: ``python write_part.py SINK_PICKLE PARTITION BATCHES ROWS [HOLD_AFTER]``.
It unpickles the sink (as a cluster worker would) and writes the partition's
``BATCHES`` batches of ``ROWS`` rows (ids ``PARTITION * 1_000_000 + i``), then
commits and prints the `PartInfo` as JSON. Given ``HOLD_AFTER``, it stops after
that many batches, prints ``wrote`` and waits on stdin for the test's SIGKILL.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import sys

import pyarrow as pa


def main() -> None:
    sink_file, (partition, batches, rows, *hold) = sys.argv[1], map(int, sys.argv[2:])
    with open(sink_file, "rb") as file:
        sink = pickle.load(file)
    part = sink.open_part(partition)
    first = partition * 1_000_000
    for batch in range(batches):
        if hold and batch == hold[0]:
            print("wrote", flush=True)
            sys.stdin.read()  # killed here
            raise SystemExit("not killed")
        ids = range(first + batch * rows, first + (batch + 1) * rows)
        part.write(pa.table({"id": list(ids), "y": [2 * i + 1 for i in ids]}))
    print(json.dumps(dataclasses.asdict(part.commit())), flush=True)


if __name__ == "__main__":
    main()
