"""`torchrun --nproc-per-node=N -m edit_stage --config C --output-dir D`: see edit_stage.cli."""

from edit_stage.cli import main

main()
