"""Nothing unsafe by default: no pickle, safe YAML, no remote code, safetensors-only weights."""

import ast

import pytest

from conftest import DEMO_CONFIG, project_sources
from shards.config import load_config


def _sources():
    for path, text in project_sources():
        yield path, ast.parse(text)


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


@pytest.mark.parametrize("path, tree", list(_sources()), ids=lambda v: v if isinstance(v, str) else "")
def test_no_unsafe_call(path, tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any(n.split(".")[0] in ("pickle", "cPickle", "dill", "marshal") for n in names), path
    for node, func in _calls(tree):
        assert func not in ("torch.load", "yaml.load", "yaml.unsafe_load", "eval", "exec", "all_gather_object",
                            "dist.all_gather_object", "broadcast_object_list"), f"{path}: {func}"
        kwargs = {k.arg: ast.unparse(k.value) for k in node.keywords}
        assert kwargs.get("trust_remote_code") != "True", f"{path}: {func} runs remote code unconditionally"
        # Tokenizers and processors hold no weights; every model or pipeline load must refuse pickled weights.
        if func.endswith("from_pretrained") and not any(w in func for w in ("Tokenizer", "Processor")):
            assert kwargs.get("use_safetensors") == "True", f"{path}: {func} may fall back to pickled weights"


def test_remote_code_is_off_unless_the_config_turns_it_on():
    config = load_config(DEMO_CONFIG)
    assert config.edit.trust_remote_code is False and config.score.trust_remote_code is False
