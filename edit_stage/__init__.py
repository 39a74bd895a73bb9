"""Edit stage: each torchrun rank edits its share of the benchmark with the editor `edit.pipeline` names.

    torchrun --nproc-per-node=6 -m edit_stage --config configs/qwen-image-edit-2511.yaml --output-dir runs/x

`cli` is the entry point (`plan`: what the run works on and keeps; `manifest`: what it writes at the end);
`pipeline` loads the editor and edits one sample, dispatching to `families/` for what differs by editor family
(Qwen-Image-Edit, Qwen-Image-2.1, FLUX.1 Kontext: the components with weights, the call, their random-weight
builds); `speed` and `denoise` are its fast path; `brought_edits` turns edits made elsewhere into the same shards;
`tiny`, `real_arch` and `bench` build models for the demo, the tests and the benchmark. Runs in the family's edit
environment (Qwen-Image-Edit: transformers 4.57 + diffusers 0.39; the others: transformers 5.23 + diffusers 0.42.1).
"""
