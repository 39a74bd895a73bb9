"""Append-only journals: what a crash mid-write leaves is skipped, named, and never glued to the next record."""

import json
import os

from shards.journal import JournalWriter, journal_path, journal_paths, read_journals


def _write(path, records):
    with JournalWriter(str(path)) as journal:
        journal.append(records)


def test_records_round_trip_in_order_with_any_text(tmp_path):
    path = tmp_path / "score-r00000-of-00001.jsonl"
    records = [{"id": "物理-1", "response": "line 1\nline 2 \"quoted\""}, {"id": "b", "score": 7.5}]
    _write(path, records[:1])
    _write(path, records[1:])
    assert read_journals([str(path)]).records == records
    assert path.read_bytes().count(b"\n") == 2


def test_a_torn_last_line_is_skipped_and_named(tmp_path):
    path = tmp_path / "j.jsonl"
    _write(path, [{"id": "a"}, {"id": "b"}])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 6])            # killed in the middle of writing the second record
    read = read_journals([str(path)])
    assert read.records == [{"id": "a"}]
    assert read.skipped == [f"{path}:2: torn last line"]


def test_a_complete_record_without_its_newline_counts_as_torn(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}')      # the newline is the end of the write
    assert read_journals([str(path)]).records == [{"id": "a"}]


def test_the_next_writer_cuts_the_torn_tail_before_appending(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b", "sc')
    _write(path, [{"id": "c"}])
    assert path.read_bytes() == b'{"id": "a"}\n{"id": "c"}\n'
    assert read_journals([str(path)]).skipped == []


def test_a_torn_only_line_leaves_an_empty_journal(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"id": "a", "sc')
    _write(path, [{"id": "b"}])
    assert read_journals([str(path)]).records == [{"id": "b"}]


def test_a_bad_line_in_the_middle_is_skipped_and_named_not_fatal(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"id": "a"}\n[1, 2]\nnot json\n{"id": "d"}\n')
    read = read_journals([str(path)])
    assert read.records == [{"id": "a"}, {"id": "d"}]
    assert read.skipped == [f"{path}:2: not a JSON object", f"{path}:3: not a JSON object"]


def test_journals_of_every_world_size_are_found_and_nothing_else(tmp_path):
    out = str(tmp_path)
    for rank, world in [(0, 2), (1, 2), (2, 3)]:
        _write(journal_path(out, "score", rank, world), [{"id": f"{rank}-{world}"}])
    _write(journal_path(out, "edit", 0, 1), [{"id": "edit"}])
    open(os.path.join(out, "progress", "score-r00000-of-00002.jsonl.bak"), "w").close()
    paths = journal_paths(out, "score")
    assert [os.path.basename(p) for p in paths] == [
        "score-r00000-of-00002.jsonl", "score-r00001-of-00002.jsonl", "score-r00002-of-00003.jsonl"]
    assert [r["id"] for r in read_journals(paths).records] == ["0-2", "1-2", "2-3"]
    assert json.loads(open(journal_path(out, "edit", 0, 1)).read()) == {"id": "edit"}
