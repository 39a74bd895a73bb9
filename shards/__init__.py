"""The contract between the stages, and what both stage environments share.

At the top, the contract itself, which the launcher and both stages read alike:
- `config` (with `config_schema`, its typed definition, `typed_yaml`, which reads its YAML, and `typed_data`,
  which builds typed definitions from data and writes them back as JSON): the run's settings;
- `dataset` and `images`: the benchmark's samples, the one selection a run makes of them, and how an image file
  is read; `brought_edits`: a folder or JSONL of edits made elsewhere;
- `store` and `manifest`: the edited images' shard files and the manifest that lists them (its typed definition,
  `Manifest`); `journal`: the append-only progress records; `files`: atomic writes and digests; `events`: how the
  launcher and the stages it starts talk.
Below it, rooms for what is shared but is not the contract:
- `folder/`: who owns an output folder (its lock), what a run is (identity), its records and restarts;
- `runtime/`: the torch-side runtime of the stages (distributed job, device, logs, hub, nodes, provenance);
- `report/`: the report's typed definition (`schema`, `record`), statistics, number formatting and HTML pages
  for reports and comparisons;
- `tiny/`: scaffolding of the tiny random-weight models.

Imports nothing from diffusers or transformers, so it loads in both stage environments; everything but `runtime/`
needs only the standard library and PyYAML, so the launcher uses it before any environment exists.
"""
