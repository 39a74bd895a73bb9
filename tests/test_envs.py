"""Stage environments: what a venv's stamp records, and that a rebuild never leaves a stage without a working one."""

import json
import os
import subprocess
import sys

import pytest

from conftest import base_python, write_config
from launch import envs, lockfiles
from launch.envs import prepare_environments
from shards.config import load_config


@pytest.fixture(autouse=True)
def locks(tmp_path, monkeypatch):
    """Locks of the bare project (no extras), from PyPI's torch and from PyTorch's cu126 index, in a folder of
    the test's own."""

    monkeypatch.setattr(lockfiles, "LOCKS_DIR", str(tmp_path / "locks"))
    os.makedirs(lockfiles.LOCKS_DIR)
    requirements = lockfiles.requirements_stamp([])["requirements"]
    for index in (None, "https://download.pytorch.org/whl/cu126"):
        report = {"install": [{"metadata": {"name": "PyYAML", "version": "6.0.3"}},
                              {"metadata": {"name": "qwen-edit-bench", "version": "0.1.0"}}]}
        with open(lockfiles.lock_path([], index), "w") as f:
            f.write("\n".join(lockfiles.lock_lines(report, requirements, index)) + "\n")
    return lockfiles


def _installs_fail(monkeypatch, tmp_path) -> None:
    """Make every pip install fail at once, offline: no index and a constraint nothing satisfies."""
    constraint = tmp_path / "impossible.txt"
    constraint.write_text("pyyaml<0\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONSTRAINT", str(constraint))


def _working_venv(folder, requirements=None) -> str:
    """A venv with a file of ours inside and a stamp saying what it was built from; returns its interpreter."""
    subprocess.run([base_python(), "-m", "venv", "--without-pip", str(folder)], check=True)
    python = os.path.join(folder, "bin", "python")
    version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()

    stamp = {"python": version, "extras": [], "torch_index": None,
             "requirements": requirements or sorted(lockfiles.requirements_stamp([])["requirements"]),
             "lock_sha256": envs.sha256_file(lockfiles.lock_path([], None))}
    (folder / envs.STAMP_NAME).write_text(json.dumps(stamp))
    (folder / "ours.txt").write_text("installed packages live here")
    return python


def test_a_launcher_on_another_python_patch_version_reuses_the_environment(tmp_path, monkeypatch):
    python = _working_venv(tmp_path / "env")
    monkeypatch.setattr(sys, "version", "3.11.2 (main, Mar 13 2023, 12:18:29) [GCC 12.2.0]")
    _installs_fail(monkeypatch, tmp_path)
    assert envs.ensure_venv(str(tmp_path / "env"), [], "edit") == python
    assert (tmp_path / "env" / "ours.txt").exists()


def test_a_failed_rebuild_leaves_the_old_environment_working(tmp_path, monkeypatch):
    python = _working_venv(tmp_path / "env", requirements=["an-old-pin==1.0"])
    _installs_fail(monkeypatch, tmp_path)
    with pytest.raises(envs.EnvError, match="the environment in use is left as it was"):
        envs.ensure_venv(str(tmp_path / "env"), [], "edit")
    assert (tmp_path / "env" / "ours.txt").exists()
    assert subprocess.run([python, "-c", "print('ok')"], capture_output=True, text=True).stdout == "ok\n"
    assert sorted(os.listdir(tmp_path)) == ["env", "env.build-mutex", "impossible.txt", "locks"]   # no half-built replacement left


def test_every_environment_setting_is_checked_before_any_is_rebuilt(tmp_path, monkeypatch):
    _working_venv(tmp_path / "score-env", requirements=["an-old-pin==1.0"])
    _installs_fail(monkeypatch, tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("CONDA_EXE", raising=False)
    config = load_config(write_config(tmp_path, {"edit.env": {"conda": "no-such-env"},
                                                 "score.env": {"venv": str(tmp_path / "score-env"), "extras": []}}))
    with pytest.raises(envs.EnvError, match="edit.env.conda"):
        prepare_environments(config)
    assert (tmp_path / "score-env" / "ours.txt").exists()


def test_a_rebuilt_environment_is_swapped_in_with_its_scripts_pointing_at_its_own_folder(tmp_path, monkeypatch):
    _working_venv(tmp_path / "env", requirements=["an-old-pin==1.0"])

    def install(python, spec, stage, folder, torch_index, lock):  # what pip does: scripts naming this python
        script = os.path.join(os.path.dirname(python), "torchrun")
        with open(script, "w") as f:
            f.write(f"#!{python}\nimport sys\nprint(sys.prefix)\n")
        os.chmod(script, 0o755)

    monkeypatch.setattr(envs, "_install", install)
    python = envs.ensure_venv(str(tmp_path / "env"), [], "edit")
    assert python == str(tmp_path / "env" / "bin" / "python")
    assert sorted(os.listdir(tmp_path)) == ["env", "env.build-mutex", "locks"] and not (tmp_path / "env" / "ours.txt").exists()
    ran = subprocess.run([str(tmp_path / "env" / "bin" / "torchrun")], capture_output=True, text=True)
    assert ran.stdout.strip() == str(tmp_path / "env")
    assert json.loads((tmp_path / "env" / envs.STAMP_NAME).read_text())["requirements"] == \
        lockfiles.requirements_stamp([])["requirements"]


def test_a_pytorch_index_for_older_drivers_is_passed_to_pip_and_recorded(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(envs, "_run", lambda command, stage, folder: commands.append(command) or (
        subprocess.run(command, check=True) if "venv" in command else None))
    monkeypatch.setattr(envs, "python_version", lambda python: "3.11.7")
    index = "https://download.pytorch.org/whl/cu126"
    envs.ensure_venv(str(tmp_path / "env"), [], "edit", torch_index=index)
    from_lock, project = [c for c in commands if "pip" in c]
    assert from_lock[from_lock.index("--extra-index-url") + 1] == index and "--no-deps" in from_lock
    assert from_lock[from_lock.index("-r") + 1].endswith("base@cu126.txt") and "-e" in project
    assert json.loads((tmp_path / "env" / envs.STAMP_NAME).read_text())["torch_index"] == index
    # Asked again for the same index, the environment is reused as it is.
    commands.clear()
    envs.ensure_venv(str(tmp_path / "env"), [], "edit", torch_index=index)
    assert commands == []


def test_a_missing_stale_or_foreign_lock_is_refused_naming_the_command_that_makes_it(tmp_path, locks):
    os.remove(lockfiles.lock_path([], None))
    with pytest.raises(envs.EnvError, match=r"no lock for extras \[\] .*python3 -m launch lock"):
        envs.ensure_venv(str(tmp_path / "env"), [], "edit")
    report = {"install": [{"metadata": {"name": "PyYAML", "version": "6.0.3"}}]}
    with open(lockfiles.lock_path([], None), "w") as f:
        f.write("\n".join(lockfiles.lock_lines(report, ["pyyaml>=5"], None)) + "\n")   # other requirements
    with pytest.raises(envs.EnvError, match="older than the requirements in pyproject.toml"):
        envs.ensure_venv(str(tmp_path / "env"), [], "edit")
    text = "\n".join(lockfiles.lock_lines(report, lockfiles.requirements_stamp([])["requirements"], None))
    with open(lockfiles.lock_path([], None), "w") as f:
        f.write(text.replace(lockfiles.interpreter_tag(), "python 3.9 linux aarch64"))
    with pytest.raises(envs.EnvError, match="was made for python 3.9 linux aarch64"):
        envs.ensure_venv(str(tmp_path / "env"), [], "edit")
    assert not (tmp_path / "env").exists()

