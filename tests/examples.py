"""Complete examples of the files the tool writes for another process, for tests that write one by hand: each
matches its typed definition (`shards.manifest.Manifest`, `shards.report.schema.Report`), so that a test changes
only what it is about."""

from shards.manifest import MANIFEST_SCHEMA_VERSION

SHARD_KEYS = ("path", "sha256", "num_samples", "rank", "world_size")


def sample_entry(sample_id: str, **fields) -> dict:
    """What the edit stage records of one edited sample before its shard part is written (`manifest_entry`)."""
    return {"id": sample_id, "category": "物理", "instruction": f"edit {sample_id}", "description": None,
            "image": f"images/{sample_id}.png", "image_sha256": "0" * 64, "extra": {}, "seed": 7, "height": 8,
            "width": 16, "edit_seconds": 0.5, **fields}


def failed_entry(sample_id: str, reason: str) -> dict:
    """A sample the edit stage could not edit, as the manifest lists it."""
    return {"id": sample_id, "category": "物理", "instruction": f"edit {sample_id}", "description": None,
            "image": f"images/{sample_id}.png", "extra": {}, "status": "failed", "reason": reason}


def manifest_data(parts: list[dict], samples: list[dict], **fields) -> dict:
    """A complete manifest of the shard parts `parts` (a `ShardWriter`'s) and the manifest samples `samples`."""
    return {"schema_version": MANIFEST_SCHEMA_VERSION, "world_size": 1,
            "attempts": [{"started": "2026-01-01T00:00:00+0000", "world_size": 1}],
            "dataset": {"path": "/data/b.jsonl", "root": "/data", "sha256": "d" * 64},
            "model": {"path": "tiny/editor", "revision": None, "fingerprint": None, "label": "tiny/editor"},
            "versions": {}, "environment": {}, "tool": {"version": None, "git_commit": None, "git_dirty": None},
            "config": {}, "elapsed_s": 1.0, "shards": [{k: p[k] for k in SHARD_KEYS} for p in parts],
            "samples": samples, **fields}


# What a report holds besides its samples and statistics (`build_report`'s run_info), as the score stage writes it.
RECORD = {"editor": {"path": "tiny/editor", "revision": None, "fingerprint": None, "label": "tiny/editor"},
          "judging": {"mode": "expected", "answer_prefix": "Score: ", "max_new_tokens": 8, "do_sample": False,
                      "batch_size": 1, "dtype": "float32", "prompts": {}, "prompts_sha256": "p1"},
          "seeds": {"edit": 0, "per_sample": "sha256(edit seed, sample id)", "judge": "none: greedy decoding"},
          "tool": {stage: {"version": None, "git_commit": None, "git_dirty": None} for stage in ("edit", "score")},
          "environments": {"edit": {}, "score": {}}}
RUN = {"world_size": {"edit": 1, "score": 1}, "attempts": {"edit": [], "score": []},
       "versions": {"edit": {}, "score": {}}, "elapsed_s": {"edit": 1.0, "score": 1.0},
       "config": {"dataset": {"path": "/data/b.jsonl"}}}
