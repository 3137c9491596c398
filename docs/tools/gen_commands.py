"""Write docs/commands.md from the command's own parser (``python docs/tools/gen_commands.py``);
``tests/test_docs.py`` checks that the page is what this script writes."""

from __future__ import annotations

import os
import pathlib

PAGE = pathlib.Path(__file__).resolve().parents[1] / "commands.md"


def render() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; fix it
    from dnc_jax.cli import build_parser, preset_defaults

    parser = build_parser(preset_defaults([]))
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    parts = ["# Commands\n",
             "Generated from the parser by `python docs/tools/gen_commands.py`.\n",
             "```text\n" + parser.format_help().rstrip() + "\n```\n"]
    for name, sub in subparsers.choices.items():
        parts.append(f"## `dnc-jax {name}`\n")
        parts.append("```text\n" + sub.format_help().rstrip() + "\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    PAGE.write_text(render())
    print(f"wrote {PAGE}")
