"""Generic loader: walks type hints, rejects unknown/missing keys, checks types, reports all."""

from __future__ import annotations

import difflib
import math
import os
import types
from collections.abc import Mapping
from dataclasses import MISSING, fields, is_dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, Union, cast, get_args, get_origin, get_type_hints

import yaml

from mia.config._checks import _is_number, _out_of_range, _Problems
from mia.config.sections import Params
from mia.errors import ConfigError

_INVALID: Final = object()


T = TypeVar("T")


class _Mismatch(Exception):
    """A leaf value has the wrong type; the message is ``expected X, got Y``."""


def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " or ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if is_dataclass(tp):
        return "mapping"
    return "date (YYYY-MM-DD)" if tp is date else str(getattr(tp, "__name__", tp))


def _describe(value: object) -> str:
    if value is None:
        return "null"
    kind = "mapping" if isinstance(value, Mapping) else type(value).__name__
    text = repr(value)
    return f"{kind} {text if len(text) <= 60 else text[:57] + '...'}"


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


class _Loader:
    """Walks a mapping against type hints; collects every problem as ``source: path: msg``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []

    def error(self, path: str, msg: str) -> None:
        self.errors.append(f"{self.source}: {path}: {msg}" if path else f"{self.source}: {msg}")

    def convert(self, tp: Any, value: object, path: str) -> Any:
        try:
            return self._convert(tp, value, path)
        except _Mismatch as exc:
            self.error(path, str(exc))
            return _INVALID

    def _convert(self, tp: Any, value: object, path: str) -> Any:
        origin, args = get_origin(tp), get_args(tp)
        if is_dataclass(tp):
            return self._dataclass(cast(type, tp), value, path)
        if origin in (Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            members = [a for a in args if a is not type(None)]
            if len(members) == 1:  # `X | None`: let X report nested problems itself
                try:
                    return self._convert(members[0], value, path)
                except _Mismatch:
                    pass
            else:
                for member in members:
                    try:
                        return self._convert(member, value, path)
                    except _Mismatch:
                        continue
        elif origin is tuple and isinstance(value, list | tuple):
            items = [self.convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
            return _INVALID if _INVALID in items else tuple(items)
        elif origin is dict and isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    self.error(f"{path}.{k!r}", f"expected str key, got {_describe(k)}")
                out[str(k)] = self.convert(args[1], v, f"{path}.{k}")
            return _INVALID if _INVALID in out.values() else out
        elif origin is Literal and value in args and not isinstance(value, bool):
            return value
        elif tp is bool and isinstance(value, bool):
            return value
        elif tp is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif tp is float and _is_number(value) and math.isfinite(cast(float, value)):
            return float(cast(float, value))
        elif tp is str and isinstance(value, str):
            return value
        elif tp is date and isinstance(value, date) and not isinstance(value, datetime):
            return value
        elif tp is date and isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise _Mismatch(f"expected {_type_name(tp)}, got {_describe(value)}{_hint(tp, value)}")

    def _dataclass(self, cls: type, value: object, path: str) -> object:
        if not isinstance(value, Mapping):
            raise _Mismatch(f"expected mapping, got {_describe(value)}")
        hints = _hints(cls)
        known = {f.name: f for f in fields(cast(Any, cls))}
        valid = True
        for key in value:
            if key not in known:
                near = difflib.get_close_matches(str(key), known, n=1)
                fix = f"did you mean {near[0]!r}?" if near else f"known keys: {', '.join(known)}"
                self.error(_join(path, str(key)), f"unknown key; {fix}")
                valid = False
        kwargs: dict[str, Any] = {}
        for name, f in known.items():
            if name not in value:
                if f.default is not MISSING or f.default_factory is not MISSING:
                    continue  # a documented default (params.yaml sections declare none)
                self.error(path, f"missing key {name!r} ({_type_name(hints[name])})")
                valid = False
            else:
                kwargs[name] = self.convert(hints[name], value[name], _join(path, name))
                problems = _out_of_range(f, kwargs[name])
                for line in problems:
                    self.error("", _join(path, line))
                valid = valid and kwargs[name] is not _INVALID and not problems
        if not valid:
            return _INVALID
        try:
            return cls(**kwargs)
        except _Problems as exc:
            for line in exc.lines:
                self.error("", _join(path, line))
            return _INVALID


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _hint(tp: Any, value: object) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "; must be finite"
    if isinstance(value, str) and (tp is float or float in get_args(tp)):
        try:
            float(value)
        except ValueError:
            return ""
        return "; YAML reads exponents without a dot as text: write 3.0e-4, not 3e-4"
    if get_origin(tp) is Literal and isinstance(value, str):
        near = difflib.get_close_matches(value, [str(a) for a in get_args(tp)], n=1)
        return f"; did you mean {near[0]!r}?" if near else ""
    return ""


def parse_params(mapping: object, source: str = "params.yaml") -> Params:
    """Build :class:`Params` from plain data (as loaded from YAML), checking everything.

    :param mapping: the parsed document: a mapping of section name to section mapping.
    :param source: the name used to prefix error messages, usually the file path.
    :return: the validated, frozen parameters.
    :raises ConfigError: listing every problem found, one per line.
    """
    return parse_section(Params, mapping, source)


def parse_section(cls: type[T], mapping: object, source: str) -> T:
    """Build any checked config dataclass (e.g. the executor's settings) from plain data, with
    the same rules as :func:`parse_params`: unknown keys, missing keys, types and ranges.

    :param cls: the frozen dataclass. :param mapping: the parsed data.
    :param source: the name prefixing error messages (the file path).
    :raises ConfigError: listing every problem found, one per line.
    """
    loader = _Loader(source)
    out = loader.convert(cls, mapping, "")
    if loader.errors or not isinstance(out, cls):
        raise ConfigError("\n".join(loader.errors))
    return out


def read_yaml(path: str | Path) -> object:
    """Parse a YAML file strictly (duplicate keys are an error).

    :raises ConfigError: unreadable file or invalid YAML, naming the file.
    """
    try:
        return yaml.load(Path(path).read_text(), Loader=_StrictLoader)  # noqa: S506 - SafeLoader
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may override keys
            continue
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}; remove one", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def resolve_params_path(path: str | Path | None = None,
                        env: Mapping[str, str] | None = None) -> Path:
    """Find ``params.yaml``: ``path``, else ``$MIA_PARAMS``, else ``./params.yaml``.

    :param path: an explicit path (``--params PATH``), or ``None``.
    :param env: environment to read ``MIA_PARAMS`` from; default :data:`os.environ`.
    :return: the path as given (relative paths stay relative, for readable messages).
    :raises ConfigError: if the file does not exist, naming where it looked and how to fix it.
    """
    env = os.environ if env is None else env
    if path is not None:
        found, how = Path(path), "given explicitly"
    elif env.get("MIA_PARAMS"):
        found, how = Path(env["MIA_PARAMS"]), "from MIA_PARAMS"
    else:
        found, how = Path("params.yaml"), f"default ./params.yaml in {Path.cwd()}"
    if not found.is_file():
        raise ConfigError(f"params file not found: looked at {found.absolute()} ({how}); "
                          "pass --params PATH or set MIA_PARAMS=/path/to/params.yaml")
    return found


def load_params(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Params:
    """Read and validate ``params.yaml``.

    :param path: explicit file; ``None`` means ``$MIA_PARAMS`` or ``./params.yaml``.
    :param env: environment for ``MIA_PARAMS``; default :data:`os.environ`.
    :return: the validated, frozen parameters.
    :raises ConfigError: file missing or unreadable, bad YAML (with line), or bad values (all).
    """
    found = resolve_params_path(path, env)
    try:
        text = found.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{found}: cannot read params file: {exc}") from exc
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{found}: invalid YAML at {where}{problem}") from exc
    return parse_params(document, str(found))

