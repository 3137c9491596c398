"""The loop of every command: the steps of a run, resumed from its folder, each committed
by the caller before the next starts, a progress bar, and an early stop (to test
interruption)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

Step = TypeVar("Step")


def resumable_steps(steps: Iterable[Step], *, total: int, initial: int, desc: str,
                    progress: bool = True, stop_after: int | None = None,
                    counts: Callable[[Step], bool] = lambda step: True,
                    postfix: Callable[[Step], dict] | None = None) -> Iterator[Step]:
    """Yield each step of ``steps``; the caller's loop body records and commits it. The
    progress bar runs from ``initial`` (steps already in the folder) to ``total`` and
    advances once the body has run, so a step shows as done only when committed. After
    ``stop_after`` steps of this call that ``counts`` (default: every step), it stops.
    ``postfix`` gives the bar's figures for a step."""
    bar = tqdm(total=total, initial=initial, desc=desc, disable=not progress, file=sys.stderr)
    done = 0
    try:
        for step in steps:
            yield step
            bar.update(1)
            if postfix is not None:
                bar.set_postfix(**postfix(step))
            done += bool(counts(step))
            if stop_after is not None and done >= stop_after:
                return
    finally:
        bar.close()
