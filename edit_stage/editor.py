"""A rank's editor across the runs of a sweep: the pipeline is loaded once and moved from one checkpoint to the
next by the least work that gives the very images a fresh load of that checkpoint gives.

- LoRA adapters are swapped: the adapters the next checkpoint does not share are deleted and its own loaded.
  A sweep's runs keep their adapters unfused (`shards.sweep` sets `edit.fuse_lora: false`, recorded with each
  run): deleting an unfused adapter leaves the base weights untouched, so a checkpoint's images equal a single
  run of it bit for bit, where unfusing would leave the base weights off by the rounding of W + BA - BA.
- A full fine-tune of the same family loads again only the weighted components (the family's `WEIGHTED`) whose
  files differ (their fingerprints); the other files (scheduler, tokenizer, model_index) must be the same, else
  everything loads.
- Another pipeline, dtype, speed setting or anything else that shapes the pipeline loads it afresh.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time

import torch

from edit_stage.families import family
from edit_stage.pipeline import _load_component, apply_lora, load_pipeline
from shards.config import EditConfig
from shards.folder.identity import model_fingerprint
from shards.runtime.device import DTYPES

# The edit settings that only the LoRA swap or the component reload change; any other difference loads afresh.
# (The call's own settings, steps to seed, are passed at each call and need no move at all.)
SWAPPED = ("lora", "model", "build_tiny", "env", "samples_per_shard", "num_inference_steps", "true_cfg_scale",
           "negative_prompt", "guidance_scale", "max_sequence_length", "auto_resize", "output_resolution", "height",
           "width", "seed")


class Editor:
    """This rank's pipeline, loaded when first used and moved between checkpoints (`use`)."""

    def __init__(self, device: torch.device, log):
        self.device, self.log = device, log
        self.pipe, self.cfg = None, None
        self.loads, self.swaps, self.load_s = 0, 0, 0.0

    def use(self, cfg: EditConfig, fingerprints_cache: str | None = None):
        """The pipeline set up as `cfg` says: loaded, or moved from the checkpoint it holds."""
        if self.cfg == cfg:
            return self.pipe
        start = time.perf_counter()
        if self.pipe is None or _shape(self.cfg) != _shape(cfg):
            self._load(cfg)
        elif self.cfg.model != cfg.model:       # its adapters are applied with its components
            if not self._reload_changed(cfg, fingerprints_cache):
                self._load(cfg)
        elif self.cfg.lora != cfg.lora:
            self._swap_adapters(cfg)
        self.cfg = cfg
        self.load_s += time.perf_counter() - start
        return self.pipe

    def _load(self, cfg: EditConfig) -> None:
        self.pipe = None
        gc.collect()                      # the previous editor's memory is free before the next one loads
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.pipe, self.loads = load_pipeline(cfg, self.device), self.loads + 1
        self.log.info("loaded the editor %s (%s)", cfg.model, cfg.pipeline)

    def _reload_changed(self, cfg: EditConfig, cache: str | None) -> bool:
        """Load again the components whose files differ from the loaded model's, then apply `cfg`'s adapters;
        False if more than those differ (then everything loads)."""
        weighted = family(cfg.pipeline).WEIGHTED
        old, new = _files_fingerprints(self.cfg.model, weighted, cache), _files_fingerprints(cfg.model, weighted, cache)
        if None in (old["rest"], new["rest"]) or old["rest"] != new["rest"]:
            return False
        changed = [name for name in weighted if old[name] is None or old[name] != new[name]]
        self._delete_adapters()
        index = type(self.pipe).load_config(cfg.model)
        for name in changed:
            setattr(self.pipe, name, None)
            gc.collect()
            component = _load_component(cfg, name, index[name], DTYPES[cfg.dtype], self.device)
            self.pipe.register_modules(**{name: component})
        apply_lora(self.pipe, cfg)
        self.swaps += 1
        self.log.info("loaded the fine-tune %s: %s of its components differ (%s kept)", cfg.model,
                      ", ".join(changed) or "none", ", ".join(n for n in weighted if n not in changed) or "none")
        return True

    def _swap_adapters(self, cfg: EditConfig) -> None:
        self._delete_adapters()
        apply_lora(self.pipe, cfg)
        self.swaps += 1
        self.log.info("swapped LoRA adapters: %s", ", ".join(f"{a.path} x{a.scale}" for a in cfg.lora) or "none")

    def _delete_adapters(self) -> None:
        names = sorted({n for found in self.pipe.get_list_adapters().values() for n in found}) if self.cfg.lora else []
        if names:
            self.pipe.delete_adapters(names)


def _shape(cfg: EditConfig) -> EditConfig:
    """The settings that shape the loaded pipeline (all but what `SWAPPED` names)."""
    return dataclasses.replace(cfg, **{name: None for name in SWAPPED})


def _files_fingerprints(model: str, weighted: tuple[str, ...], cache: str | None) -> dict[str, str | None]:
    """Each weighted component folder's fingerprint, and "rest": every other file's (None for a hub id)."""
    if not os.path.isdir(model):
        return {"rest": None, **{name: None for name in weighted}}
    rest = []
    for folder, subfolders, names in os.walk(model):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and not (folder == model and d in weighted)]
        rest += [os.path.relpath(os.path.join(folder, n), model) for n in names if not n.startswith(".")]
    rest.sort()
    return {"rest": model_fingerprint(model, cache, only=rest),
            **{name: model_fingerprint(os.path.join(model, name), cache) for name in weighted}}
