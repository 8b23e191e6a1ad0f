"""iwlab: importance weighting and importance sampling for deep learning.

Example:
    >>> import torch, iwlab
    >>> from iwlab.functional import weighted_cross_entropy
    >>> logits, y = torch.randn(8, 3), torch.randint(0, 3, (8,))
    >>> loss = weighted_cross_entropy(logits, y, class_weight=torch.tensor([1.0, 0.5, 0.25]))
"""

__version__ = "0.1.0"
