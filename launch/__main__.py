"""`python3 -m launch --config C [--output-dir D] [--nproc-per-node N] [--categories A B ...] [--limit N]`."""

import sys

from launch.cli import main

sys.exit(main())
