"""Public benchmarks as they ship: fixtures in each benchmark's real layout, made here (no data of theirs), are
imported, load through the dataset checks with their ids, categories and fields, run end to end on the demo's
tiny models with the benchmark's own config, and a broken or wrong source is refused with the problem named."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from PIL import Image

from conftest import DEMO_CONFIG, REPO, absolute_demo_config, base_python
from shards.config import load_config
from shards.config_prompts import prompt_fields
from shards.dataset import load_dataset, select_samples


def _png(path, color=(200, 30, 30), size=(48, 32)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, color).save(path)


def risebench_copy(root):
    samples = []
    for category, n in (("temporal_reasoning", 1), ("causal_reasoning", 2), ("logical_reasoning", 3)):
        image = f"{category}_images/{n}.png"
        _png(os.path.join(root, "data", image), (40 * n, 90, 20))
        sample = {"index": f"{category}_{n}", "category": category, "instruction": f"Show {category} {n}.",
                  "image": image}
        if category == "logical_reasoning":
            sample["reference_img"] = f"{category}_images/{n}_ref.png"
            _png(os.path.join(root, "data", sample["reference_img"]), (0, 0, 255))
        else:
            sample["reference"] = f"the answer to {n}"
        samples.append(sample)
    with open(os.path.join(root, "data", "data_total.json"), "w") as f:
        json.dump(samples, f)
    return root


def kris_copy(root):
    tasks = {"physics": {"1": {"ori_img": "1.png", "ins_en": "Drop the ball.", "explain_en": "It falls down.",
                               "gt_img": "1_gt.png"}},
             "color_change": {"1": {"ori_img": "1.jpg", "ins_en": "Make the car blue."},
                              "2": {"ori_img": ["2.png", "3.png"], "ins_en": "Put them together."}}}
    for task, annotations in tasks.items():
        for record in annotations.values():
            for name in ([record["ori_img"]] if isinstance(record["ori_img"], str) else record["ori_img"]):
                _png(os.path.join(root, "KRIS_Bench", task, name))
            if "gt_img" in record:
                _png(os.path.join(root, "KRIS_Bench", task, record["gt_img"]))
        with open(os.path.join(root, "KRIS_Bench", task, "annotation.json"), "w") as f:
            json.dump(annotations, f)
    return root


def imgedit_copy(root):
    index = {"97": {"id": "for_add/000236569.jpg", "prompt": "Add a lamp.", "edit_type": "add"},
             "673": {"id": "style/000278574.jpg", "prompt": "Make it ukiyo-e.", "edit_type": "style"},
             "1149": {"id": "compose/human/14.jpg", "prompt": "Remove the box; brighten.", "edit_type": "compose"}}
    for record in index.values():
        _png(os.path.join(root, "Benchmark", "singleturn", record["id"]))
    os.makedirs(os.path.join(root, "Benchmark", "Basic"))
    with open(os.path.join(root, "Benchmark", "Basic", "basic_edit.json"), "w") as f:
        json.dump(index, f)
    return root


def gedit_copy(root):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for key, task in (("a1", "color_alter"), ("b2", "subject-add")):
        for language in ("en", "cn"):
            buffer = io.BytesIO()
            Image.new("RGB", (40, 40), (10, 200 if language == "en" else 100, 10)).save(buffer, "PNG")
            image = {"bytes": buffer.getvalue(), "path": None}
            rows.append({"task_type": task, "key": key, "instruction": f"{task} {key} ({language})",
                         "instruction_language": language, "input_image": image, "input_image_raw": image,
                         "Intersection_exist": key == "a1"})
    os.makedirs(os.path.join(root, "data"))
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(root, "data", "train-00000-of-00001.parquet"))
    return root


COPIES = {"risebench": risebench_copy, "kris": kris_copy, "imgedit": imgedit_copy, "gedit": gedit_copy}


def _import(name, source, output, *more, python=sys.executable):
    # The import decodes every image (Pillow) and GEdit-Bench's parquet needs pyarrow: this suite's interpreter is
    # the judge environment's, which has both. The launcher's bare Python hands the import to that environment
    # (tested below, with the demo's config, whose environment this suite runs in).
    return subprocess.run([python, "-m", "launch", "import-benchmark", name, str(source), "--output", str(output),
                           *more], cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True)


def _loaded(name, output):
    config = load_config(os.path.join(REPO, "configs", f"{name}.yaml"))
    path = os.path.join(output, "benchmark.jsonl")
    samples = load_dataset(path, categories=prompt_fields(config))
    return config, samples


EXPECTED = {
    "risebench": ({"temporal_reasoning_1": "temporal_reasoning", "causal_reasoning_2": "causal_reasoning",
                   "logical_reasoning_3": "logical_reasoning"},
                  {"causal_reasoning_2": {"reference": "the answer to 2"},
                   "logical_reasoning_3": {"reference_image": "images/logical_reasoning_images/3_ref.png"}}),
    "kris": ({"physics/1": "physics", "color_change/1": "color_change"},
             {"physics/1": {"explanation": "It falls down.", "task": "physics",
                            "reference_image": "images/physics/1_gt.png"}}),
    "imgedit": ({"97": "add", "673": "style", "1149": "compose"}, {"1149": {"edit_type": "compose"}}),
    "gedit": ({"color_alter/en/a1": "color_alter", "color_alter/cn/a1": "color_alter",
               "subject-add/en/b2": "subject-add", "subject-add/cn/b2": "subject-add"},
              {"color_alter/cn/a1": {"language": "cn", "intersection": True, "key": "a1"},
               "subject-add/en/b2": {"language": "en", "intersection": False}}),
}


@pytest.mark.parametrize("name", list(COPIES))
def test_an_import_keeps_ids_categories_and_fields_and_loads_through_the_dataset_checks(name, tmp_path):
    source, output = COPIES[name](str(tmp_path / "source")), tmp_path / "out"
    done = _import(name, source, output)
    assert done.returncode == 0, done.stdout + done.stderr
    config, samples = _loaded(name, output)
    categories, fields = EXPECTED[name]
    assert {s.id: s.category for s in samples} == categories
    for sample in samples:
        for key, value in fields.get(sample.id, {}).items():
            assert sample.extra[key] == value
        assert os.path.isfile(os.path.join(output, sample.image))
        for key in prompt_fields(config)[sample.category]:
            assert sample.extra[key]
    assert f"{len(categories)} samples" in done.stdout
    if name == "kris":                                  # a sample of several input images is named, not lost
        assert "left out 1 sample(s) with several input images" in done.stdout and "color_change/2" in done.stdout
    if name == "gedit":                                 # the config runs one language; the bytes are kept as they are
        english = select_samples(samples, None, None, where=config.dataset.where)
        assert sorted(s.id for s in english) == ["color_alter/en/a1", "subject-add/en/b2"]
        with open(os.path.join(output, "images", "color_alter", "en", "a1.png"), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _break(name, source):
    """Each benchmark's copy with one thing wrong, and the words its refusal must contain."""
    if name == "risebench":
        os.remove(os.path.join(source, "data", "causal_reasoning_images", "2.png"))
        return ["causal_reasoning_2: image", "causal_reasoning_images/2.png does not exist"]
    if name == "kris":
        path = os.path.join(source, "KRIS_Bench", "physics", "annotation.json")
        with open(path) as f:
            annotations = json.load(f)
        del annotations["1"]["explain_en"]
        with open(path, "w") as f:
            json.dump(annotations, f)
        return ["sample '1': missing field 'explain_en', which the judge of task 'physics' is shown"]
    if name == "imgedit":
        path = os.path.join(source, "Benchmark", "Basic", "basic_edit.json")
        with open(path) as f:
            index = json.load(f)
        del index["673"]["prompt"]
        index["97"]["edit_type"] = "paint"
        with open(path, "w") as f:
            json.dump(index, f)
        return ["sample '673': missing or empty field 'prompt'", "edit_type 'paint' is not one of ImgEdit's"]
    import pyarrow.parquet as pq

    path = os.path.join(source, "data", "train-00000-of-00001.parquet")
    pq.write_table(pq.read_table(path).drop(["instruction_language"]), path)
    return ["missing column(s) instruction_language that GEdit-Bench has"]


@pytest.mark.parametrize("name", list(COPIES))
def test_a_broken_copy_is_refused_with_the_problem_named_and_nothing_written(name, tmp_path):
    source, output = COPIES[name](str(tmp_path / "source")), tmp_path / "out"
    expected = _break(name, source)
    done = _import(name, source, output)
    assert done.returncode == 2, done.stdout
    for words in expected:
        assert words in done.stderr, done.stderr
    assert not os.path.exists(output / "benchmark.jsonl")


def test_a_copy_of_another_benchmark_is_named_for_what_it_is(tmp_path):
    source = risebench_copy(str(tmp_path / "rise"))
    done = _import("imgedit", source, tmp_path / "out")
    assert done.returncode == 2
    assert "not a copy of imgedit as it ships" in done.stderr and "try `import-benchmark risebench`" in done.stderr


def test_an_import_never_writes_over_an_earlier_one(tmp_path):
    source = imgedit_copy(str(tmp_path / "source"))
    assert _import("imgedit", source, tmp_path / "out").returncode == 0
    again = _import("imgedit", source, tmp_path / "out")
    assert again.returncode == 2 and "benchmark.jsonl exists" in again.stderr


def _outside(tmp_path, source: str, name: str) -> list[str]:
    """Files of the benchmark's copy replaced by links that leave it; the words its refusal must contain."""
    elsewhere = tmp_path / "elsewhere"
    _png(str(elsewhere / "x.png"))
    if name == "risebench":                 # an image that is a link to a system file, a reference image outside
        image = os.path.join(source, "data", "causal_reasoning_images", "2.png")
        reference = os.path.join(source, "data", "logical_reasoning_images", "3_ref.png")
        os.remove(image), os.remove(reference)
        os.symlink("/etc/hostname", image)
        os.symlink(elsewhere / "x.png", reference)
        return [f"causal_reasoning_2: {image} leads outside the source", f"({os.path.realpath('/etc/hostname')})",
                f"logical_reasoning_3: {reference} leads outside the source"]
    task = os.path.join(source, "KRIS_Bench", "color_change")      # kris: a task folder that is a link elsewhere
    os.rename(task, elsewhere / "color_change")
    os.symlink(elsewhere / "color_change", task)
    return [f"color_change/1: {task}/1.jpg leads outside the source"]


@pytest.mark.parametrize("name", ["risebench", "kris"])
def test_a_file_that_leads_outside_the_source_is_refused_and_nothing_written(name, tmp_path):
    source, output = COPIES[name](str(tmp_path / "source")), tmp_path / "out"
    expected = _outside(tmp_path, source, name)
    done = _import(name, source, output)
    assert done.returncode == 2, done.stdout
    for words in expected:
        assert words in done.stderr, done.stderr
    assert not os.path.exists(output)


def _undecodable(source: str, name: str) -> list[str]:
    """One image of the benchmark's copy that cannot be read, or that the judge cannot take; the words its refusal
    must contain."""
    if name == "risebench":                 # not an image at all
        path = os.path.join(source, "data", "temporal_reasoning_images", "1.png")
        with open(path, "w") as f:
            f.write("not an image")
        return [f"temporal_reasoning_1: cannot decode image {path}"]
    if name == "kris":                      # the reference image is cut short
        path = os.path.join(source, "KRIS_Bench", "physics", "1_gt.png")
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        return [f"physics/1: cannot decode image {path}"]
    if name == "imgedit":                   # an animation and a strip the judge refuses
        path = os.path.join(source, "Benchmark", "singleturn", "style", "000278574.jpg")
        frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
        frames[0].save(path, "GIF", save_all=True, append_images=frames[1:])
        strip = os.path.join(source, "Benchmark", "singleturn", "for_add", "000236569.jpg")
        Image.new("RGB", (4000, 2)).save(strip, "JPEG")
        return [f"673: cannot use image {path}: it has 2 frames (GIF)",
                f"97: cannot use image {strip}: its aspect ratio (4000x2) is over 200:1"]
    import pyarrow.parquet as pq  # gedit: an embedded PNG whose data is cut short

    path = os.path.join(source, "data", "train-00000-of-00001.parquet")
    rows = pq.read_table(path).to_pylist()
    rows[0]["input_image"] = {"bytes": rows[0]["input_image"]["bytes"][:60], "path": None}
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows), path)
    return ["color_alter/en/a1: cannot decode the embedded image"]


@pytest.mark.parametrize("name", list(COPIES))
def test_an_image_that_cannot_be_read_is_refused_before_anything_is_written(name, tmp_path):
    source, output = COPIES[name](str(tmp_path / "source")), tmp_path / "out"
    expected = _undecodable(source, name)
    done = _import(name, source, output)
    assert done.returncode == 2, done.stdout
    for words in expected:
        assert words in done.stderr, done.stderr
    assert not os.path.exists(output)


def test_a_16_bit_image_is_imported(tmp_path):
    import numpy as np

    source, output = risebench_copy(str(tmp_path / "source")), tmp_path / "out"
    gradient = Image.fromarray(np.arange(65536, dtype=np.uint16).reshape(256, 256))
    gradient.save(os.path.join(source, "data", "temporal_reasoning_images", "1.png"))
    done = _import("risebench", source, output)
    assert done.returncode == 0, done.stderr


def test_a_hub_cache_snapshot_whose_files_link_into_its_blobs_is_imported(tmp_path):
    # huggingface_hub's cache: snapshots/<revision>/<file> are links to ../../blobs/<hash>, outside the snapshot.
    repo = tmp_path / "hub" / "datasets--PhoenixZ810--RISEBench"
    snapshot = repo / "snapshots" / "0123abc"
    risebench_copy(str(snapshot))
    os.makedirs(repo / "blobs")
    for folder, _, files in os.walk(snapshot):
        for name in files:
            path = os.path.join(folder, name)
            blob = repo / "blobs" / f"{len(os.listdir(repo / 'blobs')):04d}"
            os.rename(path, blob)
            os.symlink(os.path.relpath(blob, folder), path)
    done = _import("risebench", snapshot, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert os.path.isfile(tmp_path / "out" / "images" / "logical_reasoning_images" / "3_ref.png")


def test_the_launchers_bare_python_finds_a_broken_copy_before_any_environment(tmp_path):
    source, output = risebench_copy(str(tmp_path / "source")), tmp_path / "out"
    expected = _break("risebench", source)
    done = _import("risebench", source, output, python=base_python())
    assert done.returncode == 2, done.stdout
    for words in expected:
        assert words in done.stderr, done.stderr
    assert "judge environment" not in done.stdout + done.stderr


def _run_config(name, dataset, folder):
    """The benchmark's config (its categories, prompts and filters) with the demo's tiny models and CPU ranks."""
    with open(os.path.join(REPO, "configs", f"{name}.yaml"), encoding="utf-8") as f:
        data = yaml.safe_load(f)
    demo = absolute_demo_config()
    data.update(edit=demo["edit"], distributed={**demo["distributed"], "nproc_per_node": 1},
                output_dir=str(folder / "run"))
    data["score"] = {**demo["score"], "prompts": data["score"]["prompts"]}
    data["dataset"]["path"] = dataset
    path = folder / "config.yaml"
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, allow_unicode=True, sort_keys=False)
    return str(path)


@pytest.fixture(scope="module")
def benchmark_runs(pythons, demo_run, tmp_path_factory) -> dict:
    """Each benchmark's copy imported, then run end to end by the launcher on the demo's tiny models (built by
    `demo_run`): the four launches side by side, each on one rank, so that the machine's cores are shared instead
    of idling while a rank starts. By name: (its folder, the launcher's exit status, its output)."""
    started = {}
    for name in COPIES:
        folder = tmp_path_factory.mktemp(f"benchmark-{name}")
        source, output = COPIES[name](str(folder / "source")), folder / "out"
        imported = _import(name, source, output)
        assert imported.returncode == 0, imported.stderr
        config = _run_config(name, str(output / "benchmark.jsonl"), folder)
        log = open(folder / "launch.log", "w+", encoding="utf-8")
        started[name] = folder, log, subprocess.Popen([base_python(), "-m", "launch", "--config", config], cwd=REPO,
                                                      env={**os.environ, "PYTHONPATH": REPO}, stdout=log,
                                                      stderr=subprocess.STDOUT, text=True)
    runs = {}
    for name, (folder, log, proc) in started.items():
        proc.wait(timeout=1500)
        log.seek(0)
        runs[name] = folder, proc.returncode, log.read()
        log.close()
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COPIES))
def test_an_imported_benchmark_runs_end_to_end_on_the_demo_models(name, benchmark_runs):
    folder, returncode, output = benchmark_runs[name]
    assert returncode == 0, output[-6000:]
    with open(folder / "run" / "report.json", encoding="utf-8") as f:
        report = json.load(f)
    categories, _ = EXPECTED[name]
    wanted = {i for i in categories if name != "gedit" or "/en/" in i}          # GEdit-Bench: English only
    assert {s["id"] for s in report["samples"]} == wanted
    assert report["overall"]["failed"] == 0 and report["overall"]["scored"] == len(wanted)
    dimensions = {d for s in report["samples"] for d in s["dimensions"]}
    assert dimensions == {"gedit": {"semantics", "quality"}, "risebench": {"reasoning", "consistency", "plausibility"},
                          "kris": {"consistency", "instruction", "knowledge", "quality"},
                          "imgedit": {"adherence", "quality", "preservation"}}[name]


@pytest.mark.slow
def test_the_launchers_bare_python_decodes_the_images_in_the_judge_environment(pythons, tmp_path):
    done = subprocess.run([base_python(), "-c", "import PIL"], capture_output=True)
    assert done.returncode != 0                          # the bare Python has no Pillow: the import must delegate
    source, output = kris_copy(str(tmp_path / "source")), tmp_path / "out"
    expected = _undecodable(source, "kris")
    done = _import("kris", source, output, "--config", DEMO_CONFIG, python=base_python())
    assert done.returncode == 2 and expected[0] in done.stderr, done.stdout + done.stderr
    assert f"decoding the images with the judge environment's {pythons['score']}" in done.stdout
    os.remove(os.path.join(source, "KRIS_Bench", "physics", "1_gt.png"))
    _png(os.path.join(source, "KRIS_Bench", "physics", "1_gt.png"))
    done = _import("kris", source, output, "--config", DEMO_CONFIG, python=base_python())
    assert done.returncode == 0 and "kris: 2 samples in 2 categories" in done.stdout, done.stdout + done.stderr


@pytest.mark.slow
def test_the_launchers_bare_python_reads_gedits_parquet_in_the_judge_environment(pythons, tmp_path):
    done = subprocess.run([base_python(), "-c", "import pyarrow"], capture_output=True)
    assert done.returncode != 0                          # the bare Python has no pyarrow: the import must delegate
    source, output = gedit_copy(str(tmp_path / "source")), tmp_path / "out"
    done = subprocess.run([base_python(), "-m", "launch", "import-benchmark", "gedit", source, "--output", str(output),
                           "--config", DEMO_CONFIG], cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"reading parquet and decoding the images with the judge environment's {pythons['score']}" in done.stdout
    assert "gedit: 4 samples in 2 categories" in done.stdout


def test_an_index_nested_too_deep_for_the_parser_is_named_not_a_traceback(tmp_path):
    from launch.importers.common import BenchmarkError, read_json

    path = tmp_path / "data_total.json"
    path.write_text("[" * 100000 + "]" * 100000, encoding="utf-8")
    with pytest.raises(BenchmarkError, match=f"{path}: cannot read the RISEBench index: nested too deep"):
        read_json(str(path), "RISEBench index")


def _rewritten_index(source: str, change) -> None:
    path = os.path.join(source, "data", "data_total.json")
    with open(path) as f:
        records = json.load(f)
    change(records)
    with open(path, "w") as f:
        json.dump(records, f)


@pytest.mark.parametrize("change, words", [
    # The import wrote a dataset that the loader then refused.
    (lambda r: r[0].update(index="a\nb"), "sample 'a\\nb': the id contains a control character"),
    (lambda r: r[0].update(index="x" * 300), "the id is 300 characters long"),
    # Written half: images copied, then UnicodeEncodeError on the JSONL.
    (lambda r: r[0].update(instruction="\ud800 drop"), "field 'instruction' is not valid Unicode text"),
    (lambda r: r[1].update(reference="\udc00"), "field 'reference' is not valid Unicode text"),
    # A TypeError traceback from os.path.join.
    (lambda r: r[2].update(reference_img=7), "'reference_img' must be a path (text), got 7"),
])
def test_a_sample_the_dataset_loader_would_refuse_is_refused_before_anything_is_written(tmp_path, change, words):
    source, output = risebench_copy(str(tmp_path / "source")), tmp_path / "out"
    _rewritten_index(source, change)
    done = _import("risebench", source, output)
    assert done.returncode == 2, done.stdout + done.stderr
    assert words in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not os.path.exists(output)


def test_a_kris_sample_whose_one_input_image_is_in_a_list_is_imported(tmp_path):
    source, output = kris_copy(str(tmp_path / "source")), tmp_path / "out"
    path = os.path.join(source, "KRIS_Bench", "physics", "annotation.json")
    with open(path) as f:
        annotations = json.load(f)
    annotations["1"]["ori_img"] = ["1.png"]                 # one image, as a list: read as that image
    with open(path, "w") as f:
        json.dump(annotations, f)
    done = _import("kris", source, output)
    assert done.returncode == 0, done.stderr
    assert "physics/1" in {s.id for s in _loaded("kris", output)[1]}
