"""Who owns an output folder, and what it holds: the lock one run's writers share (`lock`, `lock_record`,
`liveness`, and the seats of a multi-node run's nodes in `seats`), what a run is (`identity`), and the run's records
and what a restart may remove (`records`; a run record's typed definition: `run_record`).

Standard library only: the launcher checks and takes a folder before any environment exists.
"""
