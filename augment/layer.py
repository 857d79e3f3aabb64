"""The `Augment` Keras layer: uint8 in, float32 [0, 1] out, strength in a variable."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from augpipe.augment import ops, rng
from augpipe.augment.policies import get_policy, serialize_policy
from augpipe.validation import check_unit


def check_strength(strength) -> float:
    """Validates a strength value and returns it as a float."""
    return check_unit("strength", strength)


PLACEMENTS = ("device", "host")
SHAPES = ("auto", "dynamic", "static")
# Keyword arguments that belong to keras.layers.Layer; every other one goes to the policy.
_LAYER_ARGUMENTS = frozenset({"name", "dtype", "trainable", "autocast", "input_shape", "input_dim", "batch_size"})


@keras.saving.register_keras_serializable(package="augpipe")
class Augment(keras.layers.Layer):
    """Per-image augmentation whose strength is a variable.

    Input is uint8 `[0, 255]` or float `[0, 1]`, shape `(B, H, W, C)`. Output
    is in `[0, 1]`, float32 (or the compute dtype of a mixed precision
    policy). With `training=False` the layer only converts.

    `layer.strength` is a non-trainable variable in `[0, 1]`. Assigning it
    (for example from a callback between epochs) changes the augmentation at
    once, with no retrace and no rebuild of the dataset; it is saved with the
    weights, and so is the random generator's state, so a restored checkpoint
    continues with the same random stream.

    Randomness comes only from the layer's own seeded counter, read and
    advanced atomically (`RngReadAndSkip`), so the same seed and input give
    the same output, and parallel `tf.data` calls never share a draw.

    The same object works inside a model (device side) and as the
    `host_augment` of `pipelines.build_pipeline` (host side).

    Two paths give the same augmentation (same decisions and parameters,
    pixels within float rounding), chosen with `shapes`: the `"dynamic"` path computes only the
    images that chose an op (gathered subsets, data-dependent shapes, and
    `ImageProjectiveTransformV3` for the warp), the fastest on a CPU; the
    `"static"` path runs every image through every chosen op's arithmetic
    with identity parameters where it was not chosen, and warps with a
    gather-based bilinear sampler, so every shape is static and XLA
    compiles it. `shapes="auto"` (the default) takes the static path when the
    layer is traced inside an XLA-compiled function (`jit_compile=True`, or
    Keras' `"auto"` on a GPU) and the dynamic path otherwise. The layer
    sets `supports_jit = True`: a model that contains it keeps XLA.

    Under a mixed precision policy (`mixed_float16`, `mixed_bfloat16`) the
    augmentation is computed in float32, the strength stays a float32
    variable, and the output is handed on in the layer's compute dtype.

    Args:
        policy: a registered policy name (see `augment.list_policies()`), a
            `Policy`, or a `{"name", "config"}` dict.
        **kwargs: Keras layer arguments (`name`, `dtype`, ...); any other
            keyword is an option of the named policy, e.g.
            `Augment("ops", ops=["rotate", "noise"])` or
            `Augment("randaugment", num_ops=3)`.
        strength: initial strength in `[0, 1]`.
        placement: `"device"` (augment inside the model) or `"host"`
            (augment in the tf.data pipeline: pass the same layer as
            `build_pipeline(..., host_augment=layer)`; inside the model it then
            only converts to float). Host-augmented batches stay uint8, like
            validation and test batches, so one model serves all three and
            switching placement changes nothing else in a script.
        seed: an int; None picks a random one (recorded in `get_config()`).
        shapes: `"auto"`, `"dynamic"` or `"static"`: which path (see above).

    Example:

    >>> import numpy as np
    >>> layer = Augment("mnist", strength=0.5, seed=1)
    >>> x = np.zeros((2, 28, 28, 1), np.uint8)
    >>> layer(x, training=True).shape
    TensorShape([2, 28, 28, 1])
    >>> layer.set_strength(0.8)
    """

    def __init__(self, policy="mnist", strength=0.5, seed=None, placement: str = "device", shapes: str = "auto",
                 **kwargs):
        policy_options = {key: kwargs.pop(key) for key in list(kwargs) if key not in _LAYER_ARGUMENTS}
        if placement not in PLACEMENTS:
            raise ValueError(f"Received: placement={placement!r}. Expected one of: {', '.join(PLACEMENTS)}.")
        if shapes not in SHAPES:
            raise ValueError(f"Received: shapes={shapes!r}. Expected one of: {', '.join(SHAPES)}.")
        self.placement = placement
        self.shapes = shapes
        # The augmentation runs in float32 whatever the dtype policy, and
        # the strength is read as float32: no autocasting of inputs or
        # variables. The output is cast to the compute dtype at the end.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        # Under XLA the static-shape path runs (path="auto").
        self.supports_jit = True
        if policy_options and not isinstance(policy, str):
            raise ValueError(
                f"Received policy options {sorted(policy_options)} with a policy given as {type(policy).__name__}. "
                "Pass options only with a policy name, e.g. Augment('ops', ops=['rotate'])."
            )
        self.policy = get_policy(policy, **policy_options)
        initial = check_strength(strength)
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little") >> 1
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"Received: seed={seed!r}. Expected an int or None.")
        self.seed = seed
        self.strength = self.add_weight(
            name="strength",
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(initial),
            trainable=False,
            aggregation="only_first_replica",
            # Keras casts float variables read inside a mixed precision
            # layer's call to the compute dtype (float16: 0.7 -> 0.7002);
            # the strength stays exact.
            autocast=False,
        )
        self.rng_state = self.add_weight(
            name="rng_state",
            shape=(3,),
            dtype="int64",
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
        )
        self.built = True

    def set_strength(self, value) -> None:
        """Validates and assigns the strength."""
        self.strength.assign(check_strength(value))

    def next_seed(self) -> tf.Tensor:
        """A fresh `(2,)` int64 seed: the layer seed and a counter advanced atomically."""
        counter = rng.read_and_skip(self.rng_state)
        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            # Every replica reads the same counter; the replica id keeps
            # their draws apart.
            counter = counter * 1024 + tf.cast(replica.replica_id_in_sync_group, tf.int64)
        return tf.stack([tf.constant(self.seed, tf.int64), counter])

    def call(self, inputs, training=None):
        images = self._checked_float(inputs)
        if training and self.placement == "device":
            images = self._augment(images, self.next_seed(), static=self._static_path())
        # Host placement: the pipeline augmented the batch already.
        return tf.cast(images, self.compute_dtype)

    def _static_path(self) -> bool:
        if self.shapes == "auto":
            return ops.tracing_under_xla()
        return self.shapes == "static"

    def keyed_batch(self, images, labels, key):
        """Host placement inside `build_pipeline`: the batch's draws keyed by `key = (epoch, batch index)`.

        Parallel `map` calls then give the same images on every run, in any
        thread order, and a resumed run redraws exactly (no counter to
        restore). Device placement (`call`) uses the counter in the weights.
        """
        is_uint8 = tf.convert_to_tensor(images).dtype == tf.uint8
        augmented = self._augment(self._checked_float(images), rng.keyed_seed(self.seed, rng.Stream.POLICY, key),
                                  static=self.shapes == "static")
        if is_uint8:
            # Back to uint8, so training batches have the dtype and range of validation and test batches
            # (and cross to the device at a quarter of float32's bytes).
            augmented = tf.cast(tf.round(tf.clip_by_value(augmented, 0.0, 1.0) * 255.0), tf.uint8)
        return augmented, labels

    def keyed_ops(self, images, key):
        """The ops each image of `keyed_batch(images, labels, key)` takes, as `[[name, ...], ...]`; None for a
        policy that does not choose ops per image (augmix, none)."""
        from augpipe.augment.engine import GatedPolicy

        if not isinstance(self.policy, GatedPolicy):
            return None
        images = tf.convert_to_tensor(images)
        seed = rng.keyed_seed(self.seed, rng.Stream.POLICY, tf.convert_to_tensor(key, tf.int64))
        params = self.policy.sample(tf.shape(images)[0], images.shape[1], images.shape[2],
                                    tf.convert_to_tensor(self.strength.value), seed)
        chosen = {name: np.asarray(params[name]["gate"]) for name in self.policy.ops_config}
        return [[name for name in self.policy.ops_config if chosen[name][i]] for i in range(int(images.shape[0]))]

    def _augment(self, images, seed, static=False):
        strength = tf.convert_to_tensor(self.strength.value)
        # No branch on strength: at 0 no image is selected for any op, which
        # is the exact identity, and a branch op costs more per batch than
        # the empty selections do.
        if static:
            return self.policy(images, strength, seed, static=True)
        # A policy that overrides `__call__(images, strength, seed)` keeps working off XLA.
        return self.policy(images, strength, seed)

    def _checked_float(self, inputs):
        images = tf.convert_to_tensor(inputs)
        if images.shape.rank is not None and images.shape.rank != 4:
            raise ValueError(
                f"Augment expects a batch of images (B, H, W, C). Received a tensor of "
                f"shape {tuple(images.shape)}. Add a batch axis (e.g. `x[None]`) or a "
                "channel axis (e.g. `x[..., None]`)."
            )
        if images.dtype != tf.uint8 and not images.dtype.is_floating:
            raise ValueError(
                f"Augment expects uint8 images in [0, 255] or float images in [0, 1]. Received dtype "
                f"{images.dtype.name}. Cast to uint8 (`tf.cast(x, tf.uint8)` for values in [0, 255]) "
                "instead of letting larger integers wrap around."
            )
        if images.dtype.is_floating:
            # Float input must already be in [0, 1]; one reduction, and none for uint8 input.
            images = tf.cast(images, tf.float32)
            with tf.control_dependencies([
                tf.debugging.assert_less_equal(
                    tf.reduce_max(tf.abs(images - 0.5)), 0.5,
                    message="Augment received float images outside [0, 1]. Expected uint8 images in "
                            "[0, 255] or floats in [0, 1]: divide 0-255 floats by 255 first.",
                )
            ]):
                images = tf.identity(images)
        return ops.to_float(images)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, training=None):
        return keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "policy": serialize_policy(self.policy),
                "strength": float(self.strength.numpy()),
                "seed": self.seed,
                "placement": self.placement,
                "shapes": self.shapes,
            }
        )
        return config
