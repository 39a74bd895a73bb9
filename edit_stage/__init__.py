"""Edit stage: each torchrun rank edits its share of the benchmark with a Qwen-Image-Edit pipeline.

    torchrun --nproc-per-node=6 -m edit_stage --config configs/qwen-image-edit-2511.yaml --output-dir runs/x
"""
