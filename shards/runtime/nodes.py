"""The nodes of one run run the same run: checked by every rank right after it joins the job, before any model is
built, fetched or loaded.

Each node's launcher passes its own config file, `--set` values, dataset selection and code to its stages, and
nothing else makes them agree: a node started with other settings would edit or judge differently under rank 0's
manifest and report. So every stage of a multi-node job all-gathers one identity per node (from its local rank 0;
the ranks of a node share one command line) and compares it with rank 0's. The identity is:

- every resolved setting of the config, except what is node-local by nature: the stage interpreters (`edit.env`,
  `score.env`), ranks per node and the launcher's own limits (`distributed.nproc_per_node`, `stage_timeout_s`,
  `rendezvous_timeout_s`), and the paths of the config, the output folder and the dataset file (one folder may be
  mounted at different paths; the dataset file is compared by its sha256 instead);
- the dataset file's sha256, and the files' fingerprint of this stage's local checkpoints (a local checkpoint is
  compared by content: two nodes may see the same files under different paths);
- the code: the git commit and a sha256 of the tool's Python sources, so an uncommitted edit on one node shows;
- the versions of the libraries that decide the results in this stage's environment (torch, diffusers, ...): the
  interpreter is a node-local setting, so they are all that tells one node's environment from another's.

What a node cannot compute (the fingerprint of a hub id before it is fetched, the commit of a copy outside git) is
not compared. If anything differs, every rank stops with the same message, naming each key, rank 0's value, the
other node's value and both nodes (node rank and host).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from shards.config import ConfigError, RunConfig, to_dict
from shards.files import sha256_file
from shards.folder.identity import run_identity
from shards.folder.records import FINGERPRINT_SUFFIX, discovered
from shards.runtime.provenance import package_versions, source_digest, tool_version

# Dotted setting paths (and everything under them) that may differ from node to node.
PER_NODE = ("source", "output_dir", "dataset.path", "edit.env", "score.env", "distributed.nproc_per_node",
            "distributed.stage_timeout_s", "distributed.rendezvous_timeout_s")
DATASET_DIGEST = "dataset file sha256"          # the key run_identity gives it
COMMIT = "code git commit"
SOURCES = "code sources sha256"
PACKAGE = "package"                             # "package torch": its version (Python's own patch level may differ)
_UNSET = object()


class NodesDiffer(ConfigError):
    """The nodes of one job were started with different settings, data, checkpoints or code."""


def node_identity(config: RunConfig, stage: str) -> dict[str, Any]:
    """What this node runs, as flat JSON data: settings, dataset digest, this stage's checkpoint fingerprints, code,
    library versions."""
    identity = {k: v for k, v in _flat(to_dict(config)).items()
                if not any(k == p or k.startswith(p + ".") for p in PER_NODE)}
    identity.update({k: v for k, v in run_identity(config, stage).items() if k.endswith(FINGERPRINT_SUFFIX)})
    identity[DATASET_DIGEST] = sha256_file(config.dataset.path)
    identity[COMMIT], identity[SOURCES] = tool_version()["git_commit"], source_digest()
    identity.update({f"{PACKAGE} {name}": v for name, v in package_versions().items() if name != "python"})
    return identity


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys, so that a difference deep in the judge prompts names its own key."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def node_differences(nodes: list[dict[str, Any]]) -> list[str]:
    """Each way another node's identity differs from the first node's (rank 0's), one line per key and node.

    Args:
        nodes: One entry per node, the first holding rank 0: {"host", "node_rank", "identity": {key: value}}.

    Returns:
        Lines like `edit.num_inference_steps: node 0 on host-a has 2, node 1 on host-b has 3`; [] if all agree.
    """
    first, lines = nodes[0], []
    for other in nodes[1:]:
        mine, theirs = first["identity"], other["identity"]
        for key in sorted(set(mine) | set(theirs)):
            was, now = mine.get(key, _UNSET), theirs.get(key, _UNSET)
            if was == now or not _comparable(key, was, now) or _same_files(key, mine, theirs):
                continue
            lines.append(f"{key}: {_name(first)} has {_show(was)}, {_name(other)} has {_show(now)}")
    return lines


def _comparable(key: str, was: Any, now: Any) -> bool:
    """A fingerprint or commit that one node could not compute says nothing about the other's."""
    return not ((discovered(key) or key == COMMIT) and None in (was, now))


def _same_files(key: str, mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """A checkpoint path whose folders hold the same files on both nodes (known fingerprints, equal)."""
    fingerprint = key + FINGERPRINT_SUFFIX
    return mine.get(fingerprint) is not None and mine.get(fingerprint) == theirs.get(fingerprint)


def _name(node: dict[str, Any]) -> str:
    return f"node {node['node_rank']} on {node['host']}"


def _show(value: Any, limit: int = 80) -> str:
    if value is _UNSET:
        return "(not set)"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_nodes_agree(config: RunConfig, stage: str, state) -> None:
    """Every rank: gather each node's identity and stop if any differs from rank 0's (a no-op on one node).

    Call it on every rank right after `init_distributed`, before any model is built, fetched or loaded.

    Raises:
        NodesDiffer: on every rank alike, naming each differing key, both values and both nodes.
    """
    from shards.runtime.dist import all_gather_json

    if int(os.environ.get("LOCAL_WORLD_SIZE", state.world_size)) >= state.world_size:
        return                                    # one node: its ranks share one command line
    mine = {"host": socket.gethostname(), "node_rank": int(os.environ.get("GROUP_RANK", "0")),
            "identity": node_identity(config, stage) if state.local_rank == 0 else None}
    nodes = [n for n in all_gather_json(mine, state) if n["identity"] is not None]
    differences = node_differences(nodes)
    if differences:
        raise NodesDiffer(f"the nodes of this {stage} job were started differently, and one run does not mix "
                          f"them; nothing was loaded:\n  " + "\n  ".join(differences) +
                          "\nStart every node with the same config, --set, --categories and --limit options, "
                          "dataset file, checkpoints, code and library versions.")
