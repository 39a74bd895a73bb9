"""Score stage: each torchrun rank judges its share of the edited images with a Qwen3-VL judge.

    torchrun --nproc-per-node=6 -m score_stage --config configs/qwen-image-edit-2511.yaml --output-dir runs/x

`cli` is the entry point (`inputs`: what it checks before judging; `outputs`: what it writes at the end);
`worker` is one rank's judging (chunks from the shared queue, its journal), `follow` judges beside the edit stage;
`judges/` holds the judges, `chat` the question they are asked, `scoring`, `parsing` and `results` turn answers
into scores; `report` and `report_page` write the report; `tiny`, `real_arch` and `bench` build judges for the
demo, the tests and the benchmark. Run it with the judge environment's interpreter (transformers 5.x).
"""
