"""`torchrun --nproc-per-node=N -m score_stage --config C --output-dir D`: see score_stage.cli."""

from score_stage.cli import main

main()
