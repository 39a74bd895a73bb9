"""Build a tiny random-weight Qwen-Image-Edit pipeline offline, for the CPU demo and the tests.

    python -m edit_stage.tiny --output /tmp/tiny-qwen-image-edit [--plus] [--seed 0] [--check]
    python -m edit_stage.tiny --output /tmp/tiny-lora --lora-for /tmp/tiny-qwen-image-edit

Every component is the class the real checkpoint ships (Qwen/Qwen-Image-Edit, -2509, -2511), only shrunk, and the
pipeline is written with `save_pretrained`: loading it takes the same `from_pretrained` path as the real one, and
`model_index.json` names the same classes. Build it in the environment that loads it (transformers 4.57 +
diffusers 0.39): a model saved by a newer transformers does not load in an older one.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import tempfile
import time

import numpy as np
import torch
from diffusers import (AutoencoderKLQwenImage, DiffusionPipeline, FlowMatchEulerDiscreteScheduler,
                       QwenImageEditPipeline, QwenImageEditPlusPipeline, QwenImageTransformer2DModel)
from PIL import Image
from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer, Qwen2TokenizerFast,
                          Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor)

from shards.tiny.tokenizer import QWEN_SPECIAL_TOKENS, train_tiny_bpe

# The real Qwen-Image(-Edit) scheduler/scheduler_config.json. shift_terminal=0.02 is why num_inference_steps=1
# gives NaN images: use >= 2.
SCHEDULER_CONFIG = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "invert_sigmas": False,
    "max_image_seq_len": 8192,
    "max_shift": 0.9,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": 0.02,
    "stochastic_sampling": False,
    "time_shift_type": "exponential",
    "use_beta_sigmas": False,
    "use_dynamic_shifting": True,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}

TEXT_HIDDEN = 32  # text-encoder width == transformer joint_attention_dim == vision out_hidden_size
TEXT_HEAD_DIM = 16
Z_DIM = 16  # the real VAE's latent channels, so the real latents_mean/std defaults apply
# The edit pipelines cut this many leading tokens (system prompt + "user" header) from the text embeddings.
TEMPLATE_START_IDX = 64
TEMPLATE_PREFIX = (
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects, "
    "background), then explain how the user's text instruction should alter or modify the image. Generate a new "
    "image that meets the user's requirements while maintaining consistency with the original input where "
    "appropriate.<|im_end|>\n<|im_start|>user\n"
)


def build_tokenizers() -> tuple[Qwen2Tokenizer, Qwen2TokenizerFast]:
    """Return (slow, fast) Qwen2 tokenizers over one tiny BPE.

    The real model_index.json names the slow `Qwen2Tokenizer` for `tokenizer`, while the processor loads the fast
    one through AutoTokenizer; both are kept so the saved folders match the real layout.
    """
    fast = Qwen2TokenizerFast(
        tokenizer_object=train_tiny_bpe(vocab_size=512),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=131072,
        additional_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
    )
    _check_template_prefix(fast)
    with tempfile.TemporaryDirectory() as tmp:
        fast.save_pretrained(tmp)  # writes vocab.json + merges.txt, which the slow class needs
        return Qwen2Tokenizer.from_pretrained(tmp), fast


def _check_template_prefix(tokenizer: Qwen2TokenizerFast) -> None:
    """Refuse a tokenizer whose template prefix is shorter than the fixed cut, which would eat the user prompt."""
    n_tokens = len(tokenizer(TEMPLATE_PREFIX).input_ids)
    if n_tokens < TEMPLATE_START_IDX:
        raise ValueError(
            f"tiny tokenizer encodes the prompt-template prefix in {n_tokens} tokens, but the pipelines drop "
            f"{TEMPLATE_START_IDX}: lower vocab_size so the prefix stays at least that long"
        )


def _processor(tokenizer: Qwen2TokenizerFast) -> Qwen2VLProcessor:
    """Qwen2-VL processor whose vision tower sees at most 8x8 patches (the real max_pixels gives ~5300)."""
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    # Every video processor needs torchvision, and the processor cannot be built or loaded without one.
    video_processor = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor)


def _text_encoder(tokenizer: Qwen2TokenizerFast, seed: int) -> Qwen2_5_VLForConditionalGeneration:
    """Two-layer Qwen2.5-VL whose special-token ids are the tiny tokenizer's (a mismatch breaks image tokens)."""
    ids = dict(zip(QWEN_SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(list(QWEN_SPECIAL_TOKENS))))
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=2 * TEXT_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=TEXT_HIDDEN // TEXT_HEAD_DIM,
        num_key_value_heads=1,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        # Real 7B: [16, 24, 24] for head_dim 128; the sections must sum to head_dim / 2 (not checked by transformers).
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    vision_config = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=TEXT_HIDDEN,
        fullatt_block_indexes=[1],  # must index a real block
    )
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        vision_token_id=ids["<|vision_pad|>"],
    )
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def _transformer(plus: bool, seed: int) -> QwenImageTransformer2DModel:
    """Two-block MMDiT; zero_cond_t is the flag the -2511 transformer config sets (-2509 does not)."""
    torch.manual_seed(seed)
    return QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=4 * Z_DIM,  # latents are packed as 2x2 patches
        out_channels=Z_DIM,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT_HIDDEN,
        axes_dims_rope=(4, 6, 6),  # sums to attention_head_dim; each axis even
        zero_cond_t=plus,
    )


def _vae(seed: int) -> AutoencoderKLQwenImage:
    """The real VAE's layout (3 downsamples, 8x spatial, 16 latent channels) with 4 base channels instead of 96.

    The pipelines always VAE-encode the input at about 1024x1024 (~3 s on 2 CPU cores), whatever the VAE width.
    """
    torch.manual_seed(seed)
    return AutoencoderKLQwenImage(base_dim=4, z_dim=Z_DIM, dim_mult=[1, 2, 4, 4], num_res_blocks=1)


def build_tiny_pipeline(output_dir: str | os.PathLike, *, plus: bool = False, seed: int = 0) -> pathlib.Path:
    """Build a tiny random-weight Qwen-Image-Edit pipeline and save it with `save_pretrained`.

    Args:
        output_dir: Folder to write (created if missing); load it back with `DiffusionPipeline.from_pretrained`.
        plus: False gives `QwenImageEditPipeline` (Qwen-Image-Edit); True gives `QwenImageEditPlusPipeline`
            with the -2511 transformer flag (`zero_cond_t`).
        seed: Seeds every component's random weights; the same seed gives the same weights.

    Returns:
        `output_dir` as a Path. `model_index.json` appears last, so its presence means the folder is complete.
    """
    output_dir = pathlib.Path(output_dir)
    slow_tokenizer, fast_tokenizer = build_tokenizers()
    pipeline_class = QwenImageEditPlusPipeline if plus else QwenImageEditPipeline
    pipe = pipeline_class(
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
        vae=_vae(seed),
        text_encoder=_text_encoder(fast_tokenizer, seed),
        tokenizer=slow_tokenizer,
        processor=_processor(fast_tokenizer),
        transformer=_transformer(plus, seed),
    )
    return save_pipeline(pipe, output_dir)


def save_pipeline(pipe, output_dir: pathlib.Path) -> pathlib.Path:
    """`save_pretrained` into a temporary folder beside `output_dir`, then move it in, model_index.json last."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir.parent, prefix=f".{output_dir.name}.tmp-") as tmp:
        pipe.save_pretrained(tmp)
        _publish(pathlib.Path(tmp), output_dir)
    return output_dir


def build_tiny(output_dir: str | os.PathLike, pipeline: str, *, seed: int = 0) -> pathlib.Path:
    """`build_tiny_pipeline` under the name every family's builds have (`edit_stage.families`)."""
    return build_tiny_pipeline(output_dir, plus=pipeline == "QwenImageEditPlusPipeline", seed=seed)


def _publish(saved: pathlib.Path, output_dir: pathlib.Path) -> None:
    """Move a finished save into output_dir, replacing same-named entries, model_index.json last."""
    # Other ranks and the demo take model_index.json as the sign of a complete pipeline.
    output_dir.mkdir(exist_ok=True)
    (output_dir / "model_index.json").unlink(missing_ok=True)
    for entry in sorted(saved.iterdir()):
        target = output_dir / entry.name
        if entry.name != "model_index.json":
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    os.replace(saved / "model_index.json", output_dir / "model_index.json")


def build_tiny_lora(pipeline_dir: str | os.PathLike, output_dir: str | os.PathLike, *, rank: int = 4,
                    seed: int = 0) -> pathlib.Path:
    """A random LoRA for the tiny pipeline's transformer, saved as diffusers saves one
    (`pytorch_lora_weights.safetensors`), so `load_lora_weights` takes it the way it takes a real adapter.

    Its weights are random, not zero (peft's default would leave B at zero and the images unchanged).
    """
    from peft import LoraConfig, get_peft_model_state_dict

    transformer = QwenImageTransformer2DModel.from_pretrained(pipeline_dir, subfolder="transformer",
                                                              use_safetensors=True)
    torch.manual_seed(seed)
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                       target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    QwenImageEditPlusPipeline.save_lora_weights(output_dir, transformer_lora_layers=get_peft_model_state_dict(
        transformer))
    return pathlib.Path(output_dir)


def _check(output_dir: pathlib.Path) -> None:
    """Load the saved folder back as a user's checkpoint would be, and run one 2-step edit with true CFG."""
    pipe = DiffusionPipeline.from_pretrained(output_dir, torch_dtype=torch.float32, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    image = Image.new("RGB", (64, 48), (200, 120, 40))
    start = time.perf_counter()
    out = pipe(
        image=image,
        prompt="Turn the day into night.",
        negative_prompt=" ",  # without a negative prompt true CFG is silently off
        true_cfg_scale=4.0,
        num_inference_steps=2,  # 1 step gives NaN with shift_terminal=0.02
        height=64,
        width=64,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np",
    ).images
    if out.shape != (1, 64, 64, 3) or not np.isfinite(out).all():
        raise RuntimeError(f"tiny edit gave shape {out.shape}, finite={np.isfinite(out).all()}")
    print(f"{type(pipe).__name__}: edit ok, shape {out.shape}, {time.perf_counter() - start:.2f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    """CLI: python -m edit_stage.tiny --output DIR [--plus] [--seed N] [--check]"""
    parser = argparse.ArgumentParser(prog="python -m edit_stage.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="folder to write the pipeline to")
    parser.add_argument("--plus", action="store_true", help="QwenImageEditPlusPipeline (-2509/-2511 class)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--check", action="store_true", help="load it back and run a 2-step edit")
    parser.add_argument("--lora-for", metavar="PIPELINE", help="instead, write a random LoRA for this tiny pipeline")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.lora_for:
        print(f"wrote {build_tiny_lora(args.lora_for, args.output, seed=args.seed)}", flush=True)
        return
    output_dir = build_tiny_pipeline(args.output, plus=args.plus, seed=args.seed)
    print(f"wrote {output_dir} in {time.perf_counter() - start:.2f} s", flush=True)
    if args.check:
        _check(output_dir)


if __name__ == "__main__":
    main()
