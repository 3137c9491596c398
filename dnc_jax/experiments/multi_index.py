"""The resumable multi-index sweep behind ``dnc-jax multi-index``: one RFM run per
training-set size ``n``, each committed when it completes."""

from __future__ import annotations

import dataclasses
import os
from typing import NamedTuple

from dnc_jax.figures import plot_multi_index
from dnc_jax.followups.multi_index import MultiIndexConfig, MultiIndexSize, multi_index_rfm
from dnc_jax.option_fields import recorded_config
from dnc_jax.records import RunDirectory, atomic_write_csv, ensure_writable
from dnc_jax.run_loop import resumable_steps

CSV_KEYS = ("step", "relative_error", "test_mse", "subspace_distance", "leading_distance",
            "captured", "random_baseline")


class MultiIndexRun(NamedTuple):
    """A ``multi-index`` run folder's ``results.json``: the recorded ``config`` (JSON),
    the ``environment`` and one ``MultiIndexSize`` per completed size."""

    config: dict
    environment: dict
    sizes: list[MultiIndexSize]

    def to_json(self) -> dict:
        """The run as ``results.json`` holds it."""
        return {"config": self.config, "environment": self.environment,
                "sizes": [e.to_json() for e in self.sizes]}

    @classmethod
    def from_json(cls, data: dict) -> MultiIndexRun:
        """The run from its ``to_json`` form."""
        return cls(data["config"], data["environment"],
                   [MultiIndexSize.from_json(e) for e in data["sizes"]])


def multi_index_table(sizes: list[MultiIndexSize]) -> str:
    """Per ``n``: step 0 (the AGOP of one kernel ridge fit) and, after RFM steps, the last
    step: relative test error and distances."""
    lines = [f"{'n':>7} {'step':>4} {'rel. error':>10} {'top-r dist':>10} {'leading':>8} "
             f"{'captured':>8}"]
    for entry in sizes:
        records = entry.records
        for r in records[:1] + records[1:][-1:]:
            lines.append(f"{entry.n:>7} {r.step:>4} {r.relative_error:>10.4f} "
                         f"{r.subspace_distance:>10.4f} {r.leading_distance:>8.4f} "
                         f"{r.captured:>8.4f}")
    return "\n".join(lines)


def run_multi_index(out: str, *, config: MultiIndexConfig = MultiIndexConfig(),
                    sizes: tuple[int, ...] | None = None, progress: bool = True
                    ) -> MultiIndexRun:
    """RFM on the multi-index task for each ``n`` in ``sizes`` (default ``(config.n,)``),
    into ``out`` (resuming by size); returns the run (``MultiIndexRun``: its ``to_json()``
    is ``out/results.json``). A shell call."""
    sizes = tuple(int(n) for n in (sizes or (config.n,)))
    if any(n < 1 for n in sizes):
        raise ValueError(f"every n must be >= 1; got {sizes}.")
    ensure_writable(out)
    run_config = {"experiment": "multi_index", **recorded_config(config), "sizes": list(sizes)}
    run = RunDirectory(out, run_config, "sizes")
    saved, _ = run.resume()
    results = MultiIndexRun.from_json(saved)
    done = {entry.n for entry in results.sizes}
    for n in resumable_steps([n for n in sizes if n not in done], total=len(sizes),
                             initial=len(done & set(sizes)), desc="multi-index RFM",
                             progress=progress):
        results.sizes.append(MultiIndexSize(n, multi_index_rfm(dataclasses.replace(config, n=n))))
        run.commit(results.to_json(), None)
        atomic_write_csv(os.path.join(out, "steps.csv"),
                         [{"n": e.n, **{k: getattr(r, k) for k in CSV_KEYS}}
                          for e in results.sizes for r in e.records])
        plot_multi_index(results.sizes, os.path.join(out, "multi_index.png"),
                         f"AGOP vs hidden subspace ({config.inputs} inputs, {config.subspace} U, "
                         f"h = {config.target}, d = {config.d}, r = {config.r})")
    return results
