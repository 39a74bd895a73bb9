"""A sweep's report: many checkpoints of one training run, scored on one benchmark by one judge, side by side.

`report.write_sweep_report(sweep_dir, names, base)` reads each checkpoint's run folder (`<sweep_dir>/<name>/`,
its report.json) and writes sweep.json, sweep.md and sweep.html into the sweep folder: each checkpoint's means
with 95 % intervals, in order (`order`), the paired difference of each against the base model and against its
predecessor (computed by `launch.compare.pairs`, as `launch compare` computes it), the best checkpoint and how
sure that is (`best`). `schema` is sweep.json's typed definition, `page` builds sweep.html and sweep.md, `cli` is
`python3 -m launch sweep-report`. Standard library only: a pure function of finished run folders.
"""
