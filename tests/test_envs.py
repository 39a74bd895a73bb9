"""Stage environments: what a venv's stamp records, and that a rebuild never leaves a stage without a working one."""

import errno
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import base_python, write_config
from launch import lockfiles, venvs
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
             "lock_sha256": venvs.sha256_file(lockfiles.lock_path([], None))}
    (folder / venvs.STAMP_NAME).write_text(json.dumps(stamp))
    (folder / "ours.txt").write_text("installed packages live here")
    return python


def test_a_launcher_on_another_python_patch_version_reuses_the_environment(tmp_path, monkeypatch):
    python = _working_venv(tmp_path / "env")
    monkeypatch.setattr(sys, "version", "3.11.2 (main, Mar 13 2023, 12:18:29) [GCC 12.2.0]")
    _installs_fail(monkeypatch, tmp_path)
    assert venvs.ensure_venv(str(tmp_path / "env"), [], "edit") == python
    assert (tmp_path / "env" / "ours.txt").exists()


def test_a_failed_rebuild_leaves_the_old_environment_working(tmp_path, monkeypatch):
    python = _working_venv(tmp_path / "env", requirements=["an-old-pin==1.0"])
    _installs_fail(monkeypatch, tmp_path)
    with pytest.raises(venvs.EnvError, match="the environment in use is left as it was"):
        venvs.ensure_venv(str(tmp_path / "env"), [], "edit")
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
    with pytest.raises(venvs.EnvError, match="edit.env.conda"):
        prepare_environments(config)
    assert (tmp_path / "score-env" / "ours.txt").exists()


def test_a_rebuilt_environment_is_swapped_in_with_its_scripts_pointing_at_its_own_folder(tmp_path, monkeypatch):
    _working_venv(tmp_path / "env", requirements=["an-old-pin==1.0"])

    def install(python, spec, stage, folder, torch_index, lock):  # what pip does: scripts naming this python
        script = os.path.join(os.path.dirname(python), "torchrun")
        with open(script, "w") as f:
            f.write(f"#!{python}\nimport sys\nprint(sys.prefix)\n")
        os.chmod(script, 0o755)

    monkeypatch.setattr(venvs, "_install", install)
    python = venvs.ensure_venv(str(tmp_path / "env"), [], "edit")
    assert python == str(tmp_path / "env" / "bin" / "python")
    assert sorted(os.listdir(tmp_path)) == ["env", "env.build-mutex", "locks"] and not (tmp_path / "env" / "ours.txt").exists()
    ran = subprocess.run([str(tmp_path / "env" / "bin" / "torchrun")], capture_output=True, text=True)
    assert ran.stdout.strip() == str(tmp_path / "env")
    assert json.loads((tmp_path / "env" / venvs.STAMP_NAME).read_text())["requirements"] == \
        lockfiles.requirements_stamp([])["requirements"]


def test_a_pytorch_index_for_older_drivers_is_passed_to_pip_and_recorded(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(venvs, "_run", lambda command, stage, folder: commands.append(command) or (
        subprocess.run(command, check=True) if "venv" in command else None))
    monkeypatch.setattr(venvs, "python_version", lambda python: "3.11.7")
    index = "https://download.pytorch.org/whl/cu126"
    venvs.ensure_venv(str(tmp_path / "env"), [], "edit", torch_index=index)
    from_lock, project = [c for c in commands if "pip" in c]
    assert from_lock[from_lock.index("--extra-index-url") + 1] == index and "--no-deps" in from_lock
    assert from_lock[from_lock.index("-r") + 1].endswith("base@cu126.txt") and "-e" in project
    assert json.loads((tmp_path / "env" / venvs.STAMP_NAME).read_text())["torch_index"] == index
    # Asked again for the same index, the environment is reused as it is.
    commands.clear()
    venvs.ensure_venv(str(tmp_path / "env"), [], "edit", torch_index=index)
    assert commands == []


def test_a_missing_stale_or_foreign_lock_is_refused_naming_the_command_that_makes_it(tmp_path, locks):
    os.remove(lockfiles.lock_path([], None))
    with pytest.raises(venvs.EnvError, match=r"no lock for extras \[\] .*python3 -m launch lock"):
        venvs.ensure_venv(str(tmp_path / "env"), [], "edit")
    report = {"install": [{"metadata": {"name": "PyYAML", "version": "6.0.3"}}]}
    with open(lockfiles.lock_path([], None), "w") as f:
        f.write("\n".join(lockfiles.lock_lines(report, ["pyyaml>=5"], None)) + "\n")   # other requirements
    with pytest.raises(venvs.EnvError, match="older than the requirements in pyproject.toml"):
        venvs.ensure_venv(str(tmp_path / "env"), [], "edit")
    text = "\n".join(lockfiles.lock_lines(report, lockfiles.requirements_stamp([])["requirements"], None))
    with open(lockfiles.lock_path([], None), "w") as f:
        f.write(text.replace(lockfiles.interpreter_tag(), "python 3.9 linux aarch64"))
    with pytest.raises(venvs.EnvError, match="was made for python 3.9 linux aarch64"):
        venvs.ensure_venv(str(tmp_path / "env"), [], "edit")
    assert not (tmp_path / "env").exists()



def _wheel(folder, name: str, version: str, module: str, commands: dict | None = None) -> None:
    """A pure-Python wheel of one module with a command of its name (or `commands`: name to entry point), made by
    hand (pip installs it offline from `folder`); `main` and `Main.run` print the interpreter's prefix."""
    info = f"{name.replace('-', '_')}-{version}.dist-info"
    commands = commands or {f"{name}-cmd": f"{module}:main"}
    with zipfile.ZipFile(folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", "w") as whl:
        whl.writestr(f"{module}/__init__.py", f"NAME = {name!r}\nimport sys\ndef main():\n    print(sys.prefix)\n"
                     "class Main:\n    run = staticmethod(main)\n")
        whl.writestr(f"{info}/entry_points.txt", "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in commands.items()))
        whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", "")


def test_environments_of_the_same_pytorch_pins_share_one_layer_which_is_repaired_when_deleted(tmp_path, monkeypatch):
    installs = _offline_lock(tmp_path, monkeypatch, more=(("nvidia-fake", "nvidia_fake"),))
    code = "import torch, nvidia_fake, plain_pkg; print(torch.__file__, plain_pkg.__file__, sep='\\n')"
    places = {}
    for name in ("a", "b"):
        python = venvs.ensure_venv(str(tmp_path / name), [], "edit")
        places[name] = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    [layer] = [p for p in os.listdir(tmp_path) if p.startswith("torch-0.0.1-") and not p.endswith(".build-mutex")]
    for name, (torch_file, plain_file) in places.items():
        assert torch_file.startswith(str(tmp_path / layer) + os.sep)             # the layer's, read by both
        assert plain_file.startswith(str(tmp_path / name) + os.sep)              # each venv's own
    assert sum(1 for path in installs if path.endswith("pins.txt")) == 1
    assert not [p for p in (tmp_path / layer).rglob("plain_pkg")] and not [p for p in (tmp_path / "a").rglob("nvidia_fake")]
    for name in ("a", "b"):      # the layer's commands (torchrun, say) are the venv's, run by its interpreter
        ran = subprocess.run([str(tmp_path / name / "bin" / "torch-cmd")], capture_output=True, text=True)
        assert ran.stdout.strip() == str(tmp_path / name), ran.stderr
    # A layer deleted (to free the disk, say) is built again for the next run, and the venvs read it as before.
    shutil.rmtree(tmp_path / layer)
    python = venvs.ensure_venv(str(tmp_path / "a"), [], "edit")
    assert subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.split() == places["a"]
    assert sum(1 for path in installs if path.endswith("pins.txt")) == 2


def _offline_lock(tmp_path, monkeypatch, commands: dict | None = None, more: tuple = ()) -> list:
    """The bare project's lock pinning torch (with `commands`), a plain package and `more` ((name, module), ...),
    their wheels served offline, the project's own editable install left out; returns the last argument of every
    command run (the requirement files pip installed), in order."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "torch", "0.0.1", "torch", commands)
    for name, module in (("plain-pkg", "plain_pkg"), *more):
        _wheel(wheels, name, "0.0.1", module)
    names = ("torch", "plain-pkg", *(name for name, _ in more))
    report = {"install": [{"metadata": {"name": n, "version": "0.0.1"}} for n in names]}
    with open(lockfiles.lock_path([], None), "w") as f:
        f.write("\n".join(lockfiles.lock_lines(report, lockfiles.requirements_stamp([])["requirements"], None)) + "\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    installs, real_run = [], venvs._run

    def run(command, stage, folder):
        if "-e" not in command:
            real_run(command, stage, folder)
            installs.append(command[-1])

    monkeypatch.setattr(venvs, "_run", run)
    return installs


def test_the_layers_commands_run_from_a_venv_whose_path_has_spaces_and_never_replace_its_own(tmp_path, monkeypatch,
                                                                                               capsys):
    _offline_lock(tmp_path, monkeypatch, {"torch-cmd": "torch:Main.run", "pip": "torch:main"})
    folder = tmp_path / "a folder with spaces" / ("long-name" * 12)     # a shebang line over 127 bytes, too
    venvs.ensure_venv(str(folder), [], "edit")
    # Only the pinned packages' commands are the layer's (not those of the pip it was installed with), said once.
    assert [line for line in capsys.readouterr().out.splitlines() if "keeps its own" in line] == [
        f"[launch] edit: {folder} keeps its own bin/pip, not the PyTorch layer's (torch's command)"]
    ran = subprocess.run([str(folder / "bin" / "torch-cmd")], capture_output=True, text=True)
    assert ran.stdout.strip() == str(folder), ran.stderr
    # The venv's own pip stays its pip (a layer's `python` would otherwise be written through the venv's link
    # into the base interpreter).
    ran = subprocess.run([str(folder / "bin" / "pip"), "--version"], capture_output=True, text=True)
    assert ran.stdout.startswith("pip "), ran.stdout + ran.stderr


def test_a_venv_reached_through_a_link_or_a_relative_path_is_one_venv_on_one_layer(tmp_path, monkeypatch):
    installs = _offline_lock(tmp_path, monkeypatch)
    (tmp_path / "shared").mkdir()
    monkeypatch.chdir(tmp_path / "shared")
    venvs.ensure_venv("env", [], "edit")
    ran = subprocess.run([str(tmp_path / "shared" / "env" / "bin" / "torch-cmd")], capture_output=True, text=True,
                         cwd="/")
    assert ran.stdout.strip() == str(tmp_path / "shared" / "env"), ran.stderr
    # A worktree's .envs/env links to the shared venv: it is used as it is, on the shared layer.
    (tmp_path / "worktree" / ".envs").mkdir(parents=True)
    os.symlink(tmp_path / "shared" / "env", tmp_path / "worktree" / ".envs" / "env")
    count = len(installs)
    venvs.ensure_venv(str(tmp_path / "worktree" / ".envs" / "env"), [], "edit")
    assert len(installs) == count and os.listdir(tmp_path / "worktree" / ".envs") == ["env"]


def test_a_layer_missing_some_of_its_files_is_built_again(tmp_path, monkeypatch):
    installs = _offline_lock(tmp_path, monkeypatch)
    python = venvs.ensure_venv(str(tmp_path / "env"), [], "edit")
    [layer] = [p for p in tmp_path.iterdir() if p.name.startswith("torch-0.0.1-") and p.suffix != ".build-mutex"]
    [package] = layer.glob("lib/python*/site-packages/torch")
    shutil.rmtree(package)                  # an `rm -rf` of the layer stopped before it reached the stamp
    venvs.ensure_venv(str(tmp_path / "env"), [], "edit")
    assert subprocess.run([python, "-c", "import torch"], capture_output=True, text=True).returncode == 0
    assert sum(1 for path in installs if path.endswith("pins.txt")) == 2


def test_a_full_disk_while_building_names_the_environment_and_leaves_nothing_half_built(tmp_path, monkeypatch):
    monkeypatch.setattr(venvs, "_run", lambda command, stage, folder: (
        subprocess.run(command, check=True) if "venv" in command else None))

    def disk_full(staging, folder):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))       # as a file's close reports it: no path

    monkeypatch.setattr(venvs, "_retarget", disk_full)
    with pytest.raises(venvs.EnvError, match=r"^edit: building \S+/env failed: \[Errno 28\] No space left"):
        venvs.ensure_venv(str(tmp_path / "env"), [], "edit")
    assert sorted(os.listdir(tmp_path)) == ["env.build-mutex", "locks"]
