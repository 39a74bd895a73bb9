"""The editor families `edit.pipeline` names: each family's settings, environment and model-card configs, checked
when the config loads (fast), and each new family's tiny build run end to end in its own environment (slow)."""

import json
import os
import re
import subprocess

import numpy as np
import pytest
import yaml

from conftest import DEMO_DATASET, REPO, base_python, run_module, torchrun, write_config
from shards.config import ConfigError, load_config, to_dict
from shards.dataset import load_dataset
from shards.manifest import read_manifest
from shards.store import read_image

QWEN21, KONTEXT = "QwenImage21Pipeline", "FluxKontextPipeline"
QWEN21_BLOCK, KONTEXT_BLOCKS = 353_898_752, 545_548_096     # transformer parameters at --layers 1 (real width)
FLUX_SETTINGS = {"edit.pipeline": KONTEXT, "edit.guidance_scale": 2.5, "edit.true_cfg_scale": 1.0}


def _refusal(tmp_path, changes: dict) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, changes=changes))
    return str(info.value)


@pytest.mark.parametrize("changes, expected", [
    ({"edit.guidance_scale": 3.5},
     "edit.guidance_scale: QwenImageEditPlusPipeline has no guidance_scale (FLUX's distilled guidance: only "
     "FluxKontextPipeline); did you mean 'true_cfg_scale'?"),
    ({"edit.pipeline": QWEN21, "edit.guidance_scale": 3.5}, "edit.guidance_scale: QwenImage21Pipeline has no"),
    ({**FLUX_SETTINGS, "edit.output_resolution": 1024},
     "edit.output_resolution: FluxKontextPipeline has no output_resolution (Qwen-Image-2.1's working resolution: "
     "only QwenImage21Pipeline); did you mean 'height'?"),
    ({"edit.output_resolution": 1024}, "edit.output_resolution: QwenImageEditPlusPipeline has no output_resolution"),
    ({"edit.pipeline": QWEN21, "edit.max_sequence_length": 64}, "edit.max_sequence_length: QwenImage21Pipeline has no"),
    ({"edit.pipeline": QWEN21, "edit.auto_resize": False}, "edit.auto_resize: QwenImage21Pipeline has no"),
    ({"edit.pipeline": KONTEXT, "edit.true_cfg_scale": 1.0},
     "edit.guidance_scale: required for FluxKontextPipeline"),
    ({"edit.pipeline": QWEN21, "edit.height": 48}, "edit.height: must be a positive multiple of 32 for "
                                                   "QwenImage21Pipeline, got 48"),
    ({**FLUX_SETTINGS, "edit.width": 40}, "edit.width: must be a positive multiple of 16 for FluxKontextPipeline"),
    ({"edit.pipeline": QWEN21, "edit.num_inference_steps": 1}, "edit.num_inference_steps: must be at least 2"),
    ({**FLUX_SETTINGS, "edit.speed": {"linear_patch_embed": True}},
     "edit.speed.linear_patch_embed: does not apply to FluxKontextPipeline (its options: attention_backend, compile)"),
    ({"edit.pipeline": QWEN21, "edit.speed": {"batched_cfg": True}},
     "edit.speed.batched_cfg: does not apply to QwenImage21Pipeline"),
    ({"edit.pipeline": QWEN21, "edit.output_resolution": 0}, "edit.output_resolution: must be at least 1"),
])
def test_a_setting_of_another_family_is_refused_with_the_nearest_valid_key(tmp_path, changes, expected):
    assert expected in _refusal(tmp_path, changes)


def test_settings_every_family_has_are_taken(tmp_path):
    flux = load_config(write_config(tmp_path, changes={**FLUX_SETTINGS, "edit.negative_prompt": " ",
                                                       "edit.true_cfg_scale": 4.0, "edit.num_inference_steps": 1}))
    assert (flux.edit.true_cfg_scale, flux.edit.guidance_scale, flux.edit.num_inference_steps) == (4.0, 2.5, 1)


def test_each_family_gets_its_environment_and_qwen_image_edit_keeps_its_own(tmp_path):
    default = {"edit.env": {}}                     # written configs hold the demo's resolved environment
    qwen_edit = load_config(write_config(tmp_path, changes=default))
    qwen21 = load_config(write_config(tmp_path, changes={**default, "edit.pipeline": QWEN21}))
    flux = load_config(write_config(tmp_path, changes={**default, **FLUX_SETTINGS}))
    assert qwen_edit.edit.env.venv == os.path.join(REPO, ".envs", "edit")
    assert qwen21.edit.env == flux.edit.env
    assert (flux.edit.env.venv, flux.edit.env.extras) == (os.path.join(REPO, ".envs", "edit-tf5"), ["edit-tf5"])


def test_model_card_configs():
    qwen21 = load_config(os.path.join(REPO, "configs", "qwen-image-2.1.yaml")).edit
    assert (qwen21.model, qwen21.pipeline) == ("Qwen/Qwen-Image-2.1", QWEN21)
    assert (qwen21.num_inference_steps, qwen21.true_cfg_scale, qwen21.output_resolution) == (40, 1.0, 2048)
    flux = load_config(os.path.join(REPO, "configs", "flux.1-kontext-dev.yaml")).edit
    assert (flux.model, flux.pipeline) == ("black-forest-labs/FLUX.1-Kontext-dev", KONTEXT)
    assert (flux.num_inference_steps, flux.guidance_scale, flux.true_cfg_scale) == (28, 2.5, 1.0)
    assert (flux.max_sequence_length, flux.auto_resize, flux.height, flux.width) == (512, True, None, None)


def test_a_family_setting_left_unset_is_no_part_of_the_run_identity(tmp_path):
    # A folder edited before these settings existed recorded no such keys: it must still resume.
    from shards.folder.identity import run_identity

    qwen = run_identity(load_config(write_config(tmp_path)), "edit")
    assert not {"edit.guidance_scale", "edit.output_resolution", "edit.auto_resize"} & set(qwen)
    flux = run_identity(load_config(write_config(tmp_path, changes=FLUX_SETTINGS)), "edit")
    assert flux["edit.guidance_scale"] == 2.5 and flux["edit.pipeline"] == KONTEXT


def test_qwen_image_21s_rgba_is_composited_over_white():
    from edit_stage.families.qwen21 import rgba_to_rgb

    pixels = np.array([[[0.2, 0.4, 0.6, 1.0], [0.2, 0.4, 0.6, 0.0], [0.0, 0.0, 0.0, 0.5]]], dtype=np.float32)
    assert np.allclose(rgba_to_rgb(pixels), [[[0.2, 0.4, 0.6], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]])
    with pytest.raises(ValueError, match="expected RGBA"):
        rgba_to_rgb(pixels[..., :3])


def test_a_kontext_edit_takes_its_inputs_kontext_size_unless_one_is_set():
    from PIL import Image

    from edit_stage.families.flux_kontext import output_size

    preferred = [(1024, 1024), (1248, 832), (832, 1248)]              # (width, height), as diffusers lists them
    wide, odd = Image.new("RGB", (96, 64)), Image.new("RGB", (100, 70))
    assert output_size(wide, None, None, True, preferred) == (832, 1248)      # (height, width): its aspect's size
    assert output_size(odd, None, None, False, preferred) == (64, 96)         # its own size, floored to 16
    assert output_size(wide, 64, 64, True, preferred) == (64, 64)             # as configured
    assert output_size(wide, None, 512, False, preferred) == (64, 512)


# The new families' runs, in their own environment (.envs/edit-tf5, built on first use: minutes), on their tiny
# builds: the demo end to end through the launcher, a LoRA, a resumed run, the benchmark at real width.
DEMOS = {QWEN21: os.path.join(REPO, "configs", "demo-qwen-image-2.1.yaml"),
         KONTEXT: os.path.join(REPO, "configs", "demo-flux-kontext.yaml")}
BUILDS = {QWEN21: "edit_stage.families.qwen21_build", KONTEXT: "edit_stage.families.flux_kontext_build"}


@pytest.fixture(scope="session")
def tf5_python() -> str:
    """The edit-tf5 environment's interpreter (built by the launcher's own code if it is missing)."""
    from launch.envs import prepare_environments

    return prepare_environments(load_config(DEMOS[QWEN21]), stages=("edit",))["edit"]


@pytest.fixture(scope="module", params=[QWEN21, KONTEXT])
def family_demo(request, tf5_python, tmp_path_factory) -> tuple[str, str, subprocess.CompletedProcess]:
    """(pipeline, output folder, the launcher's exit and output) of the family's demo, as shipped, run once."""
    out = str(tmp_path_factory.mktemp("family-demo") / "run")
    done = run_module(base_python(), ["-m", "launch", "--config", DEMOS[request.param], "--output-dir", out],
                      timeout=1800)
    return request.param, out, done


@pytest.mark.slow
def test_the_demo_of_each_new_family_runs_end_to_end_in_its_own_environment(family_demo):
    pipeline, out, done = family_demo
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert re.search(r"\[launch\] edit environment: \S+/\.envs/edit-tf5/bin/python \(.*diffusers 0\.42\.1", output)
    manifest = read_manifest(out)
    ids = [s.id for s in load_dataset(DEMO_DATASET)]
    assert manifest["model"]["pipeline"] == pipeline
    assert sorted(s["id"] for s in manifest["samples"]) == sorted(ids)
    assert all(s["status"] == "ok" for s in manifest["samples"])                 # every sample edited
    for entry in manifest["samples"]:
        image = read_image(out, entry)
        assert tuple(image.shape) == (64, 64, 3) and int(image.max()) > int(image.min())   # RGB, not blank
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    assert sorted(s["id"] for s in report["samples"]) == sorted(ids) and report["overall"]["unparsed"] == 0
    assert report["record"]["editor"]["pipeline"] == pipeline
    assert os.path.isfile(os.path.join(out, "report.html"))


def _family_config(tmp_path, pipeline: str, **changes) -> str:
    """The family's demo config with every path absolute and `changes` (dotted keys) applied."""
    data = to_dict(load_config(DEMOS[pipeline]))
    data.pop("source")
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp_path / f"{pipeline}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(path)


@pytest.mark.slow
def test_a_lora_changes_each_new_familys_images_and_is_recorded(family_demo, tf5_python, tmp_path):
    # Resuming is the same code for every family (a run of LoRA checkpoints killed mid-edit and resumed:
    # tests/test_sweep.py): here each family's own adapter loading is what is checked.
    pipeline, base, done = family_demo
    assert done.returncode == 0, done.stdout + done.stderr
    model = read_manifest(base)["config"]["edit"]["model"]
    lora = str(tmp_path / "lora")
    made = run_module(tf5_python, ["-m", BUILDS[pipeline], "--output", lora, "--lora-for", model])
    assert made.returncode == 0, made.stderr
    config, out = _family_config(tmp_path, pipeline, **{"edit.lora": [{"path": lora, "scale": 0.8}]}), str(tmp_path / "o")
    first = torchrun(tf5_python, "edit_stage", 2, ["--config", config, "--output-dir", out, "--limit", "2"])
    assert first.returncode == 0, first.stdout + first.stderr
    manifest = read_manifest(out)
    edited = {s["id"]: s["sha256"] for s in manifest["samples"]}
    plain = {s["id"]: s["sha256"] for s in read_manifest(base)["samples"]}
    assert len(edited) == 2 and all(sha != plain[i] for i, sha in edited.items())      # the LoRA changed every image
    (record,) = manifest["model"]["lora"]
    assert record["scale"] == 0.8 and len(record["sha256"]) == 64 and manifest["model"]["fuse_lora"] is True


@pytest.mark.slow
@pytest.mark.parametrize("pipeline, size, block", [(QWEN21, 256, QWEN21_BLOCK), (KONTEXT, 64, KONTEXT_BLOCKS)])
def test_the_benchmark_runs_each_new_family_on_cpu_at_real_width(tf5_python, tmp_path, pipeline, size, block):
    out = tmp_path / "edit.json"
    # --options "": no compilation warm-up (a minute and more on this machine); the bare call and the stage's
    # own path are still both measured and compared.
    done = run_module(tf5_python, ["-m", "edit_stage.bench", "--pipeline", pipeline, "--device", "cpu", "--layers",
                                   "1", "--height", str(size), "--width", str(size), "--steps", "2", "--images", "1",
                                   "--warmup", "0", "--options", "", "--checkpoint-dir", str(tmp_path), "--json",
                                   str(out)], timeout=3000)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["setup"]["pipeline"] == pipeline and figures["variants"]["bare"]["s_per_image"] > 0
    assert figures["build"]["parameters"]["transformer"] == block                   # one block of the real width
    assert figures["within_tolerance"], figures
    print(f"\n{pipeline} bench (CPU, 1 layer, {size}x{size}, 2 steps): load {figures['load_s']} s, "
          f"{figures['variants']['bare']['s_per_image']} s per image, peak RSS "
          f"{figures['host_peak_rss_bytes'] / 1e9:.2f} GB for {figures['weights_bytes'] / 1e9:.2f} GB of weights")


@pytest.mark.slow
def test_the_released_architectures_have_their_verified_parameter_counts(tf5_python):
    code = ("import json, sys, torch; from edit_stage.families import builds, parameter_count; "
            "meta = lambda p: builds(p).build_random(torch.device('meta'), torch.bfloat16); "
            "print(json.dumps([parameter_count(meta(p), p) for p in sys.argv[1:]]))")
    done = run_module(tf5_python, ["-c", code, *BUILDS], timeout=600)
    assert done.returncode == 0, done.stderr
    counts = dict(zip(BUILDS, json.loads(done.stdout.strip().splitlines()[-1])))
    assert counts == {
        QWEN21: {"transformer": 7_115_124_736, "text_encoder": 8_767_123_696, "vae": 337_740_404},
        KONTEXT: {"transformer": 11_901_408_320, "text_encoder": 123_060_480, "text_encoder_2": 4_762_310_656,
                  "vae": 83_819_683}}


@pytest.mark.slow
def test_the_matmul_patch_embedding_gives_qwen_image_21s_images(family_demo, tf5_python):
    # Qwen3-VL's patch embedding has a bias (Qwen2.5-VL's has none) and sits at text_encoder.model.visual.
    pipeline, base, _ = family_demo
    if pipeline != QWEN21:
        pytest.skip("linear_patch_embed is refused for FLUX.1 Kontext, which has no vision tower")
    code = ("import sys, dataclasses, torch, numpy as np; from PIL import Image; "
            "from shards.config import load_config, EditSpeed; from edit_stage.pipeline import load_pipeline, edit_image; "
            "cfg = load_config(sys.argv[1]).edit; fast = dataclasses.replace(cfg, speed=EditSpeed(linear_patch_embed=True)); "
            "image = Image.new('RGB', (96, 64), (200, 120, 40)); "
            "a, b = (edit_image(load_pipeline(c, torch.device('cpu')), c, image, 'Turn the day into night.', 0) "
            "for c in (cfg, fast)); print(float(np.abs(a - b).max()))")
    done = run_module(tf5_python, ["-c", code, DEMOS[QWEN21]])
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) < 1e-5                 # float32: the same computation, reordered
