"""One declaration per option: configuration dataclasses whose fields carry their command
line help, and the ``argparse`` flags generated from them.

A configuration declares each field once with ``option(default, help, ...)``; the command
line gets one flag per field (``--field-name``), with the field's default (or a preset's
value), its choices and its help; ``from_args`` builds the configuration back, and the
configuration's own ``__post_init__`` checks it (a ``ValueError`` the command prints as one
line). Nothing here is numerical; it is the shell around the configurations. The fields'
declarations (``option``) live in ``option_fields``, which the core imports without
``argparse``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from dnc_jax.option_fields import option, parse_agop_samples

__all__ = ["add_flags", "flag_name", "from_args", "option", "parse_agop_samples"]


def flag_name(field_name: str) -> str:
    """``"--" + field_name`` with dashes for underscores."""
    return "--" + field_name.replace("_", "-")


def _scalar_type(annotation) -> type | None:
    """The one scalar type of ``int``, ``float``, ``str``, ``bool`` in ``annotation``
    (``X | None`` allowed), else ``None``."""
    if annotation in (int, float, str, bool):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        scalars = [a for a in typing.get_args(annotation) if a in (int, float, str, bool)]
        if len(scalars) == 1:
            return scalars[0]
    return None


def add_flags(parser: argparse.ArgumentParser, cls: type, defaults: Any = None,
              skip: tuple[str, ...] = ()) -> None:
    """One flag per field of the dataclass ``cls`` (but ``skip``), its default taken from
    the instance ``defaults`` (default ``cls()``): booleans as ``--name`` / ``--no-name``.
    The fields ``cls`` declares come first, then those it inherits (a configuration's
    ``SolverOptions``)."""
    defaults = cls() if defaults is None else defaults
    hints = typing.get_type_hints(cls)
    own = vars(cls).get("__annotations__", {})
    fields = sorted(dataclasses.fields(cls), key=lambda f: f.name not in own)  # stable
    for field in fields:
        if field.name in skip:
            continue
        meta, default = field.metadata, getattr(defaults, field.name)
        kind = _scalar_type(hints[field.name])
        # argparse %-formats help texts: a literal "%" (as in "1%") is written "%%"
        help_text = (meta.get("help") or "").replace("%", "%%") or None
        kwargs: dict[str, Any] = {"help": help_text, "dest": field.name}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            parse = meta.get("parse") or kind
            if parse is None:
                raise TypeError(f"{cls.__name__}.{field.name}: give option(parse=...) for "
                                f"type {hints[field.name]}")
            kwargs["type"] = parse
            choices = meta.get("choices")
            if choices:
                kwargs["choices"] = choices() if callable(choices) else choices
            if meta.get("nargs"):
                kwargs["nargs"] = meta["nargs"]
                default = [default]
            if meta.get("metavar"):
                kwargs["metavar"] = meta["metavar"]
        if not callable(default) or isinstance(default, type):
            kwargs["default"] = default
        else:  # a function-valued field (a custom feature map): the flag's own default
            kwargs["default"] = field.default
        parser.add_argument(flag_name(field.name), **kwargs)


def from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """The ``cls`` instance of the parsed ``args`` (one value of a ``nargs="+"`` field: the
    first), ``overrides`` replacing fields; the configuration checks itself."""
    values = {}
    for field in dataclasses.fields(cls):
        if hasattr(args, field.name):
            value = getattr(args, field.name)
            values[field.name] = value[0] if field.metadata.get("nargs") else value
    return cls(**(values | overrides))
