"""Beyond one node and one writer: two launchers as two nodes of one run, a second launch refused while a run
writes, the judge following the edits, a hub checkpoint fetched by one rank."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import DEMO_DATASET, REPO, base_python, copy_run, torchrun, write_config
from shards.dataset import load_dataset
from shards.journal import journal_paths, read_journals
from shards.manifest import read_manifest
from shards.store import read_parts, verify_shards

pytestmark = pytest.mark.slow


def _first(count: int) -> list[str]:
    """The ids `--limit count` selects (the first in the dataset's order), sorted."""
    return sorted(s.id for s in load_dataset(DEMO_DATASET)[:count])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launcher(args: list[str], **popen) -> subprocess.Popen:
    return subprocess.Popen([base_python(), "-m", "launch", *args], cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _report(out: str) -> dict:
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        return json.load(f)


def _tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                parent = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def test_two_nodes_of_one_rank_each_then_one_node_lost_and_the_run_finished_on_one(pythons, tmp_path):
    config = write_config(tmp_path, {"distributed.nproc_per_node": 1, "distributed.timeout_s": 30,
                                     "edit.samples_per_shard": 1})
    out, port = str(tmp_path / "run"), _free_port()
    procs = [_launcher(["--config", config, "--output-dir", out, "--nnodes", "2", "--node-rank", str(r),
                        "--rdzv-endpoint", f"localhost:{port}", "--rdzv-id", "whole", "--limit", "4"])
             for r in (0, 1)]
    first = [p.communicate(timeout=1500)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], first
    assert "mean over samples" in first[0] + first[1]
    manifest, report = read_manifest(out), _report(out)
    assert sorted(s["id"] for s in manifest["samples"]) == _first(4) and manifest["world_size"] == 2
    assert report["world_size"] == {"edit": 2, "score": 2} and sorted(s["id"] for s in report["samples"]) == _first(4)
    assert {p["rank"] for p in manifest["shards"]} == {0, 1}                     # both nodes edited
    for line in ("[edit r0/2]", "[edit r1/2]"):
        assert line in first[0] + first[1]
    assert any(f.startswith("launch-node1-") for f in os.listdir(os.path.join(out, "logs")))

    lost = str(tmp_path / "lost")
    config = write_config(tmp_path, {"distributed.nproc_per_node": 1, "distributed.timeout_s": 20,
                                     "edit.samples_per_shard": 1})
    port = _free_port()
    procs = [_launcher(["--config", config, "--output-dir", lost, "--nnodes", "2", "--node-rank", str(r),
                        "--rdzv-endpoint", f"localhost:{port}", "--rdzv-id", "lost", "--limit", "8"],
                       start_new_session=True) for r in (0, 1)]
    seen = ""
    for line in procs[1].stdout:                                     # node 1 has edited two images: kill it all
        seen += line
        if len(re.findall(r"\[edit r1/2\] edited ", seen)) == 2:
            break
    for pid in _tree(procs[1].pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    procs[1].wait()
    procs[0].communicate(timeout=900)
    assert procs[0].returncode != 0                                  # node 0 cannot finish the stage alone
    kept = {e["id"] for part in read_parts(lost).records for e in part["samples"]}
    assert kept                                                      # finished parts of both nodes are on disk
    again = subprocess.run([base_python(), "-m", "launch", "--config", config, "--output-dir", lost,
                            "--nproc-per-node", "1", "--limit", "8"], cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
                           capture_output=True, text=True, timeout=1500)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(kept)} already edited (verified)" in again.stdout
    manifest = read_manifest(lost)
    assert sorted(s["id"] for s in manifest["samples"]) == _first(8) and len(manifest["samples"]) == 8
    verify_shards(lost, manifest["shards"])
    assert sorted(s["id"] for s in _report(lost)["samples"]) == _first(8)
    print(f"\ntwo nodes: lost node 1 after 2 edits; {len(kept)} images kept, "
          f"{8 - len(kept)} edited on the rerun with one node")


def test_a_second_launch_into_a_running_runs_folder_is_refused_at_once_and_the_first_completes(pythons, tmp_path):
    out = str(tmp_path / "run")
    first = _launcher(["--config", write_config(tmp_path), "--output-dir", out, "--limit", "4"])
    for line in first.stdout:
        if "edit stage:" in line:
            break
    start = time.monotonic()
    second = subprocess.run([base_python(), "-m", "launch", "--config", write_config(tmp_path), "--output-dir",
                             out, "--limit", "4"], cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
                            capture_output=True, text=True, timeout=120)
    refused_in = time.monotonic() - start
    assert second.returncode == 2 and refused_in < 15
    assert "is being written by run" in second.stderr and f"(pid {first.pid} on {socket.gethostname()}" in \
        second.stderr
    rest, _ = first.communicate(timeout=1500)
    assert first.returncode == 0, rest
    manifest = read_manifest(out)
    verify_shards(out, manifest["shards"])
    assert sorted(s["id"] for s in _report(out)["samples"]) == _first(4) and not os.path.exists(f"{out}/run.lock")
    print(f"\nsecond launch refused in {refused_in:.1f} s")


def test_the_judge_following_the_edits_gives_the_report_of_the_stages_one_after_the_other(pythons, demo_run,
                                                                                          tmp_path):
    out = str(tmp_path / "follow")
    done = subprocess.run([base_python(), "-m", "launch", "--config", demo_run[0], "--output-dir", out,
                           "--nproc-per-node", "2", "--judge-gpus", "1", "--limit", "4"], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--follow-edits" in done.stdout and "following the edits: 4 samples expected" in done.stdout
    judged = [r["id"] for r in read_journals(journal_paths(out, "score")).records]
    assert sorted(judged) == _first(4)                                # every sample judged once, none twice
    # The same edits judged after the edit stage, by one rank as the follower was (a CPU's thread count, which
    # torchrun sets for several ranks, moves scores in their last digits).
    after = copy_run(out, str(tmp_path / "after"), scores=False)
    sequential = torchrun(pythons["score"], "score_stage", 1, ["--config", demo_run[0], "--output-dir", after,
                                                                "--limit", "4"])
    assert sequential.returncode == 0, sequential.stdout + sequential.stderr
    report = _report(out)
    assert {s["id"]: s["score"] for s in report["samples"]} == {s["id"]: s["score"] for s in _report(after)["samples"]}
    assert report["world_size"] == {"edit": 1, "score": 1}
    assert report["overall"] == _report(after)["overall"]


def _hub_cache(cache, repo: str, folder: str) -> None:
    """`folder` as the hub client's cache holds a downloaded repository (refs/main -> a snapshot)."""
    org, name = repo.split("/")
    root = os.path.join(cache, f"models--{org}--{name}")
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(folder, os.path.join(root, "snapshots", commit))
    os.makedirs(os.path.join(root, "refs"))
    with open(os.path.join(root, "refs", "main"), "w") as f:
        f.write(commit)


def test_a_hub_checkpoint_is_fetched_by_one_rank_and_every_rank_loads_it(pythons, demo_run, tmp_path):
    manifest = read_manifest(demo_run[1])
    cache = str(tmp_path / "hub")
    _hub_cache(cache, "tiny-org/tiny-edit", manifest["config"]["edit"]["model"])
    config = write_config(tmp_path, {"edit.model": "tiny-org/tiny-edit", "edit.build_tiny": False})
    out = str(tmp_path / "run")
    env = {"HF_HUB_CACHE": cache, "HF_HUB_OFFLINE": "1"}
    done = torchrun(pythons["edit"], "edit_stage", 2, ["--config", config, "--output-dir", out, "--limit", "2"],
                    env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert len(re.findall(r"\] fetching editor tiny-org/tiny-edit into the hub cache", output)) == 1
    assert "[edit r0/2] fetching editor" in output and "[edit r1/2] fetching" not in output
    assert read_manifest(out)["model"]["revision"] == "0123456789abcdef0123456789abcdef01234567"
    same = {s["id"]: s["sha256"] for s in manifest["samples"]}
    assert all(s["sha256"] == same[s["id"]] for s in read_manifest(out)["samples"])  # the same weights' images
    missing = torchrun(pythons["edit"], "edit_stage", 2, ["--config", write_config(
        tmp_path, {"edit.model": "tiny-org/no-such-model", "edit.build_tiny": False}), "--output-dir",
        str(tmp_path / "o2"), "--limit", "1"], env=env)
    assert missing.returncode != 0
    assert "editor tiny-org/no-such-model could not be fetched from the hub" in missing.stdout + missing.stderr
    assert "HF_TOKEN" in missing.stdout + missing.stderr


def _lock_pid(out: str) -> int | None:
    try:
        with open(os.path.join(out, "run.lock"), encoding="utf-8") as f:
            return json.load(f).get("pid")
    except (OSError, ValueError, AttributeError):
        return None


def _start_ticks(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), or None once it has ended: a pid reused since is not it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == b"Z" else int(fields[19])


def test_kill_9_of_the_launcher_mid_edit_then_a_rerun_at_once_writes_only_after_every_process_of_the_first(
        pythons, tmp_path):
    from conftest import fault
    from shards.store import shard_problem

    config, out = write_config(tmp_path), str(tmp_path / "run")
    slow = fault("edit_stage.pipeline:edit_sample", 1, "slow", seconds=3)        # rank 1 is mid-sample when killed
    first = subprocess.Popen([base_python(), "-m", "launch", "--config", config, "--output-dir", out, "--limit", "6"],
                             cwd=REPO, env={**os.environ, **slow}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    seen = ""
    for line in first.stdout:
        seen += line
        if len(re.findall(r"\[edit r0/2\] edited ", seen)) >= 2 and "[edit r1/2] edited " in seen:
            break
    processes = {pid: _start_ticks(pid) for pid in _tree(first.pid)}   # the launcher, torchrun and its ranks
    assert len(processes) >= 4, seen
    first.kill()
    first.wait()
    rerun = _launcher(["--config", config, "--output-dir", out, "--limit", "6"])
    start, alive, took_s = time.monotonic(), None, None
    while rerun.poll() is None and time.monotonic() - start < 120:
        if _lock_pid(out) == rerun.pid:                              # the rerun holds the folder from here on
            alive = [pid for pid, ticks in processes.items() if _start_ticks(pid) == ticks]
            took_s = time.monotonic() - start
            break
        time.sleep(0.02)
    rest, _ = rerun.communicate(timeout=600)
    assert alive == [], f"processes {alive} of the first run still ran when the rerun took the folder:\n{rest}"
    assert rerun.returncode == 0, rest
    assert "taking its lock over" in rest
    kept = int(re.search(r"(\d+) already edited \(verified\)", rest).group(1))
    assert kept >= 2                                                 # the first run's closed parts were kept
    parts = read_parts(out).records
    paths = [p["path"] for p in parts]
    assert len(paths) == len(set(paths)), paths                      # no part recorded twice
    ids = [e["id"] for p in parts for e in p["samples"]]
    assert sorted(ids) == _first(6)                                  # no sample edited twice, none lost
    assert [shard_problem(out, p) for p in parts] == [None] * len(parts)
    manifest = read_manifest(out)
    assert sorted(s["id"] for s in manifest["samples"]) == _first(6)
    verify_shards(out, manifest["shards"])
    print(f"\nkill -9 of the launcher: {kept} images kept, rerun took the folder after {took_s:.1f} s")
    print("\n".join(line for line in rest.splitlines() if "run.lock" in line))
