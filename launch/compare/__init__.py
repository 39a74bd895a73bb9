"""`python3 -m launch compare RUN_DIR RUN_DIR... --output DIR`: which run edits better, and is the difference real.

`cli` runs the command and writes compare.json/.md; `inputs` reads and checks each run's report; `pairs` pairs
two runs (also for a sweep's report, `launch.sweep`); `page` writes compare.html. Standard library only: no
stage environment is needed.
"""
