"""`import-benchmark` reads each benchmark's own judge prompts from crafted copies of the files that ship them
(made here, not copied from the benchmarks): Python constants read without running the file, JSON keys; each
source file's sha256 and its checkout's commit are written with them; a copy whose prompts are missing is refused,
naming the file and the names looked for, and nothing is written."""

import hashlib
import json
import os
import subprocess

import pytest

from conftest import REPO
from launch.importers import gedit, imgedit, kris, risebench
from shards.judge_prompts import read_judge_prompts
from test_benchmarks import COPIES, _import

SPECS = {"gedit": gedit.PROMPTS[0], "risebench": risebench.PROMPTS[0], "kris": kris.PROMPTS[0],
         "imgedit": imgedit.PROMPTS[0]}
# Run, this file would stop the import: it is only ever parsed.
NOT_TO_RUN = "raise SystemExit('the prompt file was executed')\n"


def prompt_file(root, name, leave_out=()) -> str:
    """A crafted prompt file for benchmark `name` under `root`, at the first place the importer looks; returns it."""
    spec = SPECS[name]
    path = os.path.join(root, spec.places[0])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    names = [n for n in spec.names if n not in leave_out]
    if path.endswith(".json"):
        text = json.dumps({n: f"Rate the {n} edit: <edit_prompt>." for n in names})
    else:
        text = NOT_TO_RUN + "".join(f"{n} = '''\nJudge {n}: {{instruct}} <instruction>\n'''\n" for n in names)
        text += "not_a_prompt = make_prompt()\n"
    with open(path, "w") as f:
        f.write(text)
    return path


def copy_with_prompts(name, tmp_path, leave_out=()):
    """The benchmark's crafted copy, and its prompt file (gedit: in a separate scorer checkout)."""
    source = COPIES[name](tmp_path / "src")
    where = tmp_path / "scorer" if name == "gedit" else source
    return source, where, prompt_file(str(where), name, leave_out)


@pytest.mark.parametrize("name", list(COPIES))
def test_the_prompts_are_read_from_the_copy_with_each_files_sha256(name, tmp_path):
    source, where, path = copy_with_prompts(name, tmp_path)
    subprocess.run(["git", "init", "-q", str(where)], check=True)
    subprocess.run(["git", "-C", str(where), "-c", "user.name=t", "-c", "user.email=t@t", "add", "."], check=True)
    subprocess.run(["git", "-C", str(where), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
                   check=True)
    commit = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    done = _import(name, source, tmp_path / "out", *([str(where)] if name == "gedit" else []))
    assert done.returncode == 0, done.stderr
    found = read_judge_prompts(str(tmp_path / "out" / "judge_prompts.json"))
    assert found.benchmark == name and sorted(found.prompts) == sorted(SPECS[name].names)
    first = SPECS[name].names[0]
    assert found.prompts[first].startswith(("\nJudge " + first, "Rate the " + first))
    (src,) = found.sources
    assert src.sha256 == hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert src.path == SPECS[name].places[0] and src.commit == commit.strip()
    assert "judge prompts of the official protocol" in done.stdout
    official = os.path.join("configs", f"{name}-official.yaml")
    if os.path.isfile(os.path.join(REPO, official)):      # where the benchmark's own judge has a config
        assert f"under its official protocol: python3 -m launch --config {official} --set dataset.path=" \
            in done.stdout


@pytest.mark.parametrize("name", list(COPIES))
def test_a_copy_missing_a_prompt_is_refused_naming_the_file_and_the_names(name, tmp_path):
    missing = SPECS[name].names[1]
    source, where, path = copy_with_prompts(name, tmp_path, leave_out=(missing,))
    done = _import(name, source, tmp_path / "out", *([str(where)] if name == "gedit" else []))
    assert done.returncode == 2
    assert f"{path}: the judge prompt(s) {missing} are not there as text (looked for " in done.stderr
    assert not os.path.exists(tmp_path / "out")


def test_a_gedit_scorer_without_the_prompt_file_is_refused_and_without_a_scorer_noted(tmp_path):
    source = COPIES["gedit"](tmp_path / "src")
    os.makedirs(tmp_path / "scorer")
    done = _import("gedit", source, tmp_path / "out", str(tmp_path / "scorer"))
    assert done.returncode == 2 and "no judge prompt file at GEdit-Bench/viescore/vie_prompts.py" in done.stderr
    done = _import("gedit", source, tmp_path / "out")
    assert done.returncode == 0 and "give the scorer checkout as a second source" in done.stdout
    assert not os.path.exists(tmp_path / "out" / "judge_prompts.json")


def test_a_copy_without_prompts_imported_over_one_with_them_leaves_no_prompts_of_the_first(tmp_path):
    source, where, _ = copy_with_prompts("risebench", tmp_path)
    assert _import("risebench", source, tmp_path / "out").returncode == 0
    assert os.path.exists(tmp_path / "out" / "judge_prompts.json")
    os.remove(os.path.join(where, SPECS["risebench"].places[0]))
    os.remove(tmp_path / "out" / "benchmark.jsonl")                 # as the refusal to import over it says
    done = _import("risebench", source, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "an earlier import's judge prompts: this copy ships none" in done.stdout
    assert not os.path.exists(tmp_path / "out" / "judge_prompts.json")


def test_imgedit_data_naming_its_edit_type_adjust_is_imported(tmp_path):
    source = COPIES["imgedit"](tmp_path / "src")
    index = os.path.join(source, "Benchmark", "Basic", "basic_edit.json")
    data = json.load(open(index))
    data["97"]["edit_type"] = "adjust"
    json.dump(data, open(index, "w"))
    done = _import("imgedit", source, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in open(tmp_path / "out" / "benchmark.jsonl")]
    assert {line["id"]: line["category"] for line in lines}["97"] == "adjust"
