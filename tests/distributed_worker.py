"""One process of the two-process Deep RFM tests (``test_distributed.py``): joins the others
through ``jax.distributed`` on localhost.

Args ``coordinator_port process_id num_processes``: puts only its own rows on its devices,
runs one layer, gathers the layer's output features, and (process 0) prints the record and
the features' shape and sum as JSON. With ``out stop_after`` added: the command's
``run_deep_rfm`` into ``out`` (resuming; ``stop_after`` 0: to the end), each process
printing how many training images it built, and process 0 the layers."""

import json
import sys

import jax

jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
port, pid, nproc = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
jax.distributed.initialize(f"localhost:{port}", num_processes=nproc, process_id=pid)

import numpy as np  # noqa: E402
from worker_data import layer_config, run_options, small_digits  # noqa: E402

if len(sys.argv) > 4:
    import dnc_jax.data.augmented  # noqa: E402
    from dnc_jax.experiments.deep_rfm import run_deep_rfm  # noqa: E402

    built = []
    shift = dnc_jax.data.augmented.shift_image
    dnc_jax.data.augmented.shift_image = lambda images, dy, dx: (built.append(len(images)),
                                                                 shift(images, dy, dx))[1]
    results = run_deep_rfm(sys.argv[4], stop_after=int(sys.argv[5]) or None, progress=False,
                           **run_options())
    print(f"BUILT {pid} {sum(built)}")
    if pid == 0:
        print("LAYERS " + json.dumps(results.to_json()["layers"]))
    sys.exit(0)

from dnc_jax.deep_rfm_model import DeepRFMConfig, deep_rfm_layers  # noqa: E402
from dnc_jax.sharding import Rows, data_mesh, local_row_range, padded_rows, put_local_rows  # noqa: E402

X, y = small_digits()
mesh = data_mesh("all")
start, stop = local_row_range(len(y), mesh)
padded = np.zeros((padded_rows(len(y), mesh), X.shape[1]), np.float32)
padded[: len(y)] = X
rows = Rows(put_local_rows(padded[start:stop], mesh, len(y)), len(y))  # only this process's rows
record, state = next(deep_rfm_layers(rows, y, config=DeepRFMConfig(**layer_config()), mesh=mesh))
assert mesh.devices.size == 2 * nproc and len(state.X_train.data.addressable_shards) == 2
features = state.to_host()["X_train"]  # gathered from both processes (a collective)
if pid == 0:
    print("RECORD " + json.dumps(record.to_json()))
    print("FEATURES " + json.dumps([list(features.shape), float(features.sum())]))
