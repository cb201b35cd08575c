"""Wire JSON -> model instances, through one cattrs converter per strictness.

The API is loose in practice (FACTS.md): numbers arrive as strings ("1382"),
timestamps have no zone ("2020-07-27 12:01:01", meaning UTC), and new fields appear
without notice. The lenient converter accepts all of that and ignores unknown fields;
the strict one (used by the test suite) also fails on unknown fields so fixture drift
is caught. Every failure surfaces as `APIResponseError`, never a bare cattrs error.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ._exceptions import APIResponseError

if TYPE_CHECKING:
    import cattrs
from ._models import (
    Account,
    AggregationRow,
    CurrentPage,
    CurrentReferrer,
    CurrentVisitors,
    Deleted,
    Event,
    Milestone,
    Site,
    TokenInfo,
    Wiped,
)

__all__ = ["Converter", "get_converter", "parse_date", "parse_timestamp"]

T = TypeVar("T")

MODELS: tuple[type[Any], ...] = (
    Account,
    AggregationRow,
    CurrentPage,
    CurrentReferrer,
    CurrentVisitors,
    Deleted,
    Event,
    Milestone,
    Site,
    TokenInfo,
    Wiped,
)


def _to_int(value: Any, _: type) -> int:
    if isinstance(value, bool):
        raise TypeError(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            number = float(text)  # "12.0" still counts; "12.5" does not
            if number.is_integer():
                return int(number)
            raise ValueError(f"expected a whole number, got {value!r}") from None
    raise TypeError(f"expected a number, got {value!r}")


def _to_float(value: Any, _: type) -> float:
    if isinstance(value, bool):
        raise TypeError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        result = float(value.strip())
    else:
        raise TypeError(f"expected a number, got {value!r}")
    if not math.isfinite(result):
        raise ValueError(f"expected a finite number, got {value!r}")
    return result


def _to_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1) and not isinstance(value, float):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise TypeError(f"expected a boolean, got {value!r}")


def _to_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # an id the API sent as a number
    raise TypeError(f"expected a string, got {value!r}")


def _to_id(value: Any, _: Any) -> str | int | None:
    if value is None or isinstance(value, str):
        return value
    return _to_int(value, int)


def parse_timestamp(value: str) -> datetime:
    """Parse the API's timestamps into aware UTC datetimes.

    Accepts "2020-07-27 12:01:01" (UTC by the API's convention), ISO 8601 with "T",
    fractions, "Z" or an offset, and a bare date (midnight UTC).
    """
    if len(value) == 19 and value[10] == " ":  # the API's own "2020-07-27 12:01:01"
        # An explicit offset parses to `timezone.utc` itself, five times faster than
        # `.replace(tzinfo=...)`, which a page of 100 sites pays 100 times.
        return datetime.fromisoformat(value + "+00:00")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def parse_date(value: str) -> date:
    """Parse a `YYYY-MM-DD` date (a timestamp is cut to its date)."""
    text = value.strip()
    if len(text) > 10:
        return parse_timestamp(text).date()
    return date.fromisoformat(text)


def _to_datetime(value: Any, _: type) -> datetime:
    if isinstance(value, str):
        return parse_timestamp(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    raise TypeError(f"expected a timestamp, got {value!r}")


def _to_date(value: Any, _: type) -> date:
    if isinstance(value, str):
        return parse_date(value)
    raise TypeError(f"expected a date, got {value!r}")


def _to_str_tuple(value: Any, _: type) -> tuple[str, ...]:
    # Abilities come as a list, or (Laravel's sanctum default) as a JSON-ish string.
    if isinstance(value, str):
        return tuple(part for part in value.strip("[]").replace('"', "").split(",") if part)
    if isinstance(value, (list, tuple)):
        return tuple(_to_str(item, str) for item in value)
    raise TypeError(f"expected a list of strings, got {value!r}")


class _Fallback(Exception):
    """The fast path cannot vouch for this input; cattrs takes over."""


_MISSING = object()
_HOOKS: dict[Any, Callable[[Any, type], Any]] = {
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
    datetime: _to_datetime,
    date: _to_date,
}


def _fast_structurer(model: type[T], strict: bool) -> Callable[[Any], T] | None:
    """A straight-line structure function for a flat model, or None.

    cattrs dispatches per field on every call; for the flat models (scalars,
    optional scalars, timestamps) we generate, once, the code it would run for
    the plain case. It returns the same values the cattrs path returns, and hands
    anything else (a wrong type, a bad number, an unknown key when strict) to
    cattrs by raising `_Fallback`, so errors are cattrs' own.
    """
    import typing

    hints = typing.get_type_hints(model)
    fields = [f for f in attrs.fields(model) if f.name != "raw"]  # type: ignore[arg-type]
    names = [f.name for f in fields]
    namespace: dict[str, Any] = {
        "_Fallback": _Fallback, "_MISSING": _MISSING, "model": model,
        "allowed": frozenset(names),
    }
    lines = ["def structure(d):", "    if type(d) is not dict: raise _Fallback"]
    if strict:
        lines.append("    if not allowed.issuperset(d): raise _Fallback")
    lines.append("    try:")
    for index, field in enumerate(fields):
        hint = hints[field.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = type(None) in typing.get_args(hint)
        base = args[0] if optional and len(args) == 1 else hint
        if base not in (str, *_HOOKS) or (not optional and typing.get_args(hint)):
            return None  # tuples, nested models, unions: cattrs only
        required = field.default is attrs.NOTHING
        namespace[f"default{index}"] = None if required else field.default
        value = f"v{index}"
        lines.append(f"        {value} = d.get({field.name!r}, _MISSING)")
        lines.append(f"        if {value} is _MISSING:")
        missing = "raise _Fallback" if required else f"{value} = default{index}"
        lines.append(f"            {missing}")
        check = f"{value} is not None and " if optional else ""
        lines.append(f"        elif {check}True:")
        if base is str:
            lines.append(f"            if type({value}) is not str: raise _Fallback")
        else:
            namespace[f"hook{index}"] = _HOOKS[base]
            namespace[f"type{index}"] = base
            lines.append(f"            {value} = hook{index}({value}, type{index})")
        if not optional:
            lines.append(f"        if {value} is None: raise _Fallback")
    lines.append("    except (TypeError, ValueError, OverflowError):")
    lines.append("        raise _Fallback from None")
    blank = blank_class(model)
    if blank is None:
        call = ", ".join(f"{name}=v{index}" for index, name in enumerate(names))
        lines.append(f"    return model({call}, raw=d)")
    else:  # what `model(...)` would do, as plain slot stores (see `blank_class`)
        namespace["new"], namespace["Blank"] = object.__new__, blank
        lines.append("    obj = new(Blank)")
        lines += [f"    obj.{name} = v{index}" for index, name in enumerate(names)]
        lines += ["    obj.raw = d", "    obj.__class__ = model", "    return obj"]
    exec(compile("\n".join(lines), f"<fast structure {model.__name__}>", "exec"), namespace)
    function: Callable[[Any], T] = namespace["structure"]
    return function


def blank_class(model: type[T]) -> type[T] | None:
    """A mutable twin of a frozen, slotted model whose `__init__` only stores fields.

    A frozen attrs `__init__` stores each field through `object.__setattr__`, a call
    per field. A subclass with object's own `__setattr__` and no slots of its own has
    the same layout, so the generated code fills one with plain slot stores and then
    makes it the model by `__class__` assignment: the same object `__init__` builds,
    in a third of the time. None for a model whose `__init__` does more (validators,
    converters, factories, a post-init hook, a cached hash).
    """
    fields = attrs.fields(model)  # type: ignore[arg-type]
    if (
        "__slots__" not in model.__dict__
        or hasattr(model, "__attrs_post_init__")
        or "__attrs_cached_hash" in model.__slots__  # type: ignore[attr-defined]
        or any(
            f.validator is not None or f.converter is not None
            or isinstance(f.default, attrs.Factory)  # type: ignore[arg-type]
            for f in fields
        )
    ):
        return None
    namespace = {"__slots__": (), "__setattr__": object.__setattr__,
                 "__delattr__": object.__delattr__}
    return type(f"_Blank{model.__name__}", (model,), namespace)


class Converter:
    """Structures decoded JSON into models; `strict` fails on unknown fields."""

    def __init__(self, *, strict: bool) -> None:
        self.strict = strict
        import cattrs  # on first use: `import fathom_async` stays light

        conv = cattrs.Converter(forbid_extra_keys=strict)
        conv.register_structure_hook(int, _to_int)
        conv.register_structure_hook(float, _to_float)
        conv.register_structure_hook(bool, _to_bool)
        conv.register_structure_hook(str, _to_str)
        conv.register_structure_hook(datetime, _to_datetime)
        conv.register_structure_hook(date, _to_date)
        conv.register_structure_hook_func(lambda t: t == tuple[str, ...], _to_str_tuple)
        conv.register_structure_hook_func(lambda t: t == (str | int | None), _to_id)
        for model in MODELS:
            conv.register_structure_hook(model, self._with_raw(conv, model))
        self._conv = conv
        self._fast: dict[type, Callable[[Any], Any] | None] = {}

    @staticmethod
    def _with_raw(conv: cattrs.Converter, model: type[T]) -> Callable[[Any, type], T]:
        from cattrs.gen import make_dict_structure_fn, override

        base = make_dict_structure_fn(
            model, conv, _cattrs_forbid_extra_keys=conv.forbid_extra_keys, raw=override(omit=True)
        )

        def structure(data: Any, cls: type) -> T:
            if not isinstance(data, Mapping):
                raise TypeError(f"expected an object, got {type(data).__name__}")
            obj = base(data, cls)
            object.__setattr__(obj, "raw", data)
            return obj

        return structure

    def structure(self, data: Any, model: type[T]) -> T:
        """Build one `model` from decoded JSON, or raise APIResponseError."""
        try:
            fast = self._fast[model]
        except KeyError:
            fast = self._fast[model] = _fast_structurer(model, self.strict)
        if fast is not None:
            try:
                result: T = fast(data)
                return result
            except _Fallback:
                pass
        try:
            return self._conv.structure(data, model)
        except Exception as exc:  # cattrs groups every field's failure
            raise APIResponseError(
                f"could not read the response as {model.__name__}: {_describe(exc)}",
                body=data,
            ) from exc

    def structure_many(self, items: Any, model: type[T]) -> tuple[T, ...]:
        if not isinstance(items, list):
            raise APIResponseError(
                f"expected a list of {model.__name__}, got {type(items).__name__}", body=items
            )
        return tuple(self.structure(item, model) for item in items)


def _describe(exc: BaseException) -> str:
    import cattrs

    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc))
    return str(exc) or type(exc).__name__


@functools.cache
def get_converter(strict: bool = False) -> Converter:
    """The shared converter for a strictness (building one is costly, using it is not)."""
    return Converter(strict=strict)


def field_names(model: type[Any]) -> frozenset[str]:
    return frozenset(f.name for f in attrs.fields(model)) - {"raw"}
