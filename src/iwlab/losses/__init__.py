"""``nn.Module`` wrappers around :mod:`iwlab.functional.losses`.

The modules only hold hyperparameters (``class_weight`` or ``pos_weight`` as a buffer, so it follows
``.to()`` and is saved in ``state_dict``; ``normalization``; ``reduction``; for cross-entropy
``ignore_index``, ``label_smoothing`` and ``class_dim``; for the focal losses ``gamma``) and call the
functional versions (:mod:`iwlab.functional.losses_focal` for :class:`FocalLoss` and :class:`BinaryFocalLoss`).
See :mod:`iwlab.functional.losses` for the semantics, in particular why the default
``normalization="batch_size"`` differs from PyTorch's weighted mean, the precision rules
(float16/bfloat16 logits give a float32 loss) and what ``validate=False`` skips.
"""

from iwlab.losses.focal import BinaryFocalLoss, FocalLoss
from iwlab.losses.remedies import BinaryPolyTailedLoss, LDAMLoss, LogitAdjustedLoss, PolyTailedLoss, VSLoss
from iwlab.losses.weighted import (
    WeightedBCEWithLogitsLoss,
    WeightedCrossEntropyLoss,
    WeightedMultiLabelBCEWithLogitsLoss,
)

__all__ = [
    "BinaryFocalLoss",
    "BinaryPolyTailedLoss",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "PolyTailedLoss",
    "VSLoss",
    "WeightedBCEWithLogitsLoss",
    "WeightedCrossEntropyLoss",
    "WeightedMultiLabelBCEWithLogitsLoss",
]
