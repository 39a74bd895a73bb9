"""Random-weight builds of FLUX.1 Kontext [dev] (FluxKontextPipeline): a tiny pipeline for the demo and the tests, a
tiny LoRA for it, and the released architecture (`configs/arch/flux.1-kontext-dev/`) at real width for the
benchmark.

    python -m edit_stage.families.flux_kontext_build --output /tmp/tiny-flux-kontext

Every component is the class model_index.json names (CLIPTextModel + CLIPTokenizer, T5EncoderModel + T5 tokenizer,
FluxTransformer2DModel, AutoencoderKL, FlowMatchEulerDiscreteScheduler with the released scheduler config); the tiny
one is only shrunk, and is saved with `save_pretrained` so that it loads through the same `from_pretrained` path as
the release. Both tokenizers are trained here with the `tokenizers` library (offline): a byte-level BPE with CLIP's
normalizer, split and "</w>" suffix, and a Unigram with T5's Metaspace and <pad>=0 </s>=1 <unk>=2. Build it in the
edit-tf5 environment, which loads it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

from edit_stage.real_arch import default_dtype
from edit_stage.tiny import save_pipeline
from shards.config import REPO_ROOT

ARCH = os.path.join(REPO_ROOT, "configs", "arch", "flux.1-kontext-dev")
CORPUS = (
    "Make the glass fall off the table. Turn the day into night. Add a crowd waiting in line.",
    "Show the ice melting in the sun. Replace the object on the left with a red ball. a cat, a dog, x y z",
    "Change the background to a sunset beach while keeping the subject unchanged. 0 1 2 3 4 5 6 7 8 9",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`",
)
CLIP_HIDDEN = 32        # == transformer pooled_projection_dim: the pooled prompt is CLIP's pooler output, unprojected
T5_HIDDEN = 32          # == transformer joint_attention_dim
LATENT = 16             # the real VAE's latent channels; transformer in_channels = 4 x that (2x2 packing)
CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                "proj_mlp", "proj_out"]


def arch_config(component: str, name: str = "config.json") -> dict:
    """A released config file, without its `_class_name`-style bookkeeping keys."""
    with open(os.path.join(ARCH, component, name), encoding="utf-8") as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def clip_tokenizer(vocab_size: int = 400) -> CLIPTokenizer:
    """A byte-level BPE shaped like CLIP's (lower-cased, "</w>" word ends), 77 tokens long."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    bpe.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|startoftext|>", "<|endoftext|>"], end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return CLIPTokenizer(vocab=model["vocab"], merges=merges, model_max_length=77)


def t5_tokenizer(vocab_size: int = 300) -> T5Tokenizer:
    """A Unigram shaped like T5's (Metaspace, <pad>=0 </s>=1 <unk>=2, 100 extra ids), 512 tokens long."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    unigram.train_from_iterator(CORPUS, trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False))
    vocab = [(piece, float(score)) for piece, score in json.loads(unigram.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=vocab, extra_ids=100, model_max_length=512)


def _clip_ids(tokenizer: CLIPTokenizer) -> dict:
    """CLIP's pooler takes the hidden state at the first eos_token_id: it must be the tokenizer's (a wrong one
    runs silently, pooling the wrong position)."""
    return dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)


def build_tiny(output_dir: str | os.PathLike, pipeline: str = "FluxKontextPipeline", *,
               seed: int = 0) -> pathlib.Path:
    """Build a tiny random-weight FLUX.1 Kontext pipeline (about 1 MB) and save it; model_index.json comes last."""
    clip_tok, t5_tok = clip_tokenizer(), t5_tokenizer()
    torch.manual_seed(seed)
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tok), hidden_size=CLIP_HIDDEN, intermediate_size=2 * CLIP_HIDDEN, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=CLIP_HIDDEN,
        **_clip_ids(clip_tok))).eval()
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(t5_tok), d_model=T5_HIDDEN, d_ff=2 * T5_HIDDEN, d_kv=8, num_heads=4, num_layers=2,
        feed_forward_proj="gated-gelu", is_encoder_decoder=True, tie_word_embeddings=False,
        pad_token_id=t5_tok.pad_token_id, eos_token_id=t5_tok.eos_token_id, decoder_start_token_id=0)).eval()
    # The real layouts, narrower: one double- and one single-stream block with guidance embedding; a VAE with 3
    # downsamples (8x), 16 latent channels, no quant convs and FLUX's scaling and shift.
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4 * LATENT, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=T5_HIDDEN, pooled_projection_dim=CLIP_HIDDEN,
        guidance_embeds=True, axes_dims_rope=(4, 6, 6)).eval()
    vae = AutoencoderKL.from_config({**arch_config("vae"), "block_out_channels": [8, 16, 16, 16],
                                     "layers_per_block": 1, "norm_num_groups": 8}).eval()
    pipe = FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(arch_config("scheduler", "scheduler_config.json")),
        vae=vae, text_encoder=clip, tokenizer=clip_tok, text_encoder_2=t5, tokenizer_2=t5_tok,
        transformer=transformer)
    return save_pipeline(pipe, pathlib.Path(output_dir))


def build_tiny_lora(pipeline_dir: str | os.PathLike, output_dir: str | os.PathLike, *, rank: int = 4,
                    seed: int = 0) -> pathlib.Path:
    """A random LoRA of the tiny pipeline's transformer and CLIP text encoder, saved as diffusers saves one.

    The CLIP part is made with transformers' `add_adapter`: a peft `get_peft_model` wrapper would name its keys
    `base_model.model.…`, which diffusers' FLUX loader takes for BFL's own format and fails on."""
    from peft import LoraConfig, get_peft_model_state_dict

    transformer = FluxTransformer2DModel.from_pretrained(pipeline_dir, subfolder="transformer", use_safetensors=True)
    clip = CLIPTextModel.from_pretrained(pipeline_dir, subfolder="text_encoder", use_safetensors=True)
    torch.manual_seed(seed)
    # Random B matrices too: peft's default zeros would leave the images unchanged.
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                       target_modules=LORA_TARGETS))
    clip.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
    FluxKontextPipeline.save_lora_weights(output_dir, transformer_lora_layers=get_peft_model_state_dict(transformer),
                                          text_encoder_lora_layers=get_peft_model_state_dict(clip))
    return pathlib.Path(output_dir)


def build_random(device: torch.device, dtype: torch.dtype, layers: int | None = None,
                 seed: int = 0) -> FluxKontextPipeline:
    """FluxKontextPipeline of the released architecture with random weights, every weight made on `device`.

    Args:
        layers: Keep this many layers of each stack: double- and single-stream blocks, CLIP and T5 layers (None:
            all, 11.9 B + 4.8 B + 0.12 B + 0.08 B parameters).
    """
    clip_tok, t5_tok = clip_tokenizer(), t5_tokenizer()
    shrunk = {"num_hidden_layers": layers} if layers else {}
    transformer_config = {**arch_config("transformer"), **({"num_layers": layers, "num_single_layers": layers}
                                                           if layers else {})}
    torch.manual_seed(seed)
    with torch.device(device), default_dtype(dtype):
        transformer = FluxTransformer2DModel.from_config(transformer_config).eval()
        vae = AutoencoderKL.from_config(arch_config("vae")).eval()
    with torch.device(device):
        clip = CLIPTextModel._from_config(CLIPTextConfig(**{**arch_config("text_encoder"), **shrunk,
                                                            **_clip_ids(clip_tok)}), dtype=dtype).eval()
        t5_config = {**arch_config("text_encoder_2"), **({"num_layers": layers} if layers else {})}
        t5 = T5EncoderModel._from_config(T5Config(**t5_config), dtype=dtype).eval()
    return FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(arch_config("scheduler", "scheduler_config.json")),
        vae=vae, text_encoder=clip, tokenizer=clip_tok, text_encoder_2=t5, tokenizer_2=t5_tok,
        transformer=transformer)



def main(argv: list[str] | None = None) -> None:
    """CLI: python -m edit_stage.families.flux_kontext_build --output DIR [--seed N] [--lora-for PIPELINE]"""
    parser = argparse.ArgumentParser(prog="python -m edit_stage.families.flux_kontext_build",
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
