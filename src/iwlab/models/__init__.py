"""Model factories: plain ``nn.Module`` classes that the trainers stack or vmap."""

from iwlab.models.cnn import ByrdLiptonCNN, ResNet, init_from_generator_
from iwlab.models.lm import LSTMLanguageModel
from iwlab.models.mlp import MLP, draw_dropout_masks, logistic_regression
from iwlab.models.resnet_cifar import NormedLinear, ResNet32
from iwlab.models.vgg import CifarVGG, MnistVGG

__all__ = [
    "MLP",
    "ByrdLiptonCNN",
    "CifarVGG",
    "LSTMLanguageModel",
    "MnistVGG",
    "NormedLinear",
    "ResNet",
    "ResNet32",
    "draw_dropout_masks",
    "init_from_generator_",
    "logistic_regression",
]
