"""Build a tiny random-weight Qwen3-VL judge offline, for the CPU demo and the tests.

    python -m score_stage.tiny --output /tmp/tiny-qwen3-vl-judge [--moe] [--seed 0]

Every component is the class the real judge ships (Qwen/Qwen3-VL-8B-Instruct, or Qwen/Qwen3-VL-30B-A3B-Instruct
with --moe), only shrunk, with the real Instruct chat template, written with `save_pretrained`: it loads through
the same `AutoModelForImageTextToText` / `AutoProcessor` path as a real checkpoint. Build it in the environment
that loads it (transformers 5.x): a model saved by 5.x does not load in 4.57.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tempfile
import time

import torch
from transformers import (GenerationConfig, Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen3VLConfig,
                          Qwen3VLForConditionalGeneration, Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration,
                          Qwen3VLProcessor, Qwen3VLVideoProcessor)

from shards.tiny.qwen3_vl import CHAT_TEMPLATE, qwen3_vl_tokenizer

TEXT_HIDDEN = 64  # == vision out_hidden_size, or the merged image features do not fit the text embeddings
# An expert's width. Neither TEXT_HIDDEN nor half of it: transformers 5.x tells the released expert layout from its
# own only by shape, so square expert tensors would load silently transposed (another model).
MOE_INTERMEDIATE = 48
TEXT_LAYERS = 2
TEXT_HEAD_DIM = 32
# Interleaved M-RoPE splits head_dim/2 = 16 frequencies into T/H/W. H and W take every third slot up to 3*section,
# so a section too large is silently clipped; [6, 5, 5] is the real [24, 20, 20] scaled down from 64 to 16.
MROPE_SECTION = [6, 5, 5]
PATCH, MERGE, TEMPORAL = 16, 2, 2  # the real Qwen3-VL values: one image token per 32x32 pixels
# Keeps any image at 1..16 image tokens; the real processor allows up to 16384 tokens (longest_edge 2**24).
MIN_PIXELS, MAX_PIXELS = (PATCH * MERGE) ** 2, (PATCH * MERGE * 4) ** 2


def build_tokenizer() -> Qwen2Tokenizer:
    """The tiny BPE as transformers 5's `Qwen2Tokenizer`, with the real judge's special-token roles."""
    return qwen3_vl_tokenizer(Qwen2Tokenizer)


def _processor(tokenizer: Qwen2Tokenizer) -> Qwen3VLProcessor:
    """The real judge's processor classes and normalization, with a pixel budget of a few patches."""
    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    common = dict(patch_size=PATCH, temporal_patch_size=TEMPORAL, merge_size=MERGE, image_mean=[0.5] * 3,
                  image_std=[0.5] * 3)
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, **common),
        tokenizer=tokenizer,
        # Never used by the judge, but Qwen3VLProcessor cannot be built or loaded without one.
        video_processor=Qwen3VLVideoProcessor(size=size, **common),
        chat_template=CHAT_TEMPLATE,
    )


def _text_config(tokenizer: Qwen2Tokenizer, moe: bool) -> dict:
    """A 2-layer text decoder; the special ids live here in transformers 5.x and must be the tokenizer's."""
    config = dict(
        vocab_size=len(tokenizer), hidden_size=TEXT_HIDDEN, intermediate_size=2 * TEXT_HIDDEN,
        num_hidden_layers=TEXT_LAYERS, num_attention_heads=4, num_key_value_heads=2, head_dim=TEXT_HEAD_DIM,
        max_position_embeddings=4096, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": MROPE_SECTION,
                         "mrope_interleaved": True},
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    if moe:  # 30B-A3B: every layer sparse (real: 128 experts, 8 active), top-k weights renormalised as released
        config.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=MOE_INTERMEDIATE,
                      decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True)
    return config


def _vision_config() -> dict:
    """A 2-block vision tower; tap k is added to text layer k, as the real taps [8, 16, 24] feed layers 0-2."""
    return dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=PATCH, spatial_merge_size=MERGE,
        temporal_patch_size=TEMPORAL, out_hidden_size=TEXT_HIDDEN,
        # Must be a perfect square: the learned grid is int(sqrt(n)) per side, resampled to each image.
        num_position_embeddings=64,
        deepstack_visual_indexes=[0, 1],  # an index >= depth is silently never tapped
    )


def _model(tokenizer: Qwen2Tokenizer, moe: bool, seed: int) -> Qwen3VLForConditionalGeneration:
    """Random weights, deterministic from `seed`, stored in bfloat16 like the real checkpoints."""
    config_cls, model_cls = (
        (Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration) if moe
        else (Qwen3VLConfig, Qwen3VLForConditionalGeneration)
    )
    ids = tokenizer.convert_tokens_to_ids
    config = config_cls(
        text_config=_text_config(tokenizer, moe), vision_config=_vision_config(), tie_word_embeddings=False,
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    _check_shapes(config)
    torch.manual_seed(seed)
    model = model_cls(config).to(torch.bfloat16).eval()
    model.generation_config = generation_config(tokenizer)
    return model


def _check_shapes(config: Qwen3VLConfig | Qwen3VLMoeConfig) -> None:
    """Raise on the shape mistakes transformers accepts silently (a wrong judge that still runs)."""
    text, vision = config.text_config, config.vision_config
    if sum(text.rope_parameters["mrope_section"]) != text.head_dim // 2:
        raise ValueError(f"mrope_section must sum to head_dim/2 = {text.head_dim // 2}")
    if round(vision.num_position_embeddings**0.5) ** 2 != vision.num_position_embeddings:
        raise ValueError("vision num_position_embeddings must be a perfect square")
    taps = vision.deepstack_visual_indexes
    if max(taps) >= vision.depth or len(taps) > text.num_hidden_layers:
        raise ValueError("deepstack_visual_indexes must be < vision depth and no more than the text layers")
    if vision.out_hidden_size != text.hidden_size:
        raise ValueError("vision out_hidden_size must equal the text hidden_size")


def _released_expert_layout(folder: pathlib.Path) -> None:
    """Store the fused experts as the released Qwen3-VL-30B-A3B checkpoint does (saved by transformers 4.57):
    `mlp.experts.gate_up_proj` (E, hidden, 2*inter) and `mlp.experts.down_proj` (E, inter, hidden). transformers
    5.x writes its own layout, transposed, which vLLM cannot load (it transposes on load as the released layout
    wants); transformers 5.x reads both, telling them apart by shape."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(shard, "pt") as f:
            metadata = f.metadata()
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        for name, tensor in tensors.items():
            if name.endswith((".mlp.experts.gate_up_proj", ".mlp.experts.down_proj")):
                tensors[name] = tensor.transpose(1, 2).contiguous()
        save_file(tensors, shard, metadata=metadata)


def generation_config(tokenizer: Qwen2Tokenizer) -> GenerationConfig:
    """The real Instruct generation_config.json: it samples by default, so a judge must pass do_sample=False."""
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return GenerationConfig(
        bos_token_id=endoftext, pad_token_id=endoftext, eos_token_id=[tokenizer.eos_token_id, endoftext],
        do_sample=True, top_k=20, top_p=0.8, temperature=0.7, repetition_penalty=1.0,
    )


def build_tiny_judge(output_dir: str | os.PathLike, *, moe: bool = False, seed: int = 0) -> pathlib.Path:
    """Build the tiny judge and save model + processor into `output_dir`.

    Args:
        output_dir: Folder to write; created if missing, same-named files in it are replaced.
        moe: Build `Qwen3VLMoeForConditionalGeneration` (the 30B-A3B architecture) instead of the dense
            `Qwen3VLForConditionalGeneration` (8B).
        seed: Seeds the random weights; the same seed gives the same weights.

    Returns:
        `output_dir` as a Path, loadable with `AutoModelForImageTextToText` and `AutoProcessor`.
    """
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".tmp-") as staging:
        _processor(tokenizer).save_pretrained(staging)
        _model(tokenizer, moe, seed).save_pretrained(staging)
        if moe:
            _released_expert_layout(pathlib.Path(staging))
        # config.json goes last: a reader that sees it sees a complete judge, never half of one.
        for path in sorted(pathlib.Path(staging).iterdir(), key=lambda f: f.name == "config.json"):
            os.replace(path, output_dir / path.name)
    return output_dir


def main(argv: list[str] | None = None) -> None:
    """CLI: python -m score_stage.tiny --output DIR [--moe] [--seed N]"""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="folder to write the tiny judge into")
    parser.add_argument("--moe", action="store_true", help="the 30B-A3B MoE architecture instead of dense 8B")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = build_tiny_judge(args.output, moe=args.moe, seed=args.seed)
    size_mb = sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6
    print(f"tiny judge -> {path} ({size_mb:.2f} MB, {time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
