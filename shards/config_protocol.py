"""The rules of `score.protocol`, checked when a config loads: which key names the categories a run judges, and
what the official protocol needs before anything runs.

The open protocol judges with the config's own prompts, so `score.prompts` (required) names the categories. The
official one judges with the benchmark's own prompts, imported beside the dataset: a prompt written in the config
would never be asked, yet read as the one that was, so it is refused and `score.categories` names the categories.
Standard library only.
"""

from __future__ import annotations

from shards.config_schema import RunConfig, ScoreConfig
from shards.typed_data import ConfigError, SchemaError, where


def judged_categories(score: ScoreConfig) -> list[str]:
    """The categories a run judges: the keys of `prompts` (open) or `categories` (official)."""
    return list(score.prompts) if score.protocol == "open" else list(score.categories)


def check_protocol_keys(config: RunConfig) -> None:
    """Exactly the keys the chosen protocol reads: `prompts` for open, `categories` for official."""
    src, score = config.source, config.score
    if score.protocol == "open":
        if score.categories is not None:
            raise ConfigError(f"{where(src, 'score.categories')}: only used with score.protocol: official (the open "
                              "protocol judges the categories named by score.prompts)")
        if score.prompts is None:
            raise ConfigError(f"{where(src, 'score.prompts')}: missing required key 'prompts' (the judge prompts of "
                              "each category; score.protocol: official asks the benchmark's own instead)")
        return
    if score.prompts is not None:
        raise ConfigError(f"{where(src, 'score.prompts')}: not used with score.protocol: official, which asks the "
                          "benchmark's own prompts (judge_prompts.json beside the dataset); name the categories in "
                          f"score.categories instead: [{', '.join(score.prompts)}]")
    if not score.categories:
        raise ConfigError(f"{where(src, 'score.categories')}: required with score.protocol: official: the "
                          "benchmark's categories to judge, e.g. [temporal_reasoning, causal_reasoning]")
    twice = sorted({c for c in score.categories if score.categories.count(c) > 1})
    if twice:
        raise ConfigError(f"{where(src, 'score.categories')}: {', '.join(twice)} listed more than once")
    if score.mode != "generate":
        raise ConfigError(f"{where(src, 'score.mode')}: score.protocol official needs generate: the benchmarks' "
                          "judges write their reasoning before the score, or several scores in one answer, which "
                          "no single next-token probability holds")


def check_official_prompts(config: RunConfig) -> None:
    """The official protocol judges with the benchmark's prompts imported beside the dataset: refuse a config
    whose dataset has none before anything runs."""
    if config.score.protocol != "official":
        return
    from shards.judge_prompts import judge_prompts_path, read_judge_prompts

    path = judge_prompts_path(config.dataset.path)
    try:
        read_judge_prompts(path)
    except FileNotFoundError:
        raise ConfigError(f"{where(config.source, 'score.protocol')}: official needs the benchmark's own judge "
                          f"prompts at {path}, which import-benchmark writes from your copy of the benchmark (for "
                          "gedit, give its scorer's checkout as a second source)") from None
    except SchemaError as e:
        raise ConfigError(f"{where(config.source, 'score.protocol')}: {e}") from None
