"""Scaffolding of the tiny random-weight models the demo, the tests and the real-width benchmarks build offline:
a byte-level BPE tokenizer shaped like Qwen's (`tokenizer`), and Qwen3-VL's chat template and tokenizer wrapping
(`qwen3_vl`), which the judge and Qwen-Image-2.1's text encoder share. Each stage builds its own models in its own
environment (edit_stage.tiny and edit_stage.families, score_stage.tiny).
"""
