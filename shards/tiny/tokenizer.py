"""A tiny byte-level BPE tokenizer with Qwen's pre-tokenizer and special tokens, trained offline.

Both stages' tiny-model builders wrap it in their own environment's `Qwen2Tokenizer` class: a tokenizer
saved by transformers 5.x does not load in 4.57, so each is built where it is loaded.
Imports only the `tokenizers` library, which both environments have.
"""

from __future__ import annotations

# The split regex of Qwen2/2.5/3 tokenizers (tokenizer.json, pre_tokenizer "Split").
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

_CORPUS = (
    "Describe the key features of the input image (color, shape, size, texture, objects, background), "
    "then explain how the user's text instruction should alter or modify the image. "
    "Generate a new image that meets the user's requirements while maintaining consistency with the "
    "original input where appropriate.",
    "You are an expert judge of image edits. Score: 8.5 Score: 7 Score: 10 评分：8 7/10 {\"score\": 6}",
    "Rate how well the edited image follows the instruction, from 0 to 10. The score is 0 1 2 3 4 5 6 7 8 9 10.",
    "物理 环境 社会 因果 指代 physics environment social causal referential 编辑指令 原始图像描述",
    "Make the glass fall off the table. Turn the day into night. Add a crowd waiting in line. "
    "Show the ice melting in the sun. Replace the object on the left with a red ball.",
    "system user assistant picture image edit instruction description original edited quality",
)


def train_tiny_bpe(vocab_size: int = 512, extra_corpus: tuple[str, ...] = ()):
    """Train a byte-level BPE shaped like Qwen's (same split regex, byte fallback, special tokens).

    Args:
        vocab_size: Total vocabulary size including the 256 byte symbols and the special tokens.
        extra_corpus: More text to learn merges from.

    Returns:
        A `tokenizers.Tokenizer`; special tokens get the ids 0..len(QWEN_SPECIAL_TOKENS)-1 in order.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(_CORPUS) + list(extra_corpus), trainer)
    return tokenizer
