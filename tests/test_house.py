"""The house's rules, held by tests rather than by memory: data flows one way (no stage imports the other), the
contract imports neither diffusers nor transformers (it loads in both stage environments), the launcher imports
no torch (it runs before any environment exists), no import circles, and no module reaches into an entry point."""

import ast
import os

import pytest

from conftest import project_sources

STAGES = ("edit_stage", "score_stage")
HEAVY = ("torch", "numpy", "PIL", "safetensors", "diffusers", "transformers", "accelerate", "huggingface_hub")


def module_name(path: str) -> str:
    name = path[:-3].replace(os.sep, ".")
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def imports(text: str, module: str, top_level_only: bool = False) -> list[str]:
    """The modules `module`'s code imports, absolute names; with `top_level_only`, only those imported when the
    module itself is imported (not inside a function)."""
    tree = ast.parse(text)
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level] if not module.endswith("__init__") else module.split(".")
                base = ".".join(package + ([base] if base else []))
            found.append(base)
            found += [f"{base}.{a.name}" for a in node.names]     # `from shards.report import stats`
        elif top_level_only and isinstance(node, ast.Try):
            found += imports(ast.unparse(node), module, top_level_only=True)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, dict]:
    """Module name -> its path, every import, and the project modules imported at import time."""
    sources = {module_name(path): (path, text) for path, text in project_sources()}
    found = {}
    for module, (path, text) in sources.items():
        every = imports(text, module)
        eager = [m for m in imports(text, module, top_level_only=True) if m in sources]
        found[module] = {"path": path, "text": text, "imports": every, "eager": sorted(set(eager))}
    return found


def roots(names: list[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_the_rules_see_every_module_of_the_house(graph):
    assert len(graph) > 60
    assert {"shards.folder.lock", "shards.runtime.dist", "launch.importers.gedit", "score_stage.judges.in_process"} \
        <= graph.keys()


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_imports_the_other(graph, stage):
    other = STAGES[1 - STAGES.index(stage)]
    offenders = {m["path"]: sorted(n for n in m["imports"] if n.split(".")[0] == other)
                 for name, m in graph.items() if name.split(".")[0] == stage}
    assert not {path: names for path, names in offenders.items() if names}, \
        f"{stage} imports {other}: the stages meet only through shards"


def test_the_contract_imports_neither_diffusers_nor_transformers(graph):
    offenders = {m["path"]: sorted(roots(m["imports"]) & {"diffusers", "transformers", "edit_stage", "score_stage",
                                                          "launch"})
                 for name, m in graph.items() if name.startswith("shards")}
    assert not {path: names for path, names in offenders.items() if names}, \
        "shards must import in both stage environments and know nothing of the stages or the launcher"


def test_the_launcher_imports_no_torch_anywhere_in_what_it_loads(graph):
    # What the launcher loads at import time, following project imports: none of it may need a stage environment.
    todo, seen = [n for n in graph if n.startswith("launch")], set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += graph[name]["eager"]
    heavy = {graph[n]["path"]: sorted(roots(imports(graph[n]["text"], n, True)) & set(HEAVY))
             for n in seen}
    assert not {path: names for path, names in heavy.items() if names}
    launch_torch = {m["path"] for name, m in graph.items() if name.startswith("launch") and "torch" in roots(m["imports"])}
    assert not launch_torch, "launch imports torch"


def test_no_two_modules_import_each_other_in_a_circle(graph):
    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            name, path = stack.pop()
            for nxt in graph[name]["eager"]:
                if nxt == start:
                    return path + [start]
                if nxt not in path:
                    stack.append((nxt, path + [nxt]))
        return None

    circles = [c for name in graph if (c := cycle_from(name))]
    assert not circles, f"import circles: {circles[:3]}"


def test_no_module_reaches_into_an_entry_point(graph):
    entry_points = {name for name in graph if name.endswith(".cli") or name.endswith("__main__")}
    reaching = {m["path"]: sorted(set(m["imports"]) & entry_points) for name, m in graph.items()
                if not name.endswith("__main__")}
    # A package's __main__ runs its entry point; nothing else imports one.
    assert not {path: names for path, names in reaching.items() if names}


def test_every_room_says_what_it_holds(graph):
    silent = [m["path"] for m in graph.values() if not ast.get_docstring(ast.parse(m["text"]))]
    assert not silent, f"modules without a docstring: {silent}"
