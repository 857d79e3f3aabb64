"""Pure batched ops, the Augment layer, named policies, MixUp/CutMix and host adapters."""

from augpipe.augment.host import albumentations_batch
from augpipe.augment.layer import Augment, check_strength, check_unit
from augpipe.augment.mix import MixUpCutMix, sample_beta
from augpipe.augment.policies import OPS, Policy, get_policy, list_ops, list_policies, register_policy

__all__ = [
    "OPS",
    "Augment",
    "MixUpCutMix",
    "Policy",
    "albumentations_batch",
    "check_strength",
    "check_unit",
    "get_policy",
    "list_ops",
    "list_policies",
    "register_policy",
    "sample_beta",
]
