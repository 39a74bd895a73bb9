"""The contract between the stages: config, dataset, work queue, shard files, manifest, run records.

Imports nothing from diffusers or transformers, so it loads in both stage environments; `config` and `dataset`
need only the standard library and PyYAML, so the launcher uses them before any environment exists.
"""
