"""What a run configuration is: typed, keyword-only dataclasses, one documented field per setting.

`shards.config.load_config` builds them from one YAML file and checks them; every module imports them from
`shards.config`. Standard library only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

Dtype = Literal["bfloat16", "float16", "float32"]
ImagesShown = Literal["edited", "original_and_edited"]
CombineRule = Literal["min", "mean", "geometric_mean"]
SINGLE_DIMENSION = "score"  # the name of the one dimension of a category given in the inline form
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE_FIELDS = ("id", "category", "instruction", "description", "extra")


@dataclass(frozen=True, kw_only=True)
class Environment:
    """Where a stage's Python interpreter comes from: at most one of `python`, `conda`, `venv`.

    With none set, the launcher builds a venv in the repository named by what it installs: `.envs/<stage>` with
    the `<stage>` extra, or `.envs/score+test` for `extras: [score, test]` (`shards.config.environment_name`), so
    that configs installing different things never share, and rebuild, one venv.
    """

    python: str | None = None
    """Path of an existing interpreter."""
    conda: str | None = None
    """Name of an existing conda environment."""
    venv: str | None = None
    """Folder of a virtual environment the launcher creates with venv + pip on first use."""
    extras: list[str] = field(default_factory=list)
    """Extras of this project installed into the venv (default: the stage's own); their pinned requirements live
    in pyproject.toml."""
    torch_index: str | None = None
    """The launcher's venv only: an extra package index for the PyTorch build, e.g. https://download.pytorch.org/whl/cu128 or
    .../cu126. PyPI's torch 2.14.1 is built for CUDA 13.0 and needs an NVIDIA driver of the 580 series or newer;
    the same version built for CUDA 12.8 or 12.6 runs on older drivers (None: PyPI's build)."""


@dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    """The benchmark: a JSONL file, one sample a line."""

    path: str
    """JSONL file; each sample's `image` is relative to this file's folder."""
    categories: list[str] | None = None
    """Run only these categories (None: all)."""
    where: dict[str, list[str]] | None = None
    """Run only the samples whose own field has one of these values, e.g. `{language: [en]}` (None: all)."""
    limit: int | None = None
    """Run only the first N samples left after the category and field filters (None: all)."""
    skip_unreadable_images: bool = False
    """Record a sample whose image is missing or cannot be decoded as `failed` (with the reason, counted in the
    report) and run the rest; by default such a dataset is refused before any model loads."""


@dataclass(frozen=True, kw_only=True)
class LoraAdapter:
    """A LoRA adapter of the editor, loaded with diffusers' `load_lora_weights` (a fine-tune, or a few-step
    distillation such as a Lightning LoRA, which then wants its own `num_inference_steps` and `true_cfg_scale`)."""

    path: str
    """Local folder or .safetensors file, or hub id, of a diffusers-format LoRA."""
    scale: float = 1.0
    """How strongly the adapter applies (diffusers' adapter weight)."""
    weight_name: str | None = None
    """The weights file inside `path`, when the folder or repository holds several."""


@dataclass(frozen=True, kw_only=True)
class EditSpeed:
    """Speed options of the edit stage. Each computes the same images within bf16 rounding (the tolerance held in
    tests/test_speed.py and reported by `python -m edit_stage.bench`); none is on by default until a GPU
    measurement shows it pays. Part of a run's identity: a resumed run does not mix images made with and without."""

    attention_backend: str | None = None
    """diffusers attention backend of the transformer (`set_attention_backend`), e.g. `_native_cudnn` or `flash`
    (needs flash-attn); None keeps the library's default (PyTorch SDPA)."""
    compile: bool = False
    """Regional compilation of the repeated transformer blocks (`compile_repeated_blocks(fullgraph=True)`); the
    warm-up is paid once per process and shape."""
    batched_cfg: bool = False
    """Run true CFG's conditional and unconditional passes as one batch of 2 (text padded and masked)."""
    linear_patch_embed: bool = False
    """Compute the text encoder's vision patch embedding (a Conv3d whose kernel equals its stride) as one matmul:
    torch >= 2.9 may run that Conv3d 10-20x slower (pytorch #174051)."""


@dataclass(frozen=True, kw_only=True)
class EditConfig:
    """The edit stage: a diffusers image-editing pipeline of one of the families in `shards.editors`."""

    env: Environment = field(default_factory=Environment)
    """Interpreter of the edit environment (default: the family's, `.envs/edit` with transformers 4.57.x +
    diffusers 0.39 for Qwen-Image-Edit, `.envs/edit-tf5` with transformers 5.23 + diffusers 0.42.1 for the others)."""
    model: str
    """Hub id or local folder of the diffusers checkpoint."""
    pipeline: Literal["QwenImageEditPipeline", "QwenImageEditPlusPipeline", "QwenImage21Pipeline",
                      "FluxKontextPipeline"]
    """Pipeline class, which names the editor family: QwenImageEditPipeline (Qwen-Image-Edit),
    QwenImageEditPlusPipeline (-2509/-2511), QwenImage21Pipeline (Qwen-Image-2.1), FluxKontextPipeline
    (FLUX.1 Kontext)."""
    build_tiny: bool = False
    """Demo and tests only: build a tiny random-weight pipeline at `model` first if it is missing."""
    trust_remote_code: bool = False
    """Let the checkpoint run its own Python code when it loads; leave off unless you trust its source."""
    dtype: Dtype = "bfloat16"
    """Weights' dtype on the device."""
    num_inference_steps: int
    """Denoising steps (at least 2: one step gives NaN images with the real scheduler)."""
    true_cfg_scale: float
    """True classifier-free guidance scale (every family; a second transformer pass per step); above 1 it needs
    `negative_prompt`."""
    negative_prompt: str | None = None
    """Negative prompt; CFG runs only when it is set (even to a single space)."""
    guidance_scale: float | None = None
    """FluxKontextPipeline only, and required there: FLUX's distilled guidance, an input of the transformer (the
    model card uses 2.5), not a second pass."""
    max_sequence_length: int | None = None
    """FluxKontextPipeline only: tokens of the T5 prompt, padded to this length (None: the pipeline's 512)."""
    auto_resize: bool | None = None
    """FluxKontextPipeline only: resize the input image to the nearest of Kontext's preferred ~1 MP resolutions
    before it is encoded, as the pipeline does by default (None: true); false keeps its size, floored to 16."""
    output_resolution: int | None = None
    """QwenImage21Pipeline only: the side of the square whose area the input image is resized to (keeping its
    aspect ratio), for the model and, without `height`/`width`, for the output (None: the pipeline's 1024; the
    model card recommends 2048)."""
    height: int | None = None
    """Output height in pixels, a multiple of 16 (32 for QwenImage21Pipeline) (None: from the input image)."""
    width: int | None = None
    """Output width in pixels, a multiple of 16 (32 for QwenImage21Pipeline) (None: from the input image)."""
    seed: int = 0
    """Base seed; each sample's seed is derived from it and the sample id."""
    samples_per_shard: int = 16
    """Edited images per safetensors shard part. A part is closed (written and recorded) when full, so a crash
    redoes at most this many samples on the rank that crashed."""
    speed: EditSpeed = field(default_factory=EditSpeed)
    """Speed options (see EditSpeed); all off by default."""
    lora: list[LoraAdapter] = field(default_factory=list)
    """LoRA adapters applied to the editor, in order; their files' sha256 is part of the run's identity."""
    fuse_lora: bool = True
    """Merge the adapters into the weights once loaded: the same images within rounding (held in tests), without
    the adapters' extra matmuls in every layer at every step."""


@dataclass(frozen=True, kw_only=True)
class Dimension:
    """One judged aspect of an edit (e.g. instruction compliance, or visual quality), with its own prompts."""

    system_prompt: str
    """System message of the judge."""
    user_prompt_template: str
    """User message; may use {id}, {category}, {instruction} and {description}."""
    images: ImagesShown = "edited"
    """What the judge sees: the edited image alone, or the original and the edited image (labelled as the first
    and the second picture)."""


@dataclass(frozen=True, kw_only=True)
class CategoryPrompts:
    """How the judge is asked about one category.

    Either one dimension inline (`system_prompt`, `user_prompt_template`, optionally `images`), or several named
    `dimensions` and the `combine` rule that makes the sample's score from theirs. After loading, both forms are
    held in `dimensions` (the inline one under the name `score`).
    """

    system_prompt: str | None = None
    """Inline form: system message of the judge."""
    user_prompt_template: str | None = None
    """Inline form: user message; may use {id}, {category}, {instruction} and {description}."""
    images: ImagesShown | None = None
    """Inline form: what the judge sees (default: the edited image alone)."""
    dimensions: dict[str, Dimension] | None = None
    """Several dimensions, by name, each with its own prompts and images."""
    combine: CombineRule | None = None
    """How several dimensions' scores make the sample's score: min, mean or geometric_mean."""


@dataclass(frozen=True, kw_only=True)
class ServerStart:
    """A judge server the launcher starts on each node before the score stage, and stops after it (at the end, on
    failure and on Ctrl-C or SIGTERM)."""

    engine: Literal["vllm"] = "vllm"
    """The serving engine: vLLM's OpenAI-compatible server, serving `score.model` under that name."""
    args: list[str] = field(default_factory=list)
    """More engine arguments, e.g. ["--tensor-parallel-size", "8"] for a judge larger than one GPU, or
    ["--data-parallel-size", "8"] for one replica per GPU."""
    gpus: int | None = None
    """How many of the node's GPUs the server gets (the first N; None: all of them)."""
    env: Environment = field(default_factory=Environment)
    """Interpreter of the server's environment (vLLM pins its own torch). With none set, the launcher builds
    `.envs/serve` (extra `serve`: vllm) for CUDA, or `.envs/serve-cpu` (extra `serve-cpu`) for the CPU."""
    port: int = 8000
    """The port it listens on, on this node's loopback interface."""
    ready_timeout_s: int = 1200
    """How long the launcher waits for the server to answer /health before it stops with the log's last lines."""


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """A judge behind an OpenAI-compatible chat-completions endpoint: any server or hosted API, or a vLLM server
    the launcher starts (`start`)."""

    url: str | None = None
    """Base URL of the API, e.g. http://judge-node:8000/v1 or https://api.openai.com/v1 (None with `start`: this
    node's own server)."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key; the key itself is never logged, recorded or written."""
    max_concurrency: int = 8
    """Requests in flight at once, per score rank."""
    timeout_s: float = 600.0
    """How long one request may take before it is sent again."""
    retries: int = 6
    """How many times a request is sent again after a connection error, a timeout, 408, 409, 429 or 5xx, with
    exponential backoff that honours Retry-After; after that the stage stops, resumable."""
    requests_per_minute: float | None = None
    """Send at most this many requests a minute from each rank (a hosted API's rate limit; None: no limit)."""
    top_logprobs: int = 20
    """`expected` mode where the server cannot return the probabilities of chosen tokens (vLLM's
    logprob_token_ids): how many of the likeliest tokens to ask for at the score's position (OpenAI: at most 20)."""
    start: ServerStart | None = None
    """Start a vLLM server on each node for the score stage (None: use `url`)."""


@dataclass(frozen=True, kw_only=True)
class ScoreConfig:
    """The score stage: a Qwen3-VL judge through transformers, or any judge behind an OpenAI-compatible server."""

    env: Environment = field(default_factory=Environment)
    """Interpreter of the judge environment (transformers 5.x)."""
    model: str
    """Hub id or local folder of the judge checkpoint; with the `server` backend, the model the server serves
    (a launched vLLM serves this checkpoint under this name; a hosted API's model, e.g. gpt-4.1-2025-04-14)."""
    backend: Literal["transformers", "server"] = "transformers"
    """Who answers: `transformers`, the judge loaded in each score rank's process on its GPU; or `server`, an
    OpenAI-compatible endpoint (`server`) the ranks send their questions to."""
    server: ServerConfig | None = None
    """The endpoint of the `server` backend."""
    image_max_side: int | None = None
    """Shrink every picture the judge sees so that its longer side is at most this many pixels (both backends
    alike; RISEBench judges at 768), keeping its aspect ratio (None: as they are)."""
    build_tiny: bool = False
    """Demo and tests only: build a tiny random-weight judge at `model` first if it is missing."""
    trust_remote_code: bool = False
    """Let the checkpoint run its own Python code when it loads; leave off unless you trust its source."""
    dtype: Dtype = "bfloat16"
    """Weights' dtype on the device."""
    protocol: Literal["open", "official"] = "open"
    """How the benchmark is judged. `open`: this tool's judging, the `prompts` below on 0-10. `official`: as the
    benchmark's authors judge it (GEdit-Bench, RISEBench, KRIS-Bench, ImgEdit-Bench): its own prompts, read from
    `judge_prompts.json` beside the dataset (written by `import-benchmark` from the user's copy), its answer format,
    scale and per-sample combination, and its leaderboard table in the report (`docs/official-protocols.md`);
    needs `mode: generate`, and names its categories in `categories` instead of `prompts`."""
    categories: list[str] | None = None
    """`official` only (required there): the benchmark's categories to judge, by name; the benchmark's own prompts
    judge them. The open protocol's categories are the keys of `prompts`."""
    mode: Literal["expected", "generate"] = "expected"
    """How a score is read. `expected`: the judge's next-token probabilities over 0..10 right after
    `answer_prefix`, reported as sum p(s)*s over the valid scores (two forward passes; never unparsed).
    `generate`: the judge writes its answer and the score is read from the text (`unparsed` if it has none)."""
    answer_prefix: str = "Score: "
    """Where the score begins in the judge's answer; every dimension's prompts must ask for it. `expected` mode
    writes it as the start of the answer and reads the score's probabilities right after it."""
    batch_size: int = 4
    """Judge queries (one per sample and dimension) in one forward batch."""
    max_new_tokens: int = 64
    """Longest judge answer in tokens (`generate` mode)."""
    human_score_key: str = "human_score"
    """The dataset key holding a human rating of the edit, when the dataset has one: the report then gives the
    judge's agreement with it (Spearman, Kendall, pairwise accuracy)."""
    prompts: dict[str, CategoryPrompts] | None = None
    """`open` only (required there): judge prompts per category; its keys are the benchmark's categories. Not
    given under `official`, whose prompts are the benchmark's own (an ignored prompt would read as the one asked)."""


@dataclass(frozen=True, kw_only=True)
class DistributedConfig:
    """How the torchrun jobs are started."""

    device: Literal["cuda", "cpu", "auto"] = "cuda"
    """Where the models run: `cuda` (rank i on cuda:LOCAL_RANK, nccl), `cpu` (gloo), or `auto` (CUDA when present,
    else the CPU). A stage never falls back to the CPU on its own: with `cuda` and no usable GPU it stops before
    any model loads, naming the driver's CUDA version and the one this environment's torch needs."""
    nproc_per_node: int = 1
    """Ranks per stage, one per GPU (CPU: one process each)."""
    shared_hub_cache: bool = False
    """A checkpoint named by its hub id is fetched by one rank per node (local rank 0) while the others wait; set
    this when every node shares one cache folder, so that only global rank 0 fetches it."""
    timeout_s: int = 1800
    """Timeout of collectives in seconds: how long a rank waits for the others at a barrier."""
    stage_timeout_s: int | None = None
    """The launcher stops a stage that runs longer than this many seconds (None: no limit)."""
    rendezvous_timeout_s: int = 600
    """Several nodes: how long a node waits, at the start of each stage, for the other nodes to arrive (the
    launcher's roll call, printing whom it waits for every 10 s, then torchrun's rendezvous) before it stops with
    one line naming the missing nodes."""


@dataclass(frozen=True, kw_only=True)
class SweepCheckpoint:
    """One editor of a sweep: a LoRA adapter of the config's editor, a fine-tuned pipeline of its family, or any
    other edit settings (another editor family), each scored as a run of its own."""

    name: str | None = None
    """The checkpoint's name, and its run folder's (default: the adapter's or model's folder, or file, name)."""
    lora: str | None = None
    """A LoRA adapter added to the config's `edit.lora`: a folder, a .safetensors file, a hub id, or a glob
    (`ckpt/step-*`) of which each match is a checkpoint of its own, named after it."""
    scale: float = 1.0
    """The adapter's scale."""
    weight_name: str | None = None
    """The weights file inside the adapter's folder or repository, when it holds several."""
    model: str | None = None
    """A full fine-tune: a diffusers pipeline folder (or hub id) replacing `edit.model`; only the components
    whose files differ from the loaded ones are loaded again."""
    editor: str | None = None
    """Another editor: a config file whose whole `edit` section (family, model, settings, environment) replaces
    the config's for this checkpoint (default name: the file's name without .yaml); `edit` settings apply over
    it."""
    edit: dict[str, Any] | None = None
    """Any other edit settings for this checkpoint, as `--set edit.KEY=VALUE` would set them."""


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """Many checkpoints in one launch: each a run of its own under `<output_dir>/<name>/` (resumed and refused
    when changed exactly as a single run), the editor loaded once per rank with adapters swapped in and out, the
    judge loaded once, one work queue over the whole sweep, and sweep.json/md/html comparing them."""

    checkpoints: list[SweepCheckpoint]
    """The checkpoints, in any order (the sweep report orders them by step number or name)."""
    base: str | None = "base"
    """The config's own editor (no checkpoint) as a run of the sweep under this name, the one every checkpoint is
    compared with; null leaves it out."""


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """A whole benchmark run; relative paths are relative to the config file's folder."""

    output_dir: str
    """Folder of shards, manifest and report."""
    dataset: DatasetConfig
    """The benchmark."""
    edit: EditConfig
    """The edit stage."""
    score: ScoreConfig
    """The score stage."""
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """How the stages are started."""
    sweep: SweepConfig | None = None
    """Score many checkpoints in one launch (see SweepConfig); null: one run."""
    source: str = ""
    """The file this config was read from (set by the loader)."""
