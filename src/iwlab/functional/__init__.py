"""Pure tensor functions: importance-weighted losses, weighting, sampling and metrics, and argument checks.

Public modules: :mod:`~iwlab.functional.losses` (weighted cross-entropy, IW-ERM),
:mod:`~iwlab.functional.checks` (argument checks shared by every layer), :mod:`~iwlab.functional.weighting`,
:mod:`~iwlab.functional.sampling`, :mod:`~iwlab.functional.metrics`, :mod:`~iwlab.functional.agreement`
(Byrd & Lipton's agreement with a permutation null), :mod:`~iwlab.functional.label_shift`
(label-shift estimators: BBSE, RLLS, MLLS, prior adjustment, bootstrap intervals; it re-exports
:mod:`~iwlab.functional.calibration`, :mod:`~iwlab.functional.label_shift_em` and
:mod:`~iwlab.functional.prob_checks`). ``_scaling`` (exact power-of-two weight rescaling) and ``_validation``
(the losses' argument checks) are internal.
"""

from iwlab.functional.checks import check_weights as check_weights
from iwlab.functional.losses import Normalization as Normalization
from iwlab.functional.losses import Reduction as Reduction
from iwlab.functional.losses import class_to_sample_weight as class_to_sample_weight
from iwlab.functional.losses import weighted_binary_cross_entropy as weighted_binary_cross_entropy
from iwlab.functional.losses import weighted_cross_entropy as weighted_cross_entropy
from iwlab.functional.losses import (
    weighted_multilabel_binary_cross_entropy as weighted_multilabel_binary_cross_entropy,
)
from iwlab.functional.losses_focal import binary_focal_loss as binary_focal_loss
from iwlab.functional.losses_focal import focal_loss as focal_loss
from iwlab.functional.losses_margin import binary_poly_tailed_loss as binary_poly_tailed_loss
from iwlab.functional.losses_margin import poly_tailed_loss as poly_tailed_loss
from iwlab.functional.losses_remedies import ldam_loss as ldam_loss
from iwlab.functional.losses_remedies import ldam_margins as ldam_margins
from iwlab.functional.losses_remedies import logit_adjust as logit_adjust
from iwlab.functional.losses_remedies import logit_adjusted_loss as logit_adjusted_loss
from iwlab.functional.losses_remedies import vs_loss as vs_loss
from iwlab.functional.weighting import check_class_counts as check_class_counts
from iwlab.functional.weighting import class_balanced_weights as class_balanced_weights
