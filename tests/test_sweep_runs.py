"""How the launcher and the stages agree on a sweep's runs: the names the launcher expanded the sweep to reach
each stage whole, whatever they hold, and a stage does those runs and no others."""

import pytest

from conftest import write_config, write_lora_file
from shards.config import ConfigError, load_config
from shards.sweep import chosen_runs, sweep_runs


def _two_adapters(tmp_path, names: list[str]) -> str:
    checkpoints = []
    for name in names:
        folder = tmp_path / "ckpt" / name
        folder.mkdir(parents=True)
        write_lora_file(folder / "pytorch_lora_weights.safetensors")
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
    from launch.sweep.runs import stage_jobs

    one_env = stage_jobs({"edit": "e", "score": "s"}, {"e": ["base", "step-100"]})
    assert one_env == [("edit", "e", ["base", "step-100"]), ("score", "s", ["base", "step-100"])]
    two_envs = stage_jobs({"edit": "e", "score": "s"}, {"e": ["base"], "f": ["flux"]})
    assert two_envs == [("edit", "e", ["base"]), ("edit", "f", ["flux"]), ("score", "s", ["base", "flux"])]
    assert stage_jobs({"edit": "e", "score": "s"}, {}) == [("edit", "e", None), ("score", "s", None)]


def _safetensors(header: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header


@pytest.mark.parametrize("content", [b"\x93NUMPY random bytes", b"", _safetensors(b"{}"), _safetensors(b"[1, 2]"),
                                     _safetensors(b'{"foo.weight": {"dtype": "F32", "shape": []}}'),
                                     _safetensors(b'{"a.lora_A.weight": {') + b"truncated"])
def test_an_adapter_that_is_not_a_lora_is_refused_before_anything_runs_naming_its_checkpoint(tmp_path, content):
    """Found when its turn in the edit queue came, it failed the edit stage after hours, every rerun alike, and the
    checkpoints after it were never edited."""
    config = _two_adapters(tmp_path, ["step-100", "step-200", "step-300"])
    bad = tmp_path / "ckpt" / "step-200" / "pytorch_lora_weights.safetensors"
    bad.write_bytes(content)
    with pytest.raises(ConfigError, match=r"sweep checkpoint 'step-200': .*edit\.lora\[0\]\.path: "
                                          + f"{bad}: not a LoRA adapter"):
        sweep_runs(load_config(config))


@pytest.mark.parametrize("changes", [{"edit.nope": 1}, {"sweep": {"checkpoints": [{"lora": "/nowhere/step-*"}]}}])
def test_the_launcher_names_a_config_error_found_before_it_locks_anything(tmp_path, capsys, changes):
    from launch.cli import main

    assert main(["--config", write_config(tmp_path, changes), "--output-dir", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and ("edit.nope" in error or "matches nothing" in error), error


def test_a_changed_checkpoint_is_refused_with_how_to_redo_it_alone(tmp_path, capsys):
    """--restart, the remedy a single run is told, would start every checkpoint of the sweep over."""
    from launch.cli import main
    from shards.config import load_config as load
    from shards.folder.identity import run_identity
    from shards.folder.records import begin_attempt

    config = _two_adapters(tmp_path, ["step-100", "step-200"])
    out = str(tmp_path / "out")
    for run in sweep_runs(load(config, {"output_dir": out})):
        identity = run_identity(run.config, "edit")
        begin_attempt(run.config.output_dir, "edit", {**identity, "edit.seed": 7} if run.name == "step-200" else
                      identity, world_size=1, done_before=0, to_do=0)
    assert main(["--config", config, "--output-dir", out]) == 2
    error = capsys.readouterr().err
    assert f"{out}/step-200 holds edit work of a different run" in error
    assert f"to redo checkpoint 'step-200' alone, remove its folder {out}/step-200" in error, error
