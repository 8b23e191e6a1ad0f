"""Pure tensor functions: importance-weighted losses (and, later, other stateless ops)."""

from iwlab.functional.losses import Normalization as Normalization
from iwlab.functional.losses import Reduction as Reduction
from iwlab.functional.losses import check_weights as check_weights
from iwlab.functional.losses import class_to_sample_weight as class_to_sample_weight
from iwlab.functional.losses import weighted_binary_cross_entropy as weighted_binary_cross_entropy
from iwlab.functional.losses import weighted_cross_entropy as weighted_cross_entropy
