"""Typed dataclasses from YAML data: every key checked against the fields' types, errors at their key path.

Generic: it knows nothing of this project's schema. An unknown key is an error that names the key path and the
nearest valid key (a missing key it abbreviates first: user_prompt -> user_prompt_template); a missing required
key names what was found instead. Standard library only.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import reprlib
import types
import typing
from typing import Any, Literal


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key path."""


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


_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxlist, _QUOTE.maxdict, _QUOTE.maxstring, _QUOTE.maxother = 2, 4, 4, 60, 60


def quote(value: Any) -> str:
    """A short prefix of `repr(value)` for an error message, never expanding the whole value: YAML aliases can
    make a few hundred bytes stand for billions of nested items."""
    return _QUOTE.repr(value)


def unicode_problem(text: str) -> str | None:
    """Why `text` cannot be written as UTF-8 (a lone surrogate, which JSON and YAML escapes can produce), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return (f"is not valid Unicode text (a lone surrogate {text[e.start]!a} at character {e.start}); "
                "fix the escape that wrote it")
    return None


def where(source: str, keypath: str) -> str:
    """`file: key.path`, the prefix of every config error."""
    return f"{source}: {keypath or '<top level>'}"


def build(cls: type, raw: Any, source: str, keypath: str = "", set_by_loader: tuple[str, ...] = ()) -> Any:
    """An instance of dataclass `cls` from `raw`, each value converted to its field's type.

    Args:
        set_by_loader: Fields the caller fills in itself: not read from `raw` (a key of that name is ignored).

    Raises:
        ConfigError: at the key path of the first unknown, missing or mistyped key.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where(source, keypath)}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in set_by_loader}
    for key in raw:
        if key not in fields and key not in set_by_loader:
            near = _nearest(str(key), [f for f in fields if f not in raw], list(fields))
            hint = f"; did you mean '{near}'?" if near else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"{where(source, _join(keypath, key))}: unknown key{hint}")
    values = {}
    for name, f in fields.items():
        sub = _join(keypath, name)
        if name in raw:
            values[name] = _convert(hints[name], raw[name], source, sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            near = difflib.get_close_matches(name, [str(k) for k in raw], n=1, cutoff=0.5)
            hint = f" (found '{near[0]}': a misspelling?)" if near else ""
            raise ConfigError(f"{where(source, sub)}: missing required key '{name}'{hint}")
    return cls(**values)


def _nearest(key: str, missing: list[str], valid: list[str]) -> str | None:
    """The valid key `key` most likely misspells: a missing key it abbreviates (user_prompt ->
    user_prompt_template) first, then the closest missing key, then the closest of all."""
    prefixed = [m for m in missing if m.startswith(key) or key.startswith(m)]
    if prefixed:
        return min(prefixed, key=lambda m: abs(len(m) - len(key)))
    for pool in (missing, valid):
        near = difflib.get_close_matches(key, pool, n=1, cutoff=0.5)
        if near:
            return near[0]
    return None


def _join(keypath: str, key: Any) -> str:
    return f"{keypath}.{key}" if keypath else str(key)


def _convert(hint: Any, value: Any, source: str, keypath: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, source, keypath)
    if origin is Literal:
        if value not in args:
            near = difflib.get_close_matches(value, [str(a) for a in args], n=1, cutoff=0.5) \
                if isinstance(value, str) else []
            hint_txt = f"; did you mean '{near[0]}'?" if near else ""
            shown = f"'{value}'" if isinstance(value, str) and len(value) <= 60 else quote(value)
            raise ConfigError(f"{where(source, keypath)}: {shown} is not one of {list(args)}{hint_txt}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where(source, keypath)}: expected a list, got {type(value).__name__}")
        return [_convert(args[0], v, source, f"{keypath}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not value:
            raise ConfigError(f"{where(source, keypath)}: expected a non-empty mapping")
        return {_key(k, source, keypath): _convert(args[1], v, source, _join(keypath, k)) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return build(hint, value, source, keypath)
    return _scalar(hint, value, source, keypath)


def _scalar(hint: type, value: Any, source: str, keypath: str) -> Any:
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ConfigError(f"{where(source, keypath)}: expected {hint.__name__}, got {quote(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        # YAML reads .nan and .inf as floats; no setting means them, and JSON (the recorded config) cannot hold them.
        raise ConfigError(f"{where(source, keypath)}: must be a finite number, got {value}")
    if isinstance(value, str) and unicode_problem(value):
        raise ConfigError(f"{where(source, keypath)}: {unicode_problem(value)}")
    return value


def _key(key: Any, source: str, keypath: str) -> str:
    """A mapping key as text (category names in any script), refused if it is not valid Unicode."""
    text = str(key)
    if unicode_problem(text):
        raise ConfigError(f"{where(source, _join(keypath, ascii(text)))}: the key {unicode_problem(text)}")
    return text
