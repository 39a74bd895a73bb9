"""The edit stage's fast path: the same images as the bare diffusers call within the stated tolerance, and the
benchmark that measures both side by side (run here on the CPU at real width with one layer)."""

import json

import pytest

from conftest import run_module

pytestmark = pytest.mark.slow

# Runs in the edit environment: the tiny Plus pipeline in float32 (built by the first test that needs it, read by
# the next), one image edited by the bare call and by the stage's path with the given speed options; prints the two
# images' differences as JSON.
COMPARE = r"""
import json, os, sys, numpy as np, torch
from PIL import Image
from edit_stage.denoise import edit_plus
from edit_stage.pipeline import edit_image, load_pipeline, to_uint8
from edit_stage.speed import apply_speed
from edit_stage.tiny import build_tiny_pipeline
from shards.config import EditConfig, EditSpeed

model, options = sys.argv[1], json.loads(sys.argv[2])
if not os.path.exists(os.path.join(model, "model_index.json")):
    build_tiny_pipeline(model, plus=True)
cfg = EditConfig(model=model, pipeline="QwenImageEditPlusPipeline", dtype="float32", num_inference_steps=3,
                 true_cfg_scale=4.0, negative_prompt=" ", height=64, width=48, speed=EditSpeed(**options))
pipe = load_pipeline(cfg, torch.device("cpu"))
image = Image.new("RGB", (80, 64), (30, 140, 220))
bare = pipe(image=image, prompt="Turn the day into night.", negative_prompt=" ", true_cfg_scale=4.0,
            num_inference_steps=3, height=64, width=48, generator=torch.Generator("cpu").manual_seed(7),
            output_type="np").images[0]
own = edit_plus(pipe, image, "Turn the day into night.", " ", 4.0, 3, torch.Generator("cpu").manual_seed(7), 64, 48,
                batched=False)
apply_speed(pipe, cfg.speed)
fast = edit_image(pipe, cfg, image, "Turn the day into night.", 7)
diff = np.abs(to_uint8(bare, "bare").numpy().astype(int) - to_uint8(fast, "fast").numpy().astype(int))
print(json.dumps({"own_loop_identical": bool(np.array_equal(bare, own)), "max_abs_diff": int(diff.max()),
                  "float_max_abs_diff": float(np.abs(bare - fast).max())}))
"""


@pytest.fixture(scope="module")
def tiny_plus(tmp_path_factory) -> str:
    """Where the tests below keep one tiny Plus pipeline: built in the first one's process, only read after."""
    return str(tmp_path_factory.mktemp("speed") / "tiny")


def _compare(pythons, model: str, options: dict) -> dict:
    done = run_module(pythons["edit"], ["-c", COMPARE, model, json.dumps(options)], timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_stages_own_loop_is_the_bare_call_bit_for_bit_and_batched_cfg_is_within_rounding(pythons, tiny_plus):
    found = _compare(pythons, tiny_plus, {"batched_cfg": True})
    assert found["own_loop_identical"]                   # unbatched, the loop is the pipeline's, op for op
    assert found["max_abs_diff"] <= 1 and found["float_max_abs_diff"] < 1e-3


def test_every_option_together_is_within_the_tolerance(pythons, tiny_plus):
    from_speed = _tolerance(pythons)
    found = _compare(pythons, tiny_plus, {"batched_cfg": True, "compile": True, "linear_patch_embed": True,
                                         "attention_backend": "_native_math"})
    assert found["max_abs_diff"] <= min(1, from_speed["max_abs_diff"])


def _tolerance(pythons) -> dict:
    done = run_module(pythons["edit"], ["-c", "import json; from edit_stage.speed import TOLERANCE; "
                                              "print(json.dumps(TOLERANCE))"])
    return json.loads(done.stdout)


def test_the_benchmark_runs_on_cpu_at_real_width_and_its_fast_path_is_within_tolerance(pythons, tmp_path):
    out = tmp_path / "edit.json"
    done = run_module(pythons["edit"], ["-m", "edit_stage.bench", "--device", "cpu", "--layers", "1", "--height",
                                        "64", "--width", "64", "--steps", "2", "--images", "1", "--warmup", "0",
                                        "--options", "batched_cfg,linear_patch_embed", "--checkpoint-dir",
                                        str(tmp_path), "--json", str(out)], timeout=3000)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    for key in ("device", "versions", "speedup", "max_abs_diff", "psnr_db", "weights_bytes", "host_peak_rss_bytes"):
        assert key in figures, key
    for name in ("bare", "fast"):
        timed = figures["variants"][name]
        # One timed image (no warm-up): the median is that image, and it holds the step after the first (timed
        # alone as s_per_step) besides both encoders, the first step and the VAE.
        assert timed["warmup_images"] == 0 and timed["s_per_image_all"] == [timed["s_per_image"]]
        assert 0 < timed["s_per_step"] < timed["s_per_image"], timed
    assert figures["speedup"] == round(figures["variants"]["bare"]["s_per_image"] /
                                       figures["variants"]["fast"]["s_per_image"], 4)
    assert figures["variants"]["fast"]["options"] == {"batched_cfg": True, "linear_patch_embed": True}
    assert figures["build"]["parameters"]["transformer"] == 380_354_624    # one block of the real width
    assert figures["weights_bytes"] > 3e9                                     # a mid-size checkpoint
    assert figures["within_tolerance"], figures
    # Loading maps the files: host memory stays near the weights' size, with no private copy of them.
    assert figures["host_peak_rss_over_weights"] <= 1.3, figures
    assert figures["host_rss_after_load"]["anon"] < 0.5 * figures["weights_bytes"]
    print(f"\nedit bench (CPU, 1 layer): load {figures['load_s']} s, peak RSS "
          f"{figures['host_peak_rss_bytes'] / 1e9:.2f} GB for {figures['weights_bytes'] / 1e9:.2f} GB of weights "
          f"({figures['host_peak_rss_over_weights']}x), speedup {figures['speedup']}, max |diff| "
          f"{figures['max_abs_diff']}, PSNR {figures['psnr_db']} dB")


def test_the_full_size_architecture_has_the_published_parameter_counts(pythons):
    code = ("import json, torch; from edit_stage.real_arch import build_random_pipeline; "
            "from edit_stage.families import parameter_count; print(json.dumps(parameter_count("
            "build_random_pipeline(torch.device('meta'), torch.bfloat16), 'QwenImageEditPlusPipeline')))")
    done = run_module(pythons["edit"], ["-c", code], timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "transformer": 20_430_401_088, "text_encoder": 8_292_166_656, "vae": 126_892_531}


@pytest.mark.parametrize("setting, expected", [
    ("edit.speed.attention_backend=flsh", "edit.speed.attention_backend: 'flsh' is not a diffusers attention backend"),
    ("edit.speed.attention_backend=_flash_3_hub", "downloads its kernels from the hub at run time"),
    ("edit.speed.attention_backend=flash", "edit.speed.attention_backend: "),
])
def test_a_speed_option_this_environment_cannot_run_is_refused_before_any_model_loads(pythons, tmp_path, setting,
                                                                                       expected):
    from conftest import DEMO_CONFIG

    done = run_module(pythons["edit"], ["-m", "edit_stage", "--config", DEMO_CONFIG, "--output-dir",
                                        str(tmp_path / "o"), "--set", setting], timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr and not (tmp_path / "o" / "progress").exists()
