"""Each stage as a real 2-rank torchrun job on CPU (gloo) with the tiny models, in its own environment."""

import json
import os
import re

import pytest
import torch

from conftest import copy_run, cuda_usable, fault, torchrun, write_config
from shards.manifest import read_manifest
from shards.store import read_image, verify_shards

pytestmark = pytest.mark.slow
IDS = ["phys-01", "phys-02", "ref-01", "ref-02"]


@pytest.fixture(scope="module")
def edited(pythons, tmp_path_factory):
    """One 2-rank edit run over two categories (4 samples), shared by the tests below."""
    folder = tmp_path_factory.mktemp("stages")
    config, out = write_config(folder), str(folder / "run")
    done = torchrun(pythons["edit"], "edit_stage", 2,
                    ["--config", config, "--output-dir", out, "--categories", "物理", "指代"])
    assert done.returncode == 0, done.stdout + done.stderr
    return config, out, done.stdout + done.stderr


@pytest.fixture(scope="module")
def scored(pythons, edited):
    config, out, _ = edited
    done = torchrun(pythons["score"], "score_stage", 2, ["--config", config, "--output-dir", out])
    assert done.returncode == 0, done.stdout + done.stderr
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        return json.load(f), done.stdout + done.stderr


def test_edit_stage_writes_every_sample_once_in_verified_shards(edited):
    _, out, output = edited
    manifest = read_manifest(out)
    assert [s["id"] for s in manifest["samples"]] == IDS
    assert manifest["world_size"] == 2
    assert {s["rank"] for s in manifest["shards"]} == {0, 1}
    assert sum(s["num_samples"] for s in manifest["shards"]) == len(IDS)
    verify_shards(out, manifest["shards"])
    image = read_image(out, manifest["samples"][0])
    assert image.dtype == torch.uint8 and tuple(image.shape) == (64, 64, 3)
    assert manifest["versions"]["transformers"].startswith("4.57.")
    assert manifest["config"]["dataset"]["categories"] == ["物理", "指代"]
    for rank in (0, 1):
        assert f"[edit r{rank}/2] edited" in output and f"[edit r{rank}] denoise" in output


def test_an_edited_image_does_not_depend_on_the_number_of_ranks(pythons, edited, tmp_path):
    config, out, _ = edited
    single = str(tmp_path / "single")
    # torchrun leaves one rank all the cores (OMP_NUM_THREADS unset) and gives each of two ranks one thread; on
    # a 2-core machine, two threads put one pixel of ref-02 one level off.
    done = torchrun(pythons["edit"], "edit_stage", 1, ["--config", config, "--output-dir", single,
                                                       "--categories", "指代"])
    assert done.returncode == 0, done.stdout + done.stderr
    two_ranks = {s["id"]: s for s in read_manifest(out)["samples"]}
    for sample in read_manifest(single)["samples"]:
        assert sample["seed"] == two_ranks[sample["id"]]["seed"]
        assert torch.equal(read_image(single, sample), read_image(out, two_ranks[sample["id"]]))


def test_score_stage_reports_every_sample_once_in_expected_mode(edited, scored):
    report, output = scored
    assert [s["id"] for s in report["samples"]] == IDS
    assert report["world_size"] == {"edit": 2, "score": 2} and report["scoring_mode"] == "expected"
    assert list(report["categories"]) == ["物理", "指代"]
    for sample in report["samples"]:
        assert sample["status"] == "ok" and 0.0 <= sample["score"] <= 10.0       # expected mode never fails to score
        for answer in sample["dimensions"].values():
            assert len(answer["distribution"]) == 11 and abs(sum(answer["distribution"]) - 1) < 1e-4
    physics = report["samples"][0]["dimensions"]
    assert list(physics) == ["reasoning", "quality"]                           # 物理: two dimensions, min
    assert report["samples"][0]["score"] == min(a["score"] for a in physics.values())
    assert list(report["samples"][2]["dimensions"]) == ["score"]               # 指代: one, inline
    o = report["overall"]
    assert (o["count"], o["scored"], o["unparsed"]) == (4, 4, 0) and o["categories_in_mean"] == 2
    # tqdm's cursor movements may precede a line, so look for the lines anywhere in the output.
    judged = re.findall(r"\[score r(\d)/2\] [^/\s]+/(\S+) score=", output)
    assert sorted(i for _, i in judged) == sorted(IDS) and {r for r, _ in judged} <= {"0", "1"}
    _, out, _ = edited
    assert os.path.isfile(os.path.join(out, "results.csv")) and os.path.isfile(os.path.join(out, "report.md"))


def test_generate_mode_on_the_same_edits_reports_every_sample(pythons, edited, tmp_path):
    config, out, _ = edited
    copy = copy_run(out, str(tmp_path / "generate"), scores=False)
    done = torchrun(pythons["score"], "score_stage", 2,
                    ["--config", config, "--output-dir", copy, "--set", "score.mode=generate"])
    assert done.returncode == 0, done.stdout + done.stderr
    with open(os.path.join(copy, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert [s["id"] for s in report["samples"]] == IDS and report["scoring_mode"] == "generate"
    for sample in report["samples"]:
        assert sample["status"] in ("ok", "unparsed") and (sample["score"] is None) == (sample["status"] == "unparsed")
        assert all(isinstance(a["response"], str) for a in sample["dimensions"].values())
    assert report["overall"]["scored"] + report["overall"]["unparsed"] == 4


def test_the_stages_ran_with_different_transformers(scored):
    report, _ = scored
    edit, score = report["versions"]["edit"]["transformers"], report["versions"]["score"]["transformers"]
    assert edit.startswith("4.57.") and score.startswith("5.")


def test_a_config_typo_stops_a_stage_with_one_clear_line(pythons, tmp_path):
    config = write_config(tmp_path, changes={"edit.seeed": 1})
    done = torchrun(pythons["edit"], "edit_stage", 2, ["--config", config, "--output-dir", str(tmp_path / "o")])
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"error: {config}: edit.seeed: unknown key; did you mean 'seed'?" in output
    assert output.count("edit.seeed: unknown key") == 1          # from rank 0 only
    # torchrun prints its own ChildFailedError summary; the stage itself adds no traceback of ours.
    assert "edit_stage/cli.py" not in output and "shards/config.py" not in output
    assert not os.path.exists(tmp_path / "o" / "manifest.json")


def test_work_flows_to_the_idle_rank_when_one_rank_is_slow(pythons, demo_run, tmp_path):
    # Rank 1 sleeps before each sample; a loaded machine slows both ranks alike, the sleep stays. A fixed split
    # gives each rank 5; a shared queue gives the other rank more and keeps both busy to within one sample of the
    # end (at the fast rank's measured pace). How many more depends on the load: no ratio is asserted.
    delay = 12.0
    out = str(tmp_path / "run")
    done = torchrun(pythons["edit"], "edit_stage", 2, ["--config", write_config(tmp_path), "--output-dir", out],
                    env=fault("edit_stage.pipeline:edit_sample", 1, "slow", seconds=delay))
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = read_manifest(out)
    assert len(manifest["samples"]) == 10 and len({s["id"] for s in manifest["samples"]}) == 10
    ranks = {r["rank"]: r for r in manifest["attempts"][-1]["ranks"]}
    fast, slow = ranks[0], ranks[1]
    assert fast["samples"] + slow["samples"] == 10
    per_image = fast["busy_s"] / fast["samples"]                    # the fast rank's own pace
    ideal = 10 / (1 / per_image + 1 / (per_image + delay))           # both ranks busy until the very end
    wall = max(fast["busy_s"], slow["busy_s"])
    assert fast["samples"] > slow["samples"]
    assert wall <= ideal + per_image + delay                         # within one sample of the ideal
    print(f"\nslow rank (+{delay:.0f} s/image): fast rank {fast['samples']} samples, slow rank {slow['samples']}; "
          f"editing wall time {wall:.1f} s, ideal {ideal:.1f} s, a fixed split {5 * (per_image + delay):.1f} s")


def test_the_score_stage_shares_its_work_the_same_way(pythons, demo_run, tmp_path):
    out = copy_run(demo_run[1], str(tmp_path / "run"), scores=False)
    done = torchrun(pythons["score"], "score_stage", 2, ["--config", demo_run[0], "--output-dir", out],
                    env=fault("score_stage.judges.in_process:InProcessJudge.ask", 1, "slow", seconds=3.0))
    assert done.returncode == 0, done.stdout + done.stderr
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    ranks = {r["rank"]: r["samples"] for r in report["attempts"]["score"][-1]["ranks"]}
    assert ranks[0] + ranks[1] == 10 and ranks[0] > ranks[1]
    assert sorted(s["id"] for s in report["samples"]) == sorted(s["id"] for s in read_manifest(out)["samples"])


@pytest.mark.skipif(cuda_usable(), reason="a CUDA GPU is usable here: a stage set to cuda would use it")
@pytest.mark.parametrize("stage", ["edit", "score"])
def test_a_stage_set_to_cuda_without_a_gpu_stops_before_any_model_loads(pythons, demo_run, tmp_path, stage):
    """Runs where no GPU is: skipped where this environment's torch can use one (conftest.cuda_usable, the
    question the stages ask), where test_a_stage_set_to_cuda_on_a_gpu_gets_its_local_ranks_gpu runs instead."""
    model = tmp_path / "never-built"
    config = write_config(tmp_path, {f"{stage}.model": str(model), "distributed.device": "cuda"})
    out = copy_run(demo_run[1], str(tmp_path / "run"), scores=False)
    done = torchrun(pythons[stage], f"{stage}_stage", 1, ["--config", config, "--output-dir", out, "--restart"])
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "error: distributed.device is cuda, but this environment's torch cannot use a GPU" in output
    assert "torch 2.14.1" in output and ("NVIDIA driver" in output) and "stopped before loading any model" in output
    assert not model.exists()


@pytest.mark.gpu
def test_a_stage_set_to_cuda_on_a_gpu_gets_its_local_ranks_gpu():
    from shards.runtime.device import DeviceError, resolve_device

    count = torch.cuda.device_count()
    assert resolve_device("cuda", 0) == torch.device("cuda", 0) == resolve_device("auto", 0)
    with pytest.raises(DeviceError, match=f"local rank {count} needs GPU {count}, but only {count} are visible"):
        resolve_device("cuda", count)
