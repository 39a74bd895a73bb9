"""The torch-side runtime both stages run in: the distributed job (`dist`), the device and dtypes (`device`),
what each rank prints (`logs`), checkpoints fetched once (`hub`), nodes that must run the same run (`nodes`), what
makes a result reproducible (`provenance`) and what the benchmarks read off a process (`measure`).

Imports torch (but never diffusers or transformers): only the stages use it, never the launcher.
"""
