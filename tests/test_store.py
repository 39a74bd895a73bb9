"""Shard files and the manifest: round trips, checksums, atomic writes, self-describing names."""

import json
import os

import pytest
import torch
from safetensors import safe_open

from examples import SHARD_KEYS, failed_entry, manifest_data, sample_entry
from shards.files import atomic_write_json
from shards.manifest import read_manifest, write_manifest
from shards.store import (ShardError, ShardWriter, pixels_sha256, read_image, read_parts, shard_name, shard_problem,
                          verify_shards)


def _images(n):
    gen = torch.Generator().manual_seed(0)
    return {f"s{i}": torch.randint(0, 256, (8 + i, 16, 3), dtype=torch.uint8, generator=gen) for i in range(n)}


def _write(tmp_path, n=5, per_shard=2):
    images = _images(n)
    with ShardWriter(str(tmp_path), rank=1, world_size=3, per_shard=per_shard) as writer:
        for sample_id, image in images.items():
            writer.add(sample_entry(sample_id), image)
    return writer, images


def _samples(writer):
    return [{**entry, "status": "ok"} for part in writer.parts for entry in part["samples"]]


def test_shard_names_are_zero_padded_and_self_describing():
    assert shard_name(3, 6, 7) == "edit-r00003-of-00006-p0007.safetensors"


def test_writer_closes_a_part_every_n_samples_and_images_round_trip(tmp_path):
    writer, images = _write(tmp_path)
    assert [s["path"] for s in writer.parts] == [f"shards/{shard_name(1, 3, p)}" for p in range(3)]
    assert [s["num_samples"] for s in writer.parts] == [2, 2, 1]
    assert [s["id"] for s in _samples(writer)] == list(images)
    for entry in _samples(writer):
        assert torch.equal(read_image(str(tmp_path), entry), images[entry["id"]])
        assert entry["sha256"] == pixels_sha256(images[entry["id"]])
    verify_shards(str(tmp_path), writer.parts)
    assert not [f for f in os.listdir(tmp_path / "shards") if ".tmp" in f]


def test_every_closed_part_is_recorded_in_the_ranks_journal(tmp_path):
    writer, _ = _write(tmp_path)
    recorded = read_parts(str(tmp_path))
    assert recorded.records == json.loads(json.dumps(writer.parts)) and recorded.skipped == []
    assert os.path.basename(writer._journal.path) == "edit-r00001-of-00003.jsonl"


def test_leaving_the_block_on_an_error_keeps_the_finished_images(tmp_path):
    images = _images(3)
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(str(tmp_path), rank=0, world_size=1, per_shard=4) as writer:
            for sample_id, image in images.items():
                writer.add({"id": sample_id}, image)
            raise RuntimeError("boom")
    (part,) = read_parts(str(tmp_path)).records
    assert [e["id"] for e in part["samples"]] == ["s0", "s1", "s2"]
    assert shard_problem(str(tmp_path), part) is None


def test_a_resumed_writer_never_reuses_a_part_name(tmp_path):
    _write(tmp_path, n=3)                                         # parts p0000, p0001 of rank 1 of 3
    # A part renamed into place whose journal line was never written (killed in between): not trusted, kept.
    orphan = tmp_path / "shards" / shard_name(1, 3, 5)
    orphan.write_bytes(b"not recorded")
    again, _ = _write(tmp_path, n=1)
    assert again.parts[0]["path"] == f"shards/{shard_name(1, 3, 6)}"
    assert orphan.read_bytes() == b"not recorded"
    assert [p["path"] for p in read_parts(str(tmp_path)).records] == [
        f"shards/{shard_name(1, 3, p)}" for p in (0, 1, 6)]


def test_each_shard_header_describes_its_samples(tmp_path):
    writer, _ = _write(tmp_path)
    with safe_open(os.path.join(tmp_path, writer.parts[0]["path"]), framework="pt") as f:
        described = json.loads(f.metadata()["samples"])
    assert [s["id"] for s in described] == ["s0", "s1"]
    assert described[0]["shard"] == writer.parts[0]["path"]


def test_manifest_round_trip(tmp_path):
    writer, _ = _write(tmp_path)
    failed = failed_entry("bad", "cannot decode image")
    write_manifest(str(tmp_path), manifest_data(writer.parts, _samples(writer) + [failed], world_size=3))
    manifest = read_manifest(str(tmp_path))
    assert manifest["shards"] == [{k: part[k] for k in SHARD_KEYS} for part in writer.parts]
    assert manifest["samples"][-1] == failed and len(manifest["samples"]) == 6
    assert manifest["world_size"] == 3


def test_a_flipped_byte_names_the_shard(tmp_path):
    writer, _ = _write(tmp_path)
    path = os.path.join(tmp_path, writer.parts[1]["path"])
    data = bytearray(open(path, "rb").read())
    data[-1] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(ShardError, match=f"shard {writer.parts[1]['path']} does not match its checksum"):
        verify_shards(str(tmp_path), writer.parts)


def test_a_missing_shard_is_named(tmp_path):
    writer, _ = _write(tmp_path)
    os.remove(os.path.join(tmp_path, writer.parts[2]["path"]))
    with pytest.raises(ShardError, match=f"shard {writer.parts[2]['path']} is missing"):
        verify_shards(str(tmp_path), writer.parts)


def test_manifest_problems_are_named(tmp_path):
    with pytest.raises(ShardError, match="run the edit stage on this output directory first"):
        read_manifest(str(tmp_path))
    atomic_write_json(str(tmp_path / "manifest.json"), {"format": "other"})
    with pytest.raises(ShardError, match="has no schema_version: it was written by an earlier version"):
        read_manifest(str(tmp_path))
    gone = sample_entry("x", status="ok", sha256="0" * 64, shard="shards/gone.safetensors", key="image-00000")
    atomic_write_json(str(tmp_path / "manifest.json"), manifest_data([], [gone]))
    with pytest.raises(ShardError, match="sample 'x' points to shard shards/gone.safetensors"):
        read_manifest(str(tmp_path))


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path):
    target = str(tmp_path / "r.json")
    atomic_write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"v": object()})     # fails while encoding: nothing replaced
    assert json.load(open(target)) == {"v": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_a_sample_id_that_safetensors_reserves_is_stored_and_read_back(tmp_path):
    image = torch.full((4, 4, 3), 7, dtype=torch.uint8)
    with ShardWriter(str(tmp_path), rank=0, world_size=1, per_shard=2) as writer:
        writer.add({"id": "__metadata__"}, image)
        writer.add({"id": "x"}, image + 1)
    entries = _samples(writer)
    assert [e["id"] for e in entries] == ["__metadata__", "x"]
    assert all(e["key"] != e["id"] for e in entries)                 # tensor keys never come from user data
    assert torch.equal(read_image(str(tmp_path), entries[0]), image)
    assert torch.equal(read_image(str(tmp_path), entries[1]), image + 1)
