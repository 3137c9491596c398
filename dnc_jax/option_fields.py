"""A configuration field declared once with what the command line needs to know of it
(help, choices, how to parse it), as dataclass metadata: the core's configurations use
``option``; ``options`` turns the metadata into ``argparse`` flags (the shell)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


def option(default: Any, help: str = "", *, choices: tuple | Callable[[], tuple] | None = None,
           parse: Callable[[str], Any] | None = None, nargs: str | None = None,
           metavar: str | None = None, recorded: bool = True) -> Any:
    """A dataclass field with its command line: ``help`` (also the field's documentation),
    ``choices`` (the values a flag accepts, or a function returning them when the flags
    are built, for an open registry; the configuration may accept more, such as a
    function), ``parse`` (text to value, when the field's type is not one ``int`` / ``float``
    / ``str`` / ``bool``), ``nargs="+"`` (several values: the command runs each);
    ``recorded=False`` for an option that changes where the work runs, not its numbers:
    it is left out of a run's recorded configuration (``recorded_config``), so a run
    resumes under another value."""
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "parse": parse, "nargs": nargs, "metavar": metavar,
        "recorded": recorded})


def recorded_config(config: Any) -> dict[str, Any]:
    """The fields of the configuration dataclass ``config`` that a run records (and
    compares when it resumes): all but those declared ``recorded=False``."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.metadata.get("recorded", True)}


def parse_agop_samples(text: str) -> int | str:
    """``"auto"``, or a count of rows."""
    return "auto" if text == "auto" else int(text)
