"""Per-layer AGOPs of the paper's trained MLP: dnc_jax (one shared backward pass, and the
per-layer vmap(jacrev) route) vs torch.func.vmap(jacrev) per layer, in one run.

    python benchmarks/layer_agop.py [--n 5000] [--epochs 60] [--batch 500]

Trains the paper's MLP (784-512x5-10, gain 0.1, Adam lr 1e-3) on the embedded MNIST
training split, then takes, for every hidden layer l, the AGOP of the sub-network from l up
with respect to its input at n samples (the embedded 5,000 images), with the same weights
and batch size in both frameworks. FLOPs per sample and layer: forward 2 P_l, C backward
passes 2 C P_l (input gradients only), J^T J 2 C d_l^2, with P_l the weights above l.
The shared pass (dnc_jax.nets.shared_layer_agops) does, per sample, one forward pass
(2 P), one backward pass through the hidden layers (2 C P_l for l >= 1) and the Grams
S_l (2 C w_l^2 per layer), then W_l^T S_l W_l once per layer.
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np
from _common import best_time, machine, matmul_gflops, save, table, torch_matmul_gflops

from dnc_jax.data import load_dataset, standardize
from dnc_jax.nets import TrainConfig, layer_agops, shared_layer_agops, train_mlp


def torch_layer_agops(layers, inputs, batch, device="cpu"):
    import torch
    from torch.func import jacrev, vmap

    def tensor(a):
        return None if a is None else torch.tensor(np.asarray(a), device=device)

    torch_layers = [(tensor(W), tensor(b)) for W, b in layers]

    def subnet(h, above):
        for i, (W, b) in enumerate(above):
            h = h @ W.T
            if b is not None:
                h = h + b
            if i < len(above) - 1:
                h = torch.relu(h)
        return h

    def run():
        out = []
        with torch.no_grad():
            for l, H in enumerate(inputs):
                Ht = tensor(H)
                jac = vmap(jacrev(lambda h, above=torch_layers[l:]: subnet(h, above)))
                total = torch.zeros(Ht.shape[1], Ht.shape[1], device=device)
                for start in range(0, Ht.shape[0], batch):
                    J = jac(Ht[start:start + batch]).reshape(-1, Ht.shape[1])
                    total += J.T @ J
                out.append(total / Ht.shape[0])
        if device != "cpu":
            torch.cuda.synchronize()
        return out

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--torch-device", default="cpu")
    args = parser.parse_args()
    peak, torch_peak = matmul_gflops(), torch_matmul_gflops(device=args.torch_device)

    X, y = load_dataset("mnist5k")
    Xall, _ = load_dataset("mnist5k", split="all", n=args.n)
    X, Xall = standardize(X, Xall)
    config = TrainConfig(epochs=args.epochs, lr=1e-3, measure_every=args.epochs + 1)
    model, history = train_mlp(X, y, config=config)
    layers = model.weights()
    print(f"trained: train accuracy {history[-1].train_accuracy:.4f} after {args.epochs} epochs")

    inputs = [jnp.asarray(Xall)]
    for W, b in layers[:-2]:
        pre = inputs[-1] @ W.T + (0.0 if b is None else b[None, :])
        inputs.append(jnp.maximum(pre, 0.0))
    C = layers[-1][0].shape[0]
    flops = 0.0
    for l, H in enumerate(inputs):
        params_above = sum(W.shape[0] * W.shape[1] for W, _ in layers[l:])
        flops += H.shape[0] * (2 * params_above * (1 + C) + 2 * C * H.shape[1] ** 2)

    n = inputs[0].shape[0]
    hidden = layers[:-1]
    flops_shared = n * (2 * sum(W.size for W, _ in layers)
                        + 2 * C * sum(W.size for W, _ in hidden[1:])
                        + 2 * C * sum(W.shape[0] ** 2 for W, _ in hidden))
    flops_shared += sum(2 * W.shape[0] ** 2 * W.shape[1] + 2 * W.shape[0] * W.shape[1] ** 2
                        for W, _ in hidden)
    shared = shared_layer_agops(layers, inputs[0], batch_size=args.batch)
    t_shared = best_time(lambda: shared_layer_agops(layers, inputs[0], batch_size=args.batch))
    ours = layer_agops(layers, inputs, batch_size=args.batch)
    t_ours = best_time(lambda: layer_agops(layers, inputs, batch_size=args.batch))
    run = torch_layer_agops(layers, inputs, args.batch, args.torch_device)
    theirs = run()
    t_torch = best_time(run, repeats=1, warmup=0)
    errors = [float(np.linalg.norm(np.asarray(a) - b.cpu().numpy()) / np.linalg.norm(b.cpu().numpy()))
              for a, b in zip(ours, theirs, strict=True)]
    shared_errors = [float(np.linalg.norm(np.asarray(a) - b.cpu().numpy())
                           / np.linalg.norm(b.cpu().numpy())) for a, b in zip(shared, theirs,
                                                                              strict=True)]
    rows = [{"method": "dnc_jax shared pass", "n": args.n, "layers": len(inputs), "s": t_shared,
             "speed-up vs torch": t_torch / t_shared, "GFLOP": flops_shared / 1e9,
             "GFLOP/s": flops_shared / t_shared / 1e9,
             "% of matmul": 100 * flops_shared / t_shared / 1e9 / peak,
             "max rel diff vs torch": max(shared_errors)},
            {"method": "dnc_jax vmap(jacrev) per layer", "n": args.n, "layers": len(inputs),
             "s": t_ours, "speed-up vs torch": t_torch / t_ours, "GFLOP": flops / 1e9,
             "GFLOP/s": flops / t_ours / 1e9, "% of matmul": 100 * flops / t_ours / 1e9 / peak,
             "max rel diff vs torch": max(errors)},
            {"method": "torch.func vmap(jacrev) per layer", "n": args.n, "layers": len(inputs),
             "s": t_torch, "speed-up vs torch": 1.0, "GFLOP": flops / 1e9,
             "GFLOP/s": flops / t_torch / 1e9,
             "% of matmul": 100 * flops / t_torch / 1e9 / torch_peak}]
    print(f"machine: {machine()}")
    print(f"float32 matmul (best square): JAX {peak:.1f} GFLOP/s, PyTorch {torch_peak:.1f} GFLOP/s")
    print(table(rows, list(rows[0])))
    print("saved", save("layer_agop", {"machine": machine(), "matmul_gflops": peak,
                                       "torch_matmul_gflops": torch_peak, "flops": flops,
                                       "flops_shared": flops_shared, "rows": rows,
                                       "per_layer_rel_diff": errors,
                                       "shared_per_layer_rel_diff": shared_errors}))


if __name__ == "__main__":
    main()
