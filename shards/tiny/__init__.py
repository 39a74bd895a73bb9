"""Scaffolding of the tiny random-weight models the demo, the tests and the real-width benchmarks build offline:
a byte-level BPE tokenizer shaped like Qwen's (`tokenizer`). Each stage builds its own models in its own
environment (edit_stage.tiny, score_stage.tiny).
"""
