"""Edit stage: each torchrun rank edits its share of the benchmark with a Qwen-Image-Edit pipeline.

    torchrun --nproc-per-node=6 -m edit_stage --config configs/qwen-image-edit-2511.yaml --output-dir runs/x

`cli` is the entry point (`plan`: what the run works on and keeps; `manifest`: what it writes at the end);
`pipeline` loads the editor and edits one sample, `speed` and `denoise` are its fast path; `brought_edits` turns
edits made elsewhere into the same shards; `tiny`, `real_arch` and `bench` build models for the demo, the tests
and the benchmark. Runs in the edit environment (transformers 4.57 + diffusers 0.39).
"""
