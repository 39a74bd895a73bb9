"""`<output>/manifest.json`: what the edit stage made, the file the score stage reads, as one typed definition.

It lists every shard part and every selected sample (where its image is, its seed, or why it failed), with the
run's attempts, the editor, the versions and the resolved config. The edit stage (or the import of brought edits)
writes it once its ranks are done, atomically, and the score stage reads it; both go through `Manifest`, so what
is written is checked as the reader checks it. Standard library only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from shards.files import atomic_write_json
from shards.folder.run_record import Attempt
from shards.store import ShardError
from shards.typed_data import (JSON_FILE, MISSING, At, SchemaError, check_schema_version, from_json, load_json,
                               optional_key, to_data)

MANIFEST_NAME = "manifest.json"
# Manifests before this definition said `"format": "qwen-edit-bench/manifest-v2"` (and -v1) instead: this is the third.
MANIFEST_SCHEMA_VERSION = 3
REWRITE_MANIFEST = ("run the edit stage again on this folder with the same config: it keeps every verified shard "
                    "part, edits nothing again and writes the manifest anew")


@dataclass(frozen=True, kw_only=True)
class DatasetFile:
    """The benchmark file the run read."""

    path: str
    """The dataset JSONL file."""
    root: str
    """Its folder: each sample's `image` is relative to it."""
    sha256: str
    """The file's sha256 when the run started."""


@dataclass(frozen=True, kw_only=True)
class LoraRecord:
    """A LoRA adapter the editor applied."""

    path: str
    """Local folder or file, or hub id, as configured."""
    weight_name: str | None
    """The weights file inside `path`, when configured."""
    scale: float
    """How strongly it applied."""
    sha256: str | None
    """Its weights file's sha256 (None when the file was not found in the local cache)."""


@dataclass(frozen=True, kw_only=True)
class EditorRecord:
    """Who made the edits: a checkpoint with its settings, or (`source: imported`) a folder of edits made elsewhere."""

    path: str
    """Hub id or local folder of the checkpoint; for imported edits, their folder or JSONL."""
    revision: str | None = None
    """The hub snapshot's commit; None for a local folder, or imported edits."""
    fingerprint: str | None = None
    """sha256 over the local checkpoint folder's files (`shards.folder.identity`); None for a hub id, or imports."""
    pipeline: str | None = optional_key()
    """The diffusers pipeline class (absent for imported edits, as are the settings below)."""
    lora: list[LoraRecord] | None = optional_key()
    """LoRA adapters, in the order applied."""
    fuse_lora: bool | None = optional_key()
    """Whether the adapters were merged into the weights."""
    seed: int | None = optional_key()
    """The base seed; each sample's seed derives from it and the sample id."""
    dtype: str | None = optional_key()
    """The weights' dtype on the device."""
    num_inference_steps: int | None = optional_key()
    """Denoising steps."""
    true_cfg_scale: float | None = optional_key()
    """True classifier-free guidance scale."""
    family_settings: dict[str, Any] | None = optional_key()
    """The editor family's own settings that were set (`shards.editors`: FLUX's guidance_scale, Qwen-Image-2.1's
    output_resolution, ...); absent in manifests written before there were families."""
    label: str
    """One line for the report: the checkpoint, its adapters, steps and CFG (or where imported edits came from)."""
    source: Literal["imported"] | None = optional_key()
    """`imported` for edits brought from elsewhere (`edit_stage.brought_edits`)."""


@dataclass(frozen=True, kw_only=True)
class ToolVersion:
    """This tool's version where a stage ran (`shards.runtime.provenance.tool_version`)."""

    version: str | None
    """The installed package's version (None when it is not installed)."""
    git_commit: str | None
    """The commit of the checkout (None outside a git checkout)."""
    git_dirty: bool | None
    """Whether tracked files differed from that commit."""


@dataclass(frozen=True, kw_only=True)
class ShardRecord:
    """One shard part the samples are read from."""

    path: str
    """Relative to the output folder, e.g. `shards/edit-r00001-of-00002-p0000.safetensors`."""
    sha256: str
    """The file's sha256, checked before anything is judged."""
    num_samples: int
    """Edited images in it."""
    rank: int
    """The rank that wrote it."""
    world_size: int
    """That run's ranks (a resumed run may have had another number)."""


@dataclass(frozen=True, kw_only=True)
class ManifestSample:
    """One selected sample: edited (`ok`: where its image is) or `failed` (why). The edit journals and each shard
    part's header hold the same entry of an edited sample, without `status`."""

    id: str
    """The sample's id in the dataset."""
    category: str
    """Its category."""
    instruction: str
    """The edit instruction."""
    description: str | None
    """The dataset's description of the original image, when it has one."""
    image: str
    """The original image, relative to the dataset's folder."""
    image_sha256: str | None = optional_key()
    """sha256 of the original image file as edited (absent when it could not be read)."""
    extra: dict[str, Any]
    """The dataset line's other fields, untouched (a human score, a reference)."""
    seed: int | None = optional_key()
    """The seed its edit used (absent for failed and imported samples)."""
    height: int | None = optional_key()
    """Edited image height in pixels."""
    width: int | None = optional_key()
    """Edited image width in pixels."""
    edit_seconds: float | None = optional_key()
    """Seconds its edit took (0 for imported edits)."""
    edited_file: str | None = optional_key()
    """Imported edits: the image file brought."""
    edited_file_sha256: str | None = optional_key()
    """Imported edits: that file's sha256."""
    original_width: int | None = optional_key()
    """Imported edits: the original image's width (an edit may have another size)."""
    original_height: int | None = optional_key()
    """Imported edits: the original image's height."""
    sha256: str | None = optional_key()
    """sha256 of the edited image's pixels: a judgement is reused only for the very same pixels."""
    shard: str | None = optional_key()
    """The shard part holding the edited image."""
    key: str | None = optional_key()
    """Its tensor's key in that part."""
    status: Literal["ok", "failed"]
    """`ok`: edited; `failed`: its original image could not be used."""
    reason: str | None = optional_key()
    """Why it failed."""

    @staticmethod
    def check_data(raw: dict[str, Any], at: At) -> None:
        """An edited sample says where its image is and what it was made from; a failed one says why."""
        needed = ("image_sha256", "sha256", "shard", "key") if raw.get("status") == "ok" else \
            ("reason",) if raw.get("status") == "failed" else ()
        for key in needed:
            if not isinstance(raw.get(key), str):
                raise at.key(key).expected(f"text for a sample with status '{raw['status']}'", raw.get(key, MISSING))


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """`manifest.json`: the edit stage's outputs, for the score stage."""

    schema_version: int = MANIFEST_SCHEMA_VERSION
    """The version of this definition; a reader refuses another."""
    world_size: int
    """Ranks of the last attempt."""
    attempts: list[Attempt]
    """Every attempt of the edit stage on this folder (its run record's)."""
    dataset: DatasetFile
    """The benchmark file."""
    model: EditorRecord
    """Who made the edits."""
    versions: dict[str, str]
    """Python's and the result-deciding packages' versions in the edit environment."""
    environment: dict[str, str]
    """Every package installed in the edit environment, by name."""
    tool: ToolVersion
    """This tool's version there."""
    config: dict[str, Any]
    """The resolved config, as `shards.config.to_dict` writes it (its definition: `shards.config_schema`)."""
    elapsed_s: float
    """Wall-clock seconds of every attempt together."""
    shards: list[ShardRecord]
    """The shard parts that hold the edited samples, by path."""
    samples: list[ManifestSample]
    """Every selected sample, in dataset order."""

    @classmethod
    def from_json(cls, data: Any, path: str) -> Manifest:
        """The manifest in `data`, read from (or about to be written to) file `path`.

        Raises:
            SchemaError: naming the key path of what does not match, another schema_version, or a sample in a
                shard the manifest does not list.
        """
        check_schema_version(data, path, MANIFEST_SCHEMA_VERSION, REWRITE_MANIFEST)
        manifest = from_json(cls, data, path)
        listed = {s.path for s in manifest.shards}
        for i, sample in enumerate(manifest.samples):
            if sample.status == "ok" and sample.shard not in listed:
                raise At(path, f"samples[{i}].shard", JSON_FILE).error(
                    f"sample '{sample.id}' points to shard {sample.shard}, which the manifest does not list")
        return manifest

    def to_json(self) -> dict[str, Any]:
        return to_data(self)


def write_manifest(output_dir: str, manifest: dict[str, Any]) -> str:
    """Write `<output_dir>/manifest.json` atomically, checked against `Manifest` first; returns its path.

    Raises:
        SchemaError: if `manifest` does not match its definition (nothing is written).
    """
    path = os.path.join(output_dir, MANIFEST_NAME)
    checked = Manifest.from_json({"schema_version": MANIFEST_SCHEMA_VERSION, **manifest}, path)
    atomic_write_json(path, checked.to_json())
    return path


def read_manifest(output_dir: str) -> dict[str, Any]:
    """`<output_dir>/manifest.json` as JSON data, checked against `Manifest` (the score stage passes its samples
    between ranks and into its results as JSON).

    Raises:
        ShardError: if it is missing, not JSON, of another schema_version, or does not match its definition.
    """
    path = os.path.join(output_dir, MANIFEST_NAME)
    try:
        return Manifest.from_json(load_json(path, ShardError), path).to_json()
    except FileNotFoundError:
        raise ShardError(f"no manifest at {path}: run the edit stage on this output directory first") from None
    except SchemaError as e:
        raise ShardError(str(e)) from None
