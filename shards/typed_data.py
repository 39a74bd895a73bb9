"""Typed dataclasses from YAML or JSON data: every key checked against the fields' types, errors at their key path.

Generic: it knows nothing of this project's schemas. It builds the run config from YAML data (`shards.config`,
read by `shards.typed_yaml`), and reads and writes as JSON every file the tool writes for another process or a
later run (the manifest, the report, the run records: `from_json`, `to_data`). An unknown key is an error that
names the key path and the nearest valid key (a missing key it abbreviates first: user_prompt ->
user_prompt_template); a missing required key names what was found instead. A config's errors read as settings a
person wrote (`expected int, got 'two'`), a JSON file's as the data a program wrote (`expected text, got null`).
Standard library only.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import reprlib
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

MISSING = object()    # the value of a key that is not there, as an error message shows it


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the key path."""


class SchemaError(ValueError):
    """A file the tool wrote (manifest, report, run record) that does not match its typed definition; the message
    names the file and the key path."""


@dataclass(frozen=True)
class Kind:
    """What a value must be beyond its type, as `Annotated[int, Kind("a count (0 or more)", test)]`: the value as
    read must pass `test`, or the error says `expected <name>`."""

    name: str
    test: Callable[[Any], bool]


def optional_key() -> Any:
    """A field whose key a file may leave out, because it does not apply to this entry (a sample that failed in
    the edit stage has no edited pixels' digest): None when absent, and left out when None. Every other field is
    always written, null too."""
    return dataclasses.field(default=None, metadata={"optional_key": True})


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
    """`file: key.path`, the prefix of every error."""
    return f"{source}: {keypath or '<top level>'}"


class Phrasing:
    """How a config's errors read: settings a person wrote, shown as Python shows them."""

    error: type[ValueError] = ConfigError
    empty_mappings = False          # a mapping in a config lists something (prompts, dimensions, a filter)
    scalars = {str: "str", int: "int", float: "float", bool: "bool"}
    mapping = "a mapping"

    def show(self, value: Any) -> str:
        return quote(value)

    def missing(self, name: str, hint: Any, raw: dict) -> str:
        near = difflib.get_close_matches(name, [str(k) for k in raw], n=1, cutoff=0.5)
        return f"missing required key '{name}'" + (f" (found '{near[0]}': a misspelling?)" if near else "")

    def name(self, hint: Any) -> str:
        """What a value of type `hint` is, in words."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is Annotated:
            kinds = [k for k in hint.__metadata__ if isinstance(k, Kind)]
            return kinds[0].name if kinds else self.name(args[0])
        if origin in (typing.Union, types.UnionType):
            return " or ".join(self.name(a) for a in args if a is not type(None)) + " or null"
        if origin is Literal:
            return "one of " + ", ".join(map(str, args))
        if origin is list:
            return "a list"
        if origin is dict or dataclasses.is_dataclass(origin or hint):
            return self.mapping
        return "any value" if hint is Any else self.scalars.get(hint, getattr(hint, "__name__", str(hint)))


class JsonPhrasing(Phrasing):
    """How a JSON file's errors read: data a program wrote, shown as JSON writes it, a missing key as such."""

    error = SchemaError
    empty_mappings = True           # a report without samples has no category
    scalars = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}
    mapping = "an object"

    def show(self, value: Any) -> str:
        if value is MISSING:
            return "nothing (the key is missing)"
        text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:57] + "..."

    def missing(self, name: str, hint: Any, raw: dict) -> str:
        return f"expected {self.name(hint)}, got {self.show(MISSING)}"


CONFIG, JSON_FILE = Phrasing(), JsonPhrasing()


@dataclass(frozen=True)
class At:
    """Where a value is being read: the file, the key path and how that file's errors read."""

    source: str
    keypath: str = ""
    phrasing: Phrasing = CONFIG

    def key(self, key: Any) -> At:
        return dataclasses.replace(self, keypath=_join(self.keypath, key))

    def item(self, index: int) -> At:
        return dataclasses.replace(self, keypath=f"{self.keypath}[{index}]")

    def error(self, message: str) -> ValueError:
        return self.phrasing.error(f"{where(self.source, self.keypath)}: {message}")

    def expected(self, what: str, value: Any) -> ValueError:
        """`<file>: <key path>: expected <what>, got <value as the file shows it>`."""
        return self.error(f"expected {what}, got {self.phrasing.show(value)}")


def build(cls: type, raw: Any, source: str | At, keypath: str = "", set_by_loader: tuple[str, ...] = ()) -> Any:
    """An instance of dataclass `cls` from `raw`, each value converted to its field's type.

    A dataclass may define `check_data(raw, at)`, called with its mapping before its fields are converted, for a
    rule that spans fields (a sample's score must be null unless its status is ok).

    Args:
        source: The file (errors read as a config's), or where `raw` is (`At`, with its phrasing).
        set_by_loader: Fields the caller fills in itself: not read from `raw` (a key of that name is ignored).

    Raises:
        ConfigError, SchemaError: at the key path of the first unknown, missing or mistyped key.
    """
    at = source if isinstance(source, At) else At(source, keypath)
    if not isinstance(raw, dict):
        raise at.expected(at.phrasing.name(cls), raw)
    hints, plain = _hints(cls), typing.get_origin(cls) or cls       # plain: PerStage for PerStage[int]
    fields = {f.name: f for f in dataclasses.fields(plain) if f.name not in set_by_loader}
    for key in raw:
        if key not in fields and key not in set_by_loader:
            near = _nearest(str(key), [f for f in fields if f not in raw], list(fields))
            hint = f"; did you mean '{near}'?" if near else f"; valid keys: {', '.join(fields)}"
            raise at.key(key).error(f"unknown key{hint}")
    if hasattr(plain, "check_data"):
        plain.check_data(raw, at)
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _convert(hints[name], raw[name], at.key(name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise at.key(name).error(at.phrasing.missing(name, hints[name], raw))
    return plain(**values)


def from_json(cls: type, data: Any, source: str) -> Any:
    """An instance of dataclass `cls` from the JSON data of file `source`, its errors read as a JSON file's.

    Raises:
        SchemaError: at the key path of the first unknown, missing or mistyped key.
    """
    return build(cls, data, At(source, "", JSON_FILE))


def to_data(value: Any) -> Any:
    """The JSON data of a value `build` makes: a dataclass as a mapping of its fields in their order (an
    `optional_key` left out when None), lists and mappings item by item."""
    if dataclasses.is_dataclass(value):
        return {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.metadata.get("optional_key") and getattr(value, f.name) is None)}
    if isinstance(value, list):
        return [to_data(v) for v in value]
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    return value


def load_json(path: str, error: type[Exception] = SchemaError) -> Any:
    """The JSON data of file `path`.

    Raises:
        FileNotFoundError: if there is no such file (the caller says what to do).
        `error`: naming the file, if it cannot be read or is not JSON (also nested too deep for the parser).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read: {e}") from None
    except ValueError as e:         # JSONDecodeError, or an integer longer than Python converts
        raise error(f"{path}: not valid JSON: {e}") from None
    except RecursionError:
        raise error(f"{path}: not valid JSON: nested too deep for the parser") from None


def check_schema_version(data: Any, source: str, version: int, what_to_do: str) -> None:
    """Refuse the data of a file written as another schema_version than `version`, or before files had one.

    Raises:
        SchemaError: naming the file, what it holds, what this tool reads, and `what_to_do`.
    """
    if not isinstance(data, dict):
        raise SchemaError(f"{source}: expected a JSON object, got {JSON_FILE.show(data)}")
    found = data.get("schema_version", MISSING)
    if found == version and type(found) is int:
        return
    written = ("has no schema_version: it was written by an earlier version of this tool" if found is MISSING else
               f"has schema_version {JSON_FILE.show(found)}: it was written by another version of this tool")
    raise SchemaError(f"{source}: {written}, and this one reads schema_version {version}; {what_to_do}")


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    """Each field's type; for a generic dataclass such as `PerStage[int]`, with its parameter filled in."""
    origin = typing.get_origin(cls)
    if origin is None:
        return typing.get_type_hints(cls, include_extras=True)
    bound = dict(zip(origin.__parameters__, typing.get_args(cls)))
    return {name: bound.get(hint, hint) for name, hint in typing.get_type_hints(origin, include_extras=True).items()}


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


def _convert(hint: Any, value: Any, at: At) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        for kind in (k for k in hint.__metadata__ if isinstance(k, Kind)):
            if not kind.test(value):
                raise at.expected(kind.name, value)
        return _convert(args[0], value, at)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, at)
    if origin is Literal:
        if value not in args:
            near = difflib.get_close_matches(value, [str(a) for a in args], n=1, cutoff=0.5) \
                if isinstance(value, str) else []
            hint_txt = f"; did you mean '{near[0]}'?" if near else ""
            shown = f"'{value}'" if isinstance(value, str) and len(value) <= 60 else at.phrasing.show(value)
            raise at.error(f"{shown} is not one of {list(args)}{hint_txt}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise at.expected("a list", value)
        return [_convert(args[0], v, at.item(i)) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not (value or at.phrasing.empty_mappings):
            raise at.expected(at.phrasing.mapping if at.phrasing.empty_mappings else "a non-empty mapping", value)
        return {_key(k, at): _convert(args[1], v, at.key(k)) for k, v in value.items()}
    if dataclasses.is_dataclass(origin or hint):
        return build(hint, value, at)
    return value if hint is Any else _scalar(hint, value, at)


def _scalar(hint: type, value: Any, at: At) -> Any:
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 2 ** 1023:          # float() of a longer integer overflows
            raise at.error(f"must be a finite number, got {at.phrasing.show(value)}")
        return float(value)
    if not ok:
        raise at.expected(at.phrasing.name(hint), value)
    if isinstance(value, float) and not math.isfinite(value):
        # YAML reads .nan and .inf as floats, and Python's JSON reader NaN and Infinity; no field means them.
        raise at.error(f"must be a finite number, got {at.phrasing.show(value)}")
    if isinstance(value, str) and unicode_problem(value):
        raise at.error(unicode_problem(value))
    return value


def _key(key: Any, at: At) -> str:
    """A mapping key as text (category names in any script), refused if it is not valid Unicode."""
    text = str(key)
    if unicode_problem(text):
        raise at.key(ascii(text)).error(f"the key {unicode_problem(text)}")
    return text
