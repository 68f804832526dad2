"""Loss functions on logits (B, C, *S) and labels (B, *S); no modality knowledge (docs/contracts.md).

Classification and distillation losses, Local POD, entropy pseudo-labelling and the EWC/RW/PI
parameter regularisers. Described in docs/protocol-2d-losses.md#losses.
"""

from css.losses.classification import (bce_with_ignore, cross_entropy, labelled_cross_entropy, separate_classifier_ce,
                                       unbiased_ce)
from css.losses.distillation import feature_mse, icarl_distillation, kd, lgkd, soft_kd, unbiased_kd
from css.losses.pod import local_pod
from css.losses.pseudo import (all_reduce_histogram, entropy_histogram, entropy_upper_bound, entropy_score,
                               pseudo_label, thresholds_from_histogram)
from css.losses.regularizers import EWC, PI, RW, build_regularizer
from css.losses.regularizer_base import PER_TENSOR

__all__ = [
    "cross_entropy",
    "labelled_cross_entropy",
    "unbiased_ce",
    "separate_classifier_ce",
    "bce_with_ignore",
    "kd",
    "soft_kd",
    "unbiased_kd",
    "lgkd",
    "icarl_distillation",
    "feature_mse",
    "local_pod",
    "entropy_score",
    "entropy_histogram",
    "entropy_upper_bound",
    "thresholds_from_histogram",
    "pseudo_label",
    "all_reduce_histogram",
    "EWC",
    "PER_TENSOR",
    "RW",
    "PI",
    "build_regularizer",
]
