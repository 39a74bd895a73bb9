"""Score stage: each torchrun rank judges its share of the edited images with a Qwen3-VL judge.

    torchrun --nproc-per-node=6 -m score_stage --config configs/qwen-image-edit-2511.yaml --output-dir runs/x

Run it with the judge environment's interpreter (transformers 5.x), not the edit environment's.
"""
