"""Model factories: plain ``nn.Module`` classes that the trainers stack or vmap."""

from iwlab.models.mlp import MLP, draw_dropout_masks, logistic_regression

__all__ = ["MLP", "draw_dropout_masks", "logistic_regression"]
