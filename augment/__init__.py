"""Pure batched ops, the Augment layer, named policies, MixUp/CutMix and host adapters."""

from augpipe.augment.host import albumentations_batch
from augpipe.augment.layer import Augment, check_strength
from augpipe.augment.mix import MixUpCutMix, sample_beta
from augpipe.augment.policies import OPS, Policy, get_policy, list_ops, list_policies, register_policy

__all__ = [
    "OPS",
    "Augment",
    "MixUpCutMix",
    "Policy",
    "albumentations_batch",
    "check_strength",
    "get_policy",
    "list_ops",
    "list_policies",
    "register_policy",
    "sample_beta",
]


# Names that moved off this face; the old spelling still works, with a warning.
_MOVED = {"check_unit": ("augpipe.validation", "augpipe.validation.check_unit")}


def __getattr__(name):
    if name in _MOVED:
        import importlib
        import warnings

        module, new = _MOVED[name]
        warnings.warn(f"augpipe.augment.{name} is deprecated: use {new}.", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'augpipe.augment' has no attribute {name!r}")
