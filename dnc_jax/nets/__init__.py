"""Networks: the paper's MLP (Flax NNX), its training (optax) and per-layer analysis."""

from dnc_jax.nets.analysis import layer_agops, layer_analysis
from dnc_jax.nets.layer_agop import shared_layer_agops
from dnc_jax.nets.mlp import ACTIVATIONS, MLP, forward_from
from dnc_jax.nets.train import TrainConfig, train_mlp

__all__ = ["ACTIVATIONS", "MLP", "TrainConfig", "forward_from", "layer_agops", "layer_analysis",
           "shared_layer_agops", "train_mlp"]
