"""Policies by name: the `Policy` base class, registration, lookup and serialization.

A policy turns one `strength` in [0, 1] into per-image decisions and
parameters (`sample`), then applies them (`apply`). Sampling is the only
place with randomness, and it uses stateless generators keyed by an explicit
seed, so `apply(images, sample(...))` is deterministic.

Example:

>>> get_policy("mnist").name
'mnist'
>>> get_policy("mnst")
Traceback (most recent call last):
...
ValueError: Unknown policy 'mnst'. Valid policies: augmix, cifar, mnist, none, ops, randaugment, randaugment_digits, trivialaugment. Did you mean 'mnist'?
"""

from __future__ import annotations

from typing import Dict

import tensorflow as tf

from augpipe.augment import ops
from augpipe.validation import did_you_mean


class Policy:
    """Base class: `sample` decides and draws, `apply` is deterministic.

    `apply_static` is `apply` with static shapes only (the path XLA can
    compile); it must give the same images from the same parameters.
    """

    name = "base"

    def sample(self, batch_size, height, width, strength, seed) -> dict:
        raise NotImplementedError

    def apply(self, images, params) -> tf.Tensor:
        raise NotImplementedError

    def apply_static(self, images, params) -> tf.Tensor:
        """`apply` with static shapes only, for XLA. The default is `apply`
        itself: override it when `apply` gathers data-dependent subsets."""
        return self.apply(images, params)

    def get_config(self) -> dict:
        return {}

    def __call__(self, images, strength, seed, static: bool = False):
        height, width = ops.static_or_dynamic(images, 1), ops.static_or_dynamic(images, 2)
        params = self.sample(tf.shape(images)[0], height, width, strength, seed)
        return self.apply_static(images, params) if static else self.apply(images, params)


_REGISTRY: Dict[str, type] = {}


def register_policy(name: str):
    """Class decorator that registers a `Policy` subclass under `name`."""

    def decorator(cls):
        if name in _REGISTRY:
            raise ValueError(f"A policy named {name!r} is already registered.")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def list_policies() -> list:
    """The names of all registered policies."""
    return sorted(_REGISTRY)


def get_policy(policy, **config) -> Policy:
    """Returns a policy instance from a name, a `{"name", "config"}` dict, or a `Policy`.

    Raises:
        ValueError: for an unknown name; the message lists the valid names and
            suggests the closest one.
    """
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, dict):
        return get_policy(policy.get("name"), **{**policy.get("config", {}), **config})
    if not isinstance(policy, str) or policy not in _REGISTRY:
        raise ValueError(
            f"Unknown policy {policy!r}. Valid policies: {', '.join(list_policies())}."
            f"{did_you_mean(policy, _REGISTRY)}"
        )
    return _REGISTRY[policy](**config)


def serialize_policy(policy: Policy) -> dict:
    """`{"name", "config"}`, which `get_policy` turns back into an equal policy."""
    return {"name": policy.name, "config": policy.get_config()}
