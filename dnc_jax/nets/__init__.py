"""Networks: the paper's MLP (Flax NNX), optionally under a ResNet-18 / VGG-11 backbone
(``Network``), its training (optax) and per-layer analysis."""

from dnc_jax.nets.analysis import layer_agops, layer_analysis, readable_layers
from dnc_jax.nets.layer_agop import shared_layer_agops
from dnc_jax.nets.measurements import EpochRecord, HeadLayerRecord
from dnc_jax.nets.mlp import ACTIVATIONS, MLP, forward_from
from dnc_jax.nets.network import Network
from dnc_jax.nets.probes import LayerProbe, probe, select_layers
from dnc_jax.nets.train import TrainConfig, train_mlp

__all__ = ["ACTIVATIONS", "MLP", "EpochRecord", "HeadLayerRecord", "LayerProbe", "Network",
           "TrainConfig", "forward_from", "layer_agops", "layer_analysis", "probe",
           "readable_layers", "select_layers", "shared_layer_agops", "train_mlp"]
