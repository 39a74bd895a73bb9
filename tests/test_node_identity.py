"""The nodes of one run run the same run: settings, dataset, checkpoints and code compared before any model loads."""

import os
import re
import socket
import subprocess

import pytest

from conftest import REPO, base_python, copy_run, write_config
from shards.runtime.nodes import node_differences

STEPS = "edit.num_inference_steps"
FINGERPRINT = "edit.model files fingerprint"


def _node(rank: int, host: str = "host-a", **identity) -> dict:
    base = {STEPS: 2, "edit.model": "/m", FINGERPRINT: "f1", "code git commit": "c1", "code sources sha256": "s1"}
    return {"host": host, "node_rank": rank, "identity": {**base, **identity}}


def test_nodes_that_agree_have_no_differences():
    assert node_differences([_node(0), _node(1, "host-b")]) == []


def test_a_different_setting_names_the_key_both_values_and_both_nodes():
    found = node_differences([_node(0), _node(1, "host-b", **{STEPS: 3})])
    assert found == [f"{STEPS}: node 0 on host-a has 2, node 1 on host-b has 3"]


def test_only_the_differing_node_of_three_is_named_and_a_missing_key_says_so():
    found = node_differences([_node(0), _node(1), _node(2, "host-c", **{"score.mode": "generate"})])
    assert found == ['score.mode: node 0 on host-a has (not set), node 2 on host-c has "generate"']


def test_what_one_node_cannot_compute_is_not_a_difference():
    # A hub id has no fingerprint before it loads; a copy of the code outside git has no commit.
    assert node_differences([_node(0), _node(1, **{FINGERPRINT: None, "code git commit": None})]) == []


def test_a_local_checkpoint_is_compared_by_content_not_by_the_path_each_node_sees():
    moved = _node(1, **{"edit.model": "/elsewhere/m"})
    assert node_differences([_node(0), moved]) == []
    changed = _node(1, **{"edit.model": "/elsewhere/m", FINGERPRINT: "f2"})
    assert [line.split(":")[0] for line in node_differences([_node(0), changed])] == ["edit.model", FINGERPRINT]


def test_an_uncommitted_edit_on_one_node_shows_in_its_sources_digest():
    found = node_differences([_node(0), _node(1, **{"code sources sha256": "s2"})])
    assert found == ['code sources sha256: node 0 on host-a has "s1", node 1 on host-a has "s2"']


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_nodes(command: list[list[str]], timeout: int = 300) -> list[subprocess.CompletedProcess]:
    """Two commands side by side, as two nodes; each one's exit status and output."""
    procs = [subprocess.Popen(c, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO, "PYTHONUNBUFFERED": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in command]
    return [subprocess.CompletedProcess(p.args, p.returncode, p.communicate(timeout=timeout)[0], "")
            for p in procs]


@pytest.mark.slow
def test_two_launcher_nodes_with_different_settings_both_stop_before_any_model_loads(pythons, tmp_path):
    config = write_config(tmp_path, {"distributed.nproc_per_node": 1, "distributed.timeout_s": 60})
    out, port = str(tmp_path / "run"), _free_port()
    common = [base_python(), "-m", "launch", "--config", config, "--output-dir", out, "--nnodes", "2",
              "--rdzv-endpoint", f"localhost:{port}", "--rdzv-id", "differ"]
    done = _two_nodes([common + ["--node-rank", "0"],
                       common + ["--node-rank", "1", "--set", f"{STEPS}=3", "--set", "score.mode=generate"]])
    for node in done:
        assert node.returncode != 0, node.stdout
        assert re.search(rf"{STEPS}: node 0 on \S+ has 2, node 1 on \S+ has 3", node.stdout), node.stdout
        assert 'score.mode: node 0 on' in node.stdout and 'has "generate"' in node.stdout
        assert not re.search(r"\[edit r\d/2\] (edited |\d+ samples selected)", node.stdout), node.stdout
    assert not os.path.exists(os.path.join(out, "shards"))                       # nothing was edited
    assert not os.path.exists(os.path.join(out, "progress", "edit.json"))         # no attempt was begun


@pytest.mark.slow
def test_two_score_stage_nodes_with_different_settings_both_stop_before_judging(pythons, demo_run, tmp_path):
    out, port = copy_run(demo_run[1], str(tmp_path / "run"), scores=False), _free_port()

    def node(rank: int, *more: str) -> list[str]:
        return [pythons["score"], "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={rank}",
                "--master-addr=localhost", f"--master-port={port}", "--nproc-per-node=1", "-m", "score_stage",
                "--config", demo_run[0], "--output-dir", out, *more]

    done = _two_nodes([node(0), node(1, "--set", "score.mode=generate")])
    for result in done:
        assert result.returncode != 0, result.stdout
        assert re.search(r'score\.mode: node 0 on \S+ has "expected", node 1 on \S+ has "generate"', result.stdout)
        assert not re.search(r"\[score r\d/2\] .*(score=|samples selected)", result.stdout), result.stdout
    assert not os.path.exists(os.path.join(out, "progress", "score.json"))             # no attempt was begun


def test_each_node_compares_the_versions_of_the_libraries_that_decide_the_results(tmp_path):
    # The stage interpreters are node-local settings, so what they hold is all that tells one node's environment
    # from another's: a node with another diffusers or torch makes other images under rank 0's manifest.
    from shards.config import load_config
    from shards.runtime.nodes import node_identity
    from shards.runtime.provenance import package_versions

    identity = node_identity(load_config(write_config(tmp_path)), "edit")
    versions = {k: v for k, v in package_versions().items() if k != "python"}
    assert "transformers" in versions
    assert {k: identity.get(f"package {k}") for k in versions} == versions
    other = {**identity, "package transformers": "4.46.0"}
    found = node_differences([{"host": "host-a", "node_rank": 0, "identity": identity},
                              {"host": "host-b", "node_rank": 1, "identity": other}])
    assert found == [f'package transformers: node 0 on host-a has "{versions["transformers"]}", node 1 on host-b has '
                     '"4.46.0"']
