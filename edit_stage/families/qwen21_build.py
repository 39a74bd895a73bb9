"""Random-weight builds of Qwen-Image-2.1 (QwenImage21Pipeline): a tiny pipeline for the demo and the tests, a
tiny LoRA for it, and the released architecture (`configs/arch/qwen-image-2.1/`) at real width for the benchmark.

    python -m edit_stage.families.qwen21_build --output /tmp/tiny-qwen-image-2.1

Every component is the class model_index.json names (Qwen3VLProcessor, Qwen3VLForConditionalGeneration,
QwenImage21Transformer2DModel, AutoencoderKLQwenImage21, FlowMatchEulerDiscreteScheduler with the released
scheduler config); the tiny one is only shrunk, and is saved with `save_pretrained` so that it loads through the
same `from_pretrained` path as the release. Only the tokenizer is not the real one: the tiny byte-level BPE with
Qwen3-VL's chat template (`shards.tiny.qwen3_vl`). Build it in the edit-tf5 environment, which loads it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

import torch
from diffusers import (AutoencoderKLQwenImage21, FlowMatchEulerDiscreteScheduler, QwenImage21Pipeline,
                       QwenImage21Transformer2DModel)
from transformers import (Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration,
                          Qwen3VLProcessor, Qwen3VLVideoProcessor)

from edit_stage.real_arch import default_dtype
from edit_stage.tiny import save_pipeline
from shards.config import REPO_ROOT
from shards.tiny.qwen3_vl import CHAT_TEMPLATE, qwen3_vl_tokenizer

ARCH = os.path.join(REPO_ROOT, "configs", "arch", "qwen-image-2.1")
TEXT_HIDDEN = 64        # == transformer context_in_dim == vision out_hidden_size (else a shape error)
Z_DIM = 64              # the real VAE's latent channels == transformer in/out channels (patch_size 1, no 2x2 packing)
# One image token of Qwen3-VL must be one 32x32 tile (= 2x2 latents of the 16x VAE): patch 16, merge 2.
PATCH, MERGE, TEMPORAL = 16, 2, 2
# The pipeline resizes the input to output_resolution**2 pixels of area and shows the same pixels to Qwen3-VL:
# the processor must not resize them again, or its image tokens and the VAE's latents disagree and the
# transformer raises. The released floor is 256**2; the tiny build lowers it so output_resolution 64 works.
TINY_MIN_PIXELS = (PATCH * MERGE) ** 2
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "img_mlp.proj", "img_mlp.gate_layer", "img_mlp.out"]


def arch_config(component: str, name: str = "config.json") -> dict:
    """A released config file, without its `_class_name`-style bookkeeping keys."""
    with open(os.path.join(ARCH, component, name), encoding="utf-8") as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def _processor(tokenizer: Qwen2Tokenizer, min_pixels: int) -> Qwen3VLProcessor:
    """The released processor's settings, with `min_pixels` as its floor (the ceiling stays the released one)."""
    released = arch_config("processor", "preprocessor_config.json")
    size = {"shortest_edge": min_pixels, "longest_edge": released["size"]["longest_edge"]}
    common = {k: released[k] for k in ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")}
    # Never used for an edit, but Qwen3VLProcessor cannot be built or loaded without a video processor.
    return Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(size=size, **common), tokenizer=tokenizer,
                            video_processor=Qwen3VLVideoProcessor(size=size, **common), chat_template=CHAT_TEMPLATE)


def _token_ids(tokenizer: Qwen2Tokenizer) -> dict:
    """The special-token ids the text encoder's config must share with the tokenizer."""
    ids = tokenizer.convert_tokens_to_ids
    return dict(image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
                vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))


def _tiny_text_encoder(tokenizer: Qwen2Tokenizer) -> Qwen3VLForConditionalGeneration:
    """A two-layer Qwen3-VL; interleaved M-RoPE sections [6, 5, 5] are the real [24, 20, 20] for head_dim 32."""
    text = dict(vocab_size=len(tokenizer), hidden_size=TEXT_HIDDEN, intermediate_size=2 * TEXT_HIDDEN,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                max_position_embeddings=4096, bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [6, 5, 5],
                                 "mrope_interleaved": True})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=PATCH,
                  spatial_merge_size=MERGE, temporal_patch_size=TEMPORAL, out_hidden_size=TEXT_HIDDEN,
                  num_position_embeddings=64, deepstack_visual_indexes=[0, 1])
    config = Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False, **_token_ids(tokenizer))
    return Qwen3VLForConditionalGeneration(config).eval()


def build_tiny(output_dir: str | os.PathLike, pipeline: str = "QwenImage21Pipeline", *,
               seed: int = 0) -> pathlib.Path:
    """Build a tiny random-weight Qwen-Image-2.1 pipeline (about 4 MB) and save it; model_index.json comes last."""
    tokenizer = qwen3_vl_tokenizer(Qwen2Tokenizer)
    torch.manual_seed(seed)
    text_encoder = _tiny_text_encoder(tokenizer)
    # The real layouts, narrower: two single-stream blocks with block-causal attention; a VAE with 4 downsamples
    # (the pipeline hardcodes 16x) and RGBA in and out, 8/12 base channels instead of 96/144.
    transformer = QwenImage21Transformer2DModel(
        patch_size=1, in_channels=Z_DIM, out_channels=Z_DIM, num_layers=2, attention_head_dim=16,
        num_attention_heads=2, context_in_dim=TEXT_HIDDEN, mlp_ratio=3, axes_dims_rope=(4, 6, 6),
        causal_condition=True).eval()
    vae = AutoencoderKLQwenImage21(base_dim=8, decoder_base_dim=12, z_dim=Z_DIM, dim_mult=[1, 2, 4, 4, 4],
                                   num_res_blocks=1, temperal_downsample=[False, True, True, True]).eval()
    pipe = QwenImage21Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(arch_config("scheduler", "scheduler_config.json")),
        vae=vae, text_encoder=text_encoder, processor=_processor(tokenizer, TINY_MIN_PIXELS), transformer=transformer)
    return save_pipeline(pipe, pathlib.Path(output_dir))


def build_tiny_lora(pipeline_dir: str | os.PathLike, output_dir: str | os.PathLike, *, rank: int = 4,
                    seed: int = 0) -> pathlib.Path:
    """A random LoRA of the tiny pipeline's transformer blocks (attention and MLP), saved as diffusers saves one.
    Its B matrices are random too: peft's default zeros would leave the images unchanged."""
    from peft import LoraConfig, get_peft_model_state_dict

    transformer = QwenImage21Transformer2DModel.from_pretrained(pipeline_dir, subfolder="transformer",
                                                                use_safetensors=True)
    torch.manual_seed(seed)
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                       target_modules=LORA_TARGETS))
    QwenImage21Pipeline.save_lora_weights(output_dir, transformer_lora_layers=get_peft_model_state_dict(transformer))
    return pathlib.Path(output_dir)


def text_encoder_config(token_ids: dict, layers: int | None) -> Qwen3VLConfig:
    """The released Qwen3-VL-8B config with the tiny tokenizer's special-token ids, optionally fewer layers."""
    raw = {**arch_config("text_encoder"), **token_ids}
    text, vision = dict(raw["text_config"]), dict(raw["vision_config"])
    if layers:
        text["num_hidden_layers"] = layers
        # Deepstack features of vision layer i feed text layer k: both must exist (out of range runs silently).
        deepstack = [i for i in vision["deepstack_visual_indexes"] if i < layers] or [layers - 1]
        vision.update(depth=layers, deepstack_visual_indexes=deepstack[:layers])
    return Qwen3VLConfig(**{**raw, "text_config": text, "vision_config": vision})


def build_random(device: torch.device, dtype: torch.dtype, layers: int | None = None,
                 seed: int = 0) -> QwenImage21Pipeline:
    """QwenImage21Pipeline of the released architecture with random weights, every weight made on `device`.

    Args:
        layers: Keep this many layers of each stack (None: all, 7.1 B + 8.8 B + 0.34 B parameters).
    """
    tokenizer = qwen3_vl_tokenizer(Qwen2Tokenizer)
    transformer_config = arch_config("transformer")
    if layers:
        transformer_config["num_layers"] = layers
    torch.manual_seed(seed)
    with torch.device(device), default_dtype(dtype):
        transformer = QwenImage21Transformer2DModel.from_config(transformer_config).eval()
        vae = AutoencoderKLQwenImage21.from_config(arch_config("vae")).eval()
    with torch.device(device):
        text_encoder = Qwen3VLForConditionalGeneration._from_config(
            text_encoder_config(_token_ids(tokenizer), layers), dtype=dtype).eval()
    released_floor = arch_config("processor", "preprocessor_config.json")["size"]["shortest_edge"]
    return QwenImage21Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(arch_config("scheduler", "scheduler_config.json")),
        vae=vae, text_encoder=text_encoder, processor=_processor(tokenizer, released_floor), transformer=transformer)



def main(argv: list[str] | None = None) -> None:
    """CLI: python -m edit_stage.families.qwen21_build --output DIR [--seed N] [--lora-for PIPELINE]"""
    parser = argparse.ArgumentParser(prog="python -m edit_stage.families.qwen21_build",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="folder to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--lora-for", metavar="PIPELINE", help="instead, write a random LoRA for this tiny pipeline")
    args = parser.parse_args(argv)
    built = build_tiny_lora(args.lora_for, args.output, seed=args.seed) if args.lora_for else \
        build_tiny(args.output, seed=args.seed)
    print(f"wrote {built}", flush=True)


if __name__ == "__main__":
    main()
