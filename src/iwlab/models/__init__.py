"""Model factories: plain ``nn.Module`` classes that the trainers stack or vmap."""

from iwlab.models.cnn import ByrdLiptonCNN, ResNet, init_from_generator_
from iwlab.models.mlp import MLP, draw_dropout_masks, logistic_regression

__all__ = ["MLP", "ByrdLiptonCNN", "ResNet", "draw_dropout_masks", "init_from_generator_", "logistic_regression"]
