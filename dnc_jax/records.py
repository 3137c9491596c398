"""Run records: atomic writes, environment info, and resumable per-step checkpoints.

A run directory holds ``results.json`` (config, environment, completed steps) and one
``state-K.npz`` (the arrays the next step needs). Every file is written to a temporary
name and moved into place (``os.replace`` is atomic), state before results, and the old
state is removed only after the new results are in place: a kill at any moment leaves a
consistent pair.

In a run of several processes (``jax.distributed``) each process keeps its own state,
``state-K.process-I-of-P.npz``, and process 0 writes the results once every process has
saved its state; ``out_dir`` must be a folder all processes share.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import tempfile
import zipfile
from importlib import metadata

import jax
import numpy as np


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_npz(path: str, what: str):
    """``np.load`` of an ``.npz`` (no pickles), or ``ValueError`` naming ``path`` and
    ``what`` it should hold when the file is not a zip of ``.npy`` arrays."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz archive (a zip of .npy arrays, as "
                         f"numpy.savez writes); expected {what}.")
    return np.load(path, allow_pickle=False)


def atomic_write_json(path: str, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (``atomic_write_bytes``)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def atomic_write_csv(path: str, rows: list[dict]) -> None:
    """Rows of flat dicts to CSV (columns: the union of keys, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def atomic_save_npz(path: str, **arrays) -> None:
    """Save the non-``None`` ``arrays`` to an ``.npz`` at ``path`` atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{k: v for k, v in arrays.items() if v is not None})
    atomic_write_bytes(path, buf.getvalue())


def environment() -> dict:
    """Versions and device of this process, for the run record."""
    import jax

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("dnc-jax", "jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    device = jax.devices()[0]
    return {
        "versions": versions,
        "device": {"platform": device.platform, "kind": device.device_kind,
                   "count": jax.device_count()},
        "machine": platform.machine(),
    }


def ensure_writable(out_dir: str) -> None:
    """Create ``out_dir`` if needed and check that files can be written there, or raise a
    one-line ``ValueError`` (before any computation is spent)."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"cannot write to the output folder {out_dir!r}: {err.strerror}.") from None


def read_results(out_dir: str) -> dict:
    """The ``results.json`` of the run in ``out_dir``, as JSON; a ``ValueError`` naming
    the file and what to do when it is damaged."""
    path = os.path.join(out_dir, "results.json")
    try:
        with open(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}); the file is damaged (a run writes it "
            "atomically, so something else cut it). Delete that folder to start the run "
            "over, or pass another --out.") from None


class RunDirectory:
    """A resumable run: ``results.json`` + the latest ``state-K.npz`` in ``out_dir``.

    ``results`` is ``{"config": ..., "environment": ..., <steps_key>: [...]}``.
    """

    def __init__(self, out_dir: str, config: dict, steps_key: str):
        self.out_dir = out_dir
        self.config = config
        self.steps_key = steps_key
        self.results_path = os.path.join(out_dir, "results.json")

    def resume(self) -> tuple[dict, dict | None]:
        """Return ``(results, state arrays or None)``; fresh results if nothing is saved.

        Raises ``ValueError`` if ``out_dir`` holds a run with a different config.
        """
        if not os.path.exists(self.results_path):
            return {"config": self.config, "environment": environment(), self.steps_key: []}, None
        results = read_results(self.out_dir)
        if results.get("config") != json.loads(json.dumps(self.config)):
            raise ValueError(
                f"{self.out_dir} holds a run with a different configuration; pass another --out "
                "or delete it."
            )
        step = len(results[self.steps_key])
        state_path = self._state_path(step)
        found = step > 0 and os.path.exists(state_path)
        if jax.process_count() > 1:  # resume only where every process finds its state
            from jax.experimental import multihost_utils

            found = bool(np.all(multihost_utils.process_allgather(np.int32(found))))
        if not found:
            return {**results, self.steps_key: []}, None
        with load_npz(state_path, f"the checkpoint of step {step}: delete it to redo "
                      "that step") as data:
            return results, {k: data[k] for k in data.files}

    def commit(self, results: dict, state: dict | None) -> None:
        """Persist one more completed step: state first, then results, then clean up.

        With several processes every process calls this with its own state; process 0
        writes the results after all states are saved, and the others wait for its clean-up.
        """
        step = len(results[self.steps_key])
        if state is not None:
            atomic_save_npz(self._state_path(step), **state)
        several = jax.process_count() > 1
        if several:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(f"states of step {step} saved")
        if jax.process_index() == 0:
            atomic_write_json(self.results_path, results)
            for name in os.listdir(self.out_dir):
                if name.startswith("state-") and not name.startswith(f"state-{step}."):
                    os.unlink(os.path.join(self.out_dir, name))
        if several:
            multihost_utils.sync_global_devices(f"step {step} committed")

    def _state_path(self, step: int) -> str:
        if jax.process_count() == 1:
            return os.path.join(self.out_dir, f"state-{step}.npz")
        return os.path.join(self.out_dir, f"state-{step}.process-{jax.process_index()}-of-"
                                          f"{jax.process_count()}.npz")


def flatten_metrics(prefix: str, metrics: dict) -> dict:
    """``{"nc1": v}`` -> ``{"<prefix>_nc1": v}`` for CSV columns."""
    return {f"{prefix}_{k}": v for k, v in metrics.items()}
