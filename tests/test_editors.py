"""The editor families `edit.pipeline` names: each family's settings, environment and model-card configs, checked
when the config loads (fast), and each new family's tiny build run end to end in its own environment (slow)."""

import os

import pytest

from conftest import REPO, write_config
from shards.config import ConfigError, load_config

QWEN21, KONTEXT = "QwenImage21Pipeline", "FluxKontextPipeline"
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
