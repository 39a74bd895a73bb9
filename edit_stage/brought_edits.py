"""Bring edits made elsewhere: the same shards and manifest the edit stage writes, from images instead of a model.

    python -m edit_stage.brought_edits --config configs/demo.yaml --edits my-model-edits/ --output-dir runs/my-model

`--edits` is a folder of `<id>.png|jpg|jpeg|webp` files (an id's folders are folders there: `FOLDER/a/b.png` for id
`a/b`), or a JSONL of `{"id": ..., "edited": path}` lines. Every image is decoded as `shards.images.open_image` reads
it (EXIF orientation applied, 16-bit scaled to 8) and checked before anything is written: a missing, extra,
duplicate or undecodable image, one outside the source, and one the judge cannot take (`shards.images`: several
frames, an aspect ratio over 200, too many pixels) is named. An edit may have another size than its original; both
sizes are recorded. The score stage, resuming, the report and the page then work as for the edit stage's own edits.
Run it again to resume; with other images it is refused, and `--restart` starts over. One process; no model, no GPU.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from edit_stage.manifest import build_manifest
from edit_stage.plan import Plan, edited_entries, resume_point
from shards.brought_edits import edits_identity, find_edits
from shards.config import load_config, overrides_from_args, stage_argument_parser
from shards.dataset import DatasetError, checked_run_samples, list_problems, open_image
from shards.files import sha256_file
from shards.folder.identity import check_resumable
from shards.folder.lock import release, take_for_stage
from shards.folder.records import begin_attempt, check_restartable, end_attempt
from shards.images import ImageError
from shards.manifest import MANIFEST_NAME, write_manifest
from shards.runtime.dist import DistState
from shards.runtime.logs import EVERY_RANK, exit_on_input_error, setup_logging
from shards.store import ShardWriter


def read_edit(path: str) -> torch.Tensor:
    """A brought image as an HWC uint8 RGB tensor, read as `open_image` reads an original."""
    return torch.from_numpy(np.asarray(open_image(path), dtype=np.uint8).copy())


def check_edits(edits: dict[str, str]) -> None:
    """Decode every brought image once, before anything is written (not kept: a thousand edits at 1024 px would
    hold 3 GB).

    Raises:
        DatasetError: naming each image that cannot be decoded, all at once.
    """
    problems = []
    for sample_id, path in edits.items():
        try:
            read_edit(path)
        except ImageError as e:
            problems.append(f"{path}: sample '{sample_id}': cannot use the edited image: {e}")
        except (OSError, SyntaxError, ValueError) as e:
            problems.append(f"{path}: sample '{sample_id}': cannot decode the edited image: {e}")
    if problems:
        raise DatasetError(list_problems(problems))


def plan_import(config, source: str, restart_requested: bool):
    """The selected samples, their originals checked, their edits found and decoded, the folder checked."""
    dataset, images = checked_run_samples(config)
    samples = dataset.selected
    usable = [s.id for s in samples if s.id not in images.failed]
    found = find_edits(source, usable, [s.id for s in dataset.every])
    identity = edits_identity(source, found, sha256_file(config.dataset.path))
    edits = {i: found[i] for i in usable}
    check_edits(edits)
    if restart_requested:
        check_restartable(config.output_dir, "edit")
        notes = []
    else:
        notes = check_resumable(config, "edit", identity)
    return Plan(samples=samples, images=images, notes=notes), edits, identity


def import_edits(config, plan: Plan, edits: dict, todo: list, log) -> list[dict]:
    """Write the not yet imported samples into shard parts, as rank 0 of a world of one."""
    from edit_stage.pipeline import manifest_entry

    writer = ShardWriter(config.output_dir, 0, 1, config.edit.samples_per_shard)
    with writer:
        for sample in todo:
            image = read_edit(edits[sample.id])
            entry = manifest_entry(sample, None, plan.images.sha256[sample.id], image, 0.0)
            original = open_image(os.path.join(os.path.dirname(config.dataset.path), sample.image))
            entry.update(edited_file=edits[sample.id], edited_file_sha256=sha256_file(edits[sample.id]),
                         original_width=original.width, original_height=original.height)
            writer.add(entry, image)
            log.info("imported %s/%s (%dx%d%s)", sample.category, sample.id, image.shape[1], image.shape[0],
                     "" if original.size == (image.shape[1], image.shape[0]) else
                     f", original {original.width}x{original.height}", extra=EVERY_RANK)
    return writer.parts


def main(argv: list[str] | None = None) -> None:
    """Check the source and the folder, import what is not imported yet, write the manifest."""
    start = time.perf_counter()
    parser = stage_argument_parser("edit_stage.brought_edits", __doc__.splitlines()[0])
    parser.add_argument("--edits", required=True, help="folder of <id>.png/jpg/webp, or JSONL of {id, edited}")
    args = parser.parse_args(argv)
    with exit_on_input_error():
        config = load_config(args.config, overrides_from_args(args))
        plan, edits, identity = plan_import(config, args.edits, args.restart)
        run_id = take_for_stage([config.output_dir], "import", 0, lambda share: [share])   # a world of one
    try:
        import_run(config, args, plan, edits, identity, start)
    finally:
        release(config.output_dir, run_id)


def import_run(config, args, plan: Plan, edits: dict, identity: dict, start: float) -> None:
    """Resume from verified parts, import the rest, write the manifest (a world of one)."""
    state = DistState(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    log = setup_logging("import", state, config.output_dir)
    for note in plan.notes:
        log.warning("%s", note)
    with exit_on_input_error():
        trusted = resume_point(config, state, plan, args.restart, log)
    done = edited_entries(trusted).keys()
    todo = [s for s in plan.samples if s.id in edits and s.id not in done]
    log.info("%d samples selected: %d already imported, %d failed to load, %d to import from %s",
             len(plan.samples), len(done & edits.keys()), len(plan.images.failed), len(todo), args.edits)
    begin_attempt(config.output_dir, "edit", identity, world_size=1, done_before=len(done), to_do=len(todo))
    parts = import_edits(config, plan, edits, todo, log)
    attempts = end_attempt(config.output_dir, "edit", outputs=[MANIFEST_NAME], edited=len(todo),
                           elapsed_s=round(time.perf_counter() - start, 3))
    source = os.path.abspath(args.edits)
    editor = {"source": "imported", "path": source, "label": f"edits imported from {source}"}
    manifest = build_manifest(config, plan, trusted + parts, attempts, identity, editor)
    log.info("wrote %s (%d samples, %d failed, in %d shards)", write_manifest(config.output_dir, manifest),
             len(manifest["samples"]), len(plan.images.failed), len(manifest["shards"]))


if __name__ == "__main__":
    main()
