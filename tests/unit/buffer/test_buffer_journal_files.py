"""The journal on disk: a safe codec, quarantine of bad rows, clear errors, old files."""

from __future__ import annotations

import datetime
import os
import pickle
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from batchpilot.buffer import BatchStateManager, BufferedEntry, JournalError
from batchpilot.buffer.codec import UndecodableEntry, decode, encode

pytestmark = pytest.mark.timeout(20)

DATA = Path(__file__).parent / "data"


def steady() -> float:
    return 10.0


def write(path: Path, entries: list[Any], **options: Any) -> None:
    """Journal ``entries`` (uuids u0, u1, ...) and close without flushing them."""
    manager = BatchStateManager(journal_path=path, memory_reader=steady, **options)
    for index, entry in enumerate(entries):
        assert manager.queue_entry(entry, "src", f"u{index}")
    assert len(manager.close()) == len(entries)


def recover(path: Path, **options: Any) -> tuple[list[BufferedEntry], dict[str, Any]]:
    got: list[BufferedEntry] = []
    with BatchStateManager(
        flush_callback=got.extend, journal_path=path, memory_reader=steady, **options
    ) as manager:
        assert manager.wait_idle(5)
        stats = manager.get_detailed_stats()["counters"]
    return got, stats


def rows(path: Path, table: str = "buffered_entries") -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


class RunsCode:
    """A pickle payload that creates a marker file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


# -------------------------------------------------------------------------- codec


def test_plain_data_round_trips_through_json(tmp_path: Path) -> None:
    array = np.arange(12, dtype=">i4").reshape(3, 4)[:, ::2]
    entries = [
        {"title": "t", "tags": ["a"], "score": float("inf")},
        (1, (2, "x")),
        b"\x00\xff",
        {(1, 2): {"a", 3}, 5: frozenset({1})},
        {"__bp__": "not a tag"},
        array,
        np.float32(1.5),
        "\ud800 surrogate",
    ]
    path = tmp_path / "j.db"
    write(path, entries)
    assert all(bytes(row[5]).startswith(b"J1:") for row in rows(path))
    got, _ = recover(path)
    back = [item.entry for item in got]
    assert back[:5] == entries[:5]
    assert type(back[1]) is tuple and type(back[1][1]) is tuple
    np.testing.assert_array_equal(back[5], array)
    assert back[5].dtype == array.dtype and back[6] == np.float32(1.5)
    assert type(back[6]) is np.float32
    assert back[7] == entries[7]


def test_other_objects_need_the_pickle_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with BatchStateManager(journal_path=path, memory_reader=steady) as manager:
        with pytest.raises(TypeError, match="serializer='pickle'"):
            manager.queue_entry(Path("x"), "src", "u0")
        assert manager.get_detailed_stats()["counters"]["entries_queued"] == 0
    assert rows(path) == []
    write(path, [Path("x")], serializer="pickle")
    got, _ = recover(path, serializer="pickle")
    assert [item.entry for item in got] == [Path("x")]


def test_serializer_needs_a_journal_and_a_known_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="serializer applies to the journal"):
        BatchStateManager(serializer="pickle", memory_reader=steady)
    with pytest.raises(ValueError, match="serializer must be one of"):
        BatchStateManager(journal_path=tmp_path / "j.db", serializer="yaml")  # type: ignore[arg-type]


def test_codec_refuses_unknown_tags_and_pickled_classes() -> None:
    with pytest.raises(UndecodableEntry, match="unknown tag"):
        decode("json", b'J1:{"__bp__": "time machine"}')
    with pytest.raises(UndecodableEntry, match="would run code"):
        decode("json", pickle.dumps(Path("x")))
    assert decode("json", pickle.dumps({"plain": [1, 2.5, None]})) == {"plain": [1, 2.5, None]}
    assert decode("pickle", encode("pickle", Path("x"))) == Path("x")


# ------------------------------------------------------------- no code runs on open


@pytest.mark.parametrize("tag", [b"", b"P1:"], ids=["format-1 pickle", "opt-in pickle"])
def test_opening_a_journal_runs_no_code_from_it(tmp_path: Path, tag: bytes) -> None:
    path = tmp_path / "j.db"
    write(path, [{"n": 0}, {"n": 1}])
    marker = tmp_path / "pwned"
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO buffered_entries (uuid, source, priority, queued_at_wall, payload)"
            " VALUES ('evil', 'src', 0, 0, ?)",
            (tag + pickle.dumps(RunsCode(marker)),),
        )
    got, stats = recover(path)
    assert not marker.exists()
    assert [item.uuid for item in got] == ["u0", "u1"]
    assert stats["quarantined_entries"] == 1
    (quarantined,) = rows(path, "quarantined_entries")
    assert quarantined[1] == "evil" and "would run code" in quarantined[6]


# --------------------------------------------------------------------- quarantine


def test_one_garbage_row_is_quarantined_and_the_other_nine_recovered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.db"
    write(path, [{"n": n} for n in range(10)])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE buffered_entries SET payload = ? WHERE uuid = 'u4'", (b"\x80\x05junk",))
    with caplog.at_level("WARNING", logger="batchpilot.buffer"):
        got, stats = recover(path)
    assert [item.uuid for item in got] == [f"u{n}" for n in range(10) if n != 4]
    assert stats["quarantined_entries"] == 1
    assert "1 entries could not be decoded" in caplog.text and str(path) in caplog.text
    (bad,) = rows(path, "quarantined_entries")
    assert (bad[1], bytes(bad[5])) == ("u4", b"\x80\x05junk")
    assert rows(path) == []  # nothing left to replay, nothing dropped
    _, again = recover(path)
    assert again["quarantined_entries"] == 0  # quarantined once, kept in its table


# ----------------------------------------------------------------- unusable files


def test_a_garbage_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(JournalError, match=r"j\.db.*not a usable batchpilot journal"):
        BatchStateManager(journal_path=path, memory_reader=steady)


@pytest.mark.parametrize("kept", [0.9, 0.5])
def test_a_truncated_journal_names_the_path_and_what_to_do(tmp_path: Path, kept: float) -> None:
    path = tmp_path / "j.db"
    write(path, [{"n": n, "text": "x" * 50} for n in range(900)])
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * kept)])
    with pytest.raises(JournalError, match=r"j\.db.*not a usable batchpilot journal.*move it away"):
        BatchStateManager(journal_path=path, memory_reader=steady)


def test_an_sqlite_file_of_something_else_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(JournalError, match=r"app\.db.*not a batchpilot journal.*users"):
        BatchStateManager(journal_path=path, memory_reader=steady)
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master")]
    assert tables == ["users"]


def test_a_journal_in_a_missing_folder_names_it(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "j.db"
    with pytest.raises(FileNotFoundError, match=r"missing.*does not exist") as raised:
        BatchStateManager(journal_path=path, memory_reader=steady)
    assert raised.value.filename == str(tmp_path / "missing")


def test_a_directory_as_journal_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="is a directory"):
        BatchStateManager(journal_path=tmp_path, memory_reader=steady)


def test_a_journal_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    write(path, [{"n": 1}])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE journal_info SET value = '99' WHERE key = 'format'")
    with pytest.raises(JournalError, match="format '99', newer"):
        BatchStateManager(journal_path=path, memory_reader=steady)


# ---------------------------------------------------------------------- migration


def test_a_journal_written_by_batchpilot_0_1_still_opens(tmp_path: Path) -> None:
    """data/journal_format1.sqlite was written with the pickle journal of 0.1."""
    path = tmp_path / "old.sqlite"
    shutil.copy(DATA / "journal_format1.sqlite", path)
    got, stats = recover(path)
    assert [(item.uuid, item.priority, item.source) for item in got] == [
        ("old-2", 2, "rss_feed"),  # urgent first
        ("old-5", 2, "rss_feed"),
        ("old-1", 1, "rss_feed"),
        ("old-4", 1, "rss_feed"),
        ("old-0", 0, "rss_feed"),
        ("old-3", 0, "rss_feed"),
    ]
    by_uuid = {item.uuid: item.entry for item in got}
    assert by_uuid == {
        "old-0": {"title": "hello", "tags": ["a", "b"]},
        "old-1": [1, 2.5, None, True],
        "old-2": ("a", 1),
        "old-3": "plain",
        "old-4": b"\x00\x01",
        "old-5": {"nested": {"n": [1, {"x": (2, 3)}]}},
    }
    assert stats["quarantined_entries"] == 0
    assert rows(path, "journal_info") == [("format", "2")]


# data/journal_format2_{json,pickle}.sqlite: written before the codec moved to
# batchpilot._core.codec: queue_entry(entry, "src", f"u{i}", priority=i % 3) for
# each entry below, then close() without flushing.
JOURNALED: list[Any] = [
    None,
    True,
    2**80,
    -0.5,
    float("inf"),
    "naïve \u2603",
    "lone \udcff",
    b"\x00\xff",
    bytearray(b"ab"),
    (1, (2, "3")),
    [1, [2.5, None]],
    {"a": {"b": [1, 2]}, "__bp__": "x"},
    {1: "one", (2, 3): b"pair"},
    {"s", 3},
    frozenset({1, 2}),
]


def test_a_json_journal_written_before_the_core_codec_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    shutil.copy(DATA / "journal_format2_json.sqlite", path)
    got, stats = recover(path)
    assert stats["quarantined_entries"] == 0
    assert sorted(item.uuid for item in got) == sorted(f"u{i}" for i in range(18))
    by_uuid = {item.uuid: item.entry for item in got}
    back = [by_uuid[f"u{i}"] for i in range(18)]
    assert back[:15] == JOURNALED
    assert [type(value) for value in back[:15]] == [type(value) for value in JOURNALED]
    assert type(back[9][1]) is tuple
    np.testing.assert_array_equal(back[15], np.arange(6, dtype=np.int16).reshape(2, 3))
    np.testing.assert_array_equal(back[16], np.array(["ab", "c"]))
    assert back[15].dtype == np.int16 and back[17] == np.float32(1.25)
    assert type(back[17]) is np.float32


def test_a_pickle_journal_written_before_the_core_codec_needs_the_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    shutil.copy(DATA / "journal_format2_pickle.sqlite", path)
    trusted = tmp_path / "trusted.sqlite"
    shutil.copy(path, trusted)
    got, stats = recover(trusted, serializer="pickle")
    assert [item.entry for item in got] == [{"k": (1, 2)}, datetime.date(2026, 12, 2)]
    assert stats["quarantined_entries"] == 0
    got, stats = recover(path)  # without the opt-in: plain data only, the date is refused
    assert [item.entry for item in got] == [{"k": (1, 2)}]
    assert stats["quarantined_entries"] == 1
    (quarantined,) = rows(path, "quarantined_entries")
    assert quarantined[1] == "u0" and "datetime.date" in quarantined[6]
