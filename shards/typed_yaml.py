"""YAML as the run config is written: each key the text written, and a key written twice in one mapping an error.

`shards.typed_data` then builds the typed config from it. Standard library and PyYAML only.
"""

from __future__ import annotations

import functools
from typing import Any

from shards.typed_data import ConfigError, where


def load_yaml(stream: Any) -> Any:
    """YAML data as `yaml.safe_load` reads it, except for its keys: a key written twice in one mapping is an error
    (PyYAML keeps the last one silently), and every key is the text written, since keys here are names (a
    category `on:` or `010:` is not True or 8).

    Raises:
        yaml.YAMLError: naming the line, also for data nested too deep for the parser (which recurses).
    """
    import yaml

    try:
        loader = _keys_as_written_loader()(stream)     # what yaml.safe_load does, with our loader
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except RecursionError:
        raise yaml.YAMLError("nested too deep for the YAML parser") from None


@functools.cache
def _keys_as_written_loader() -> type:
    import yaml
    from yaml.constructor import ConstructorError

    class KeysAsWritten(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            first = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue                # `<<: *base`: what it merges in, a key here may override
                if not isinstance(key_node, yaml.ScalarNode):
                    raise ConstructorError("while reading a mapping", node.start_mark,
                                           "a key must be a name, not a list or a mapping", key_node.start_mark)
                if key_node.value in first:
                    raise ConstructorError(f"the key '{key_node.value}' appears twice in one mapping: first",
                                           first[key_node.value], "and again", key_node.start_mark)
                first[key_node.value] = key_node.start_mark
            self.flatten_mapping(node)
            return {key_node.value: self.construct_object(value_node, deep=deep)
                    for key_node, value_node in node.value}

    return KeysAsWritten


def set_dotted(raw: dict, dotted: str, value: Any, source: str) -> None:
    """Set `raw[a][b][c] = value` for dotted key "a.b.c", creating missing mappings."""
    node = raw
    *parents, last = dotted.split(".")
    for i, key in enumerate(parents):
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where(source, '.'.join(parents[: i + 1]))}: is not a mapping, so '{dotted}' "
                              "cannot be set")
    node[last] = value
