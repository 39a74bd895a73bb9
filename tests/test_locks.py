"""The locks the stage environments are built from: every package pinned, and current with pyproject.toml."""

from launch import lockfiles


def test_the_projects_locks_pin_every_package_of_each_stage():
    for extras in (["edit"], ["edit-tf5"], ["score"], ["score", "test"]):
        requirements = lockfiles.requirements_stamp(extras)["requirements"]
        with open(lockfiles.read_lock(extras, requirements, None), encoding="utf-8") as f:
            pins = dict(line.split("==") for line in f.read().splitlines() if not line.startswith("#"))
        assert pins["torch"] == "2.14.1" and "numpy" in pins and "qwen-edit-bench" not in pins
        assert pins["transformers"] == ("4.57.6" if extras == ["edit"] else "5.23.0")
        if extras[0].startswith("edit"):
            assert pins["diffusers"] == ("0.39.0" if extras == ["edit"] else "0.42.1") and pins["peft"] == "0.21.2"


def test_a_lock_is_written_from_pips_report_without_the_project_itself():
    report = {"install": [{"metadata": {"name": "torch", "version": "2.14.1"}},
                          {"metadata": {"name": "qwen-edit-bench", "version": "0.1.0"}},
                          {"metadata": {"name": "Jinja2", "version": "3.1.6"}}]}
    lines = lockfiles.lock_lines(report, ["torch==2.14.1"], "https://download.pytorch.org/whl/cu126")
    assert [line for line in lines if not line.startswith("#")] == ["Jinja2==3.1.6", "torch==2.14.1"]
    assert f"# for: {lockfiles.interpreter_tag()}" in lines and "# torch index: https://download.pytorch.org/whl/cu126" in lines
    assert lockfiles.lock_path(["score", "test"], None).endswith("configs/locks/score+test.txt")
    assert lockfiles.lock_path(["edit"], "https://download.pytorch.org/whl/cu126/").endswith("edit@cu126.txt")
