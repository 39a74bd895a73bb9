"""How the launcher and the stages agree on a sweep's runs: the names the launcher expanded the sweep to reach
each stage whole, whatever they hold, and a stage does those runs and no others."""

import pytest

from conftest import write_config
from shards.config import load_config
from shards.sweep import chosen_runs, sweep_runs


def _two_adapters(tmp_path, names: list[str]) -> str:
    checkpoints = []
    for name in names:
        folder = tmp_path / "ckpt" / name
        folder.mkdir(parents=True)
        (folder / "pytorch_lora_weights.safetensors").write_bytes(b"")
        checkpoints.append({"lora": str(folder)})
    return write_config(tmp_path, {"sweep": {"checkpoints": checkpoints}})


@pytest.mark.parametrize("stage", ["edit_stage", "score_stage"])
def test_a_stage_chooses_a_checkpoint_whose_name_holds_a_comma(tmp_path, stage):
    """Hyperparameters in a folder name (`lr=1e-4,bs=8`) are common; such a name is one checkpoint."""
    import importlib

    cli = importlib.import_module(f"{stage}.cli")
    config = _two_adapters(tmp_path, ["lr=1e-4,bs=8", "lr=1e-5,bs=8"])
    args = cli.parse_args(["--config", config, "--checkpoint", "lr=1e-4,bs=8"])
    runs = chosen_runs(sweep_runs(load_config(config)), args.checkpoints)
    assert [run.name for run in runs] == ["lr=1e-4,bs=8"]


def test_every_stage_job_of_a_sweep_does_the_runs_the_launcher_expanded():
    """A training run still saving `ckpt/step-*` adds a match between the launcher's expansion and a stage's: the
    stage must not take it up (its folder is not locked, the edit stage did not edit it), nor the report."""
    from launch.cli import stage_jobs

    one_env = stage_jobs({"edit": "e", "score": "s"}, {"e": ["base", "step-100"]})
    assert one_env == [("edit", "e", ["base", "step-100"]), ("score", "s", ["base", "step-100"])]
    two_envs = stage_jobs({"edit": "e", "score": "s"}, {"e": ["base"], "f": ["flux"]})
    assert two_envs == [("edit", "e", ["base"]), ("edit", "f", ["flux"]), ("score", "s", ["base", "flux"])]
    assert stage_jobs({"edit": "e", "score": "s"}, {}) == [("edit", "e", None), ("score", "s", None)]
