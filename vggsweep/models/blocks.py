"""Pieces every model family shares: value checks, feature-map geometry and the Keras layers
around the body of a model (input adaptation, augmentation, dense stack, classifier head).

The geometry half is pure Python, so a configuration is checked without importing Keras; the
builders follow the same plan, so what `check_geometry` reports is what gets built. Keras is
imported inside the layer functions only.
"""

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from vggsweep.errors import ModelConfigError

#: What happens to a pool (and to the cnn's valid convolution) that does not fit the feature map.
POOLING = ("valid", "same", "skip")
#: Keras initializer names, plus S1's unit-variance normal (the one that makes VGG diverge).
INITIALIZERS = (
    "he_normal", "he_uniform", "glorot_uniform", "glorot_normal", "lecun_normal",
    "random_normal_unit",
)
#: Augmentation strengths: shifts up to 10% of the image, rotations up to 0.05 turns (18 degrees).
TRANSLATION = 0.1
ROTATION = 0.05
#: Batch-normalization momentum of the moving statistics used at inference. Keras' 0.99 suits
#: long ImageNet runs; after the few hundred steps of a short trial its averages still lag the
#: weights, and validation accuracy trails training accuracy by 30 points (measured: VGG16 at width
#: 0.125, 1000 digits, 3 epochs: val 0.59 with 0.99, 0.86 with 0.9).
BATCH_NORM_MOMENTUM = 0.9
#: Largest input size tried when suggesting a `data.image_size` that fits.
LARGEST_SUGGESTED_SIZE = 1024


class Block(NamedTuple):
    """One stage of a model's feature extractor, as planned from the configuration."""

    name: str  # "input", "block1", ...: the prefix of the Keras layer names of that block
    shape: tuple[int, int, int]  # output (height, width, channels)
    pool: str | None = None  # padding of the block's pool; None when there is none (skipped)
    conv_padding: str = "same"  # padding of the block's last convolution (cnn: "valid")


class DoesNotFit(Exception):
    """Raised inside a geometry trace; turned into a one-line ModelConfigError by `fit`."""

    def __init__(self, block: int, operation: str, size: int, remedy: str):
        super().__init__(block, operation, size, remedy)
        self.block, self.operation, self.size, self.remedy = block, operation, size, remedy


# --------------------------------------------------------------------------------------------
# Values and geometry (pure Python).


def require(condition: bool, message: str) -> None:
    """Raises ModelConfigError(message) unless condition holds."""
    if not condition:
        raise ModelConfigError(message)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_count(params: Mapping, key: str, minimum: int = 1) -> None:
    """Checks that params[key] is an integer >= minimum."""
    value = params[key]
    require(is_int(value) and value >= minimum,
            f"model.{key}={value!r} must be an integer >= {minimum}")


def check_common(params: Mapping) -> None:
    """Checks the keyword arguments every family shares."""
    temperature = params["temperature"]
    require(is_number(temperature) and temperature > 0,
            f"model.temperature={temperature!r} must be a number > 0 (1.0: plain softmax)")
    require(isinstance(params["augment"], bool),
            f"model.augment={params['augment']!r} must be true or false")
    require(isinstance(params["activation"], str),
            f"activation={params['activation']!r} must be the name of a Keras activation")
    dropout = params["dropout"]
    require(is_number(dropout) and 0 <= dropout < 1,
            f"model.dropout={dropout!r} must be in [0, 1)")
    require(is_number(params["l2"]) and params["l2"] >= 0,
            f"model.l2={params['l2']!r} must be a number >= 0 (0: no weight penalty)")
    require(params["kernel_initializer"] in INITIALIZERS,
            f"model.kernel_initializer={params['kernel_initializer']!r} is not valid; "
            f"valid: {', '.join(INITIALIZERS)}")
    if "pooling" in params:
        require(params["pooling"] in POOLING,
                f"model.pooling={params['pooling']!r} is not valid; valid: {', '.join(POOLING)}")
    if "batch_norm" in params:
        require(isinstance(params["batch_norm"], bool),
                f"model.batch_norm={params['batch_norm']!r} must be true or false")


def pool_padding(size: int, pool_size: int, pooling: str, block: int) -> str | None:
    """The padding of a pool_size pool on a size x size map under a pooling policy.

    Returns "valid", "same", or None when the `skip` policy drops the pool.
    """
    if pooling == "same":
        return "same"
    if size >= pool_size:
        return "valid"
    if pooling == "skip":
        return None
    raise DoesNotFit(block, f"pool {pool_size}x{pool_size}", size,
                     "model.pooling=same or model.pooling=skip")


def pooled_size(size: int, pool_size: int, padding: str | None) -> int:
    """Output size of a pool with stride = pool_size (Keras' arithmetic)."""
    if padding is None:
        return size
    if padding == "same":
        return -(-size // pool_size)
    return (size - pool_size) // pool_size + 1


def fit(name: str, trace: Callable[[int], list[Block]], image_size: int) -> list[Block]:
    """Runs a geometry trace; a map that does not fit becomes a one-line ModelConfigError."""
    try:
        return trace(image_size)
    except DoesNotFit as error:
        larger = next((size for size in range(image_size + 1, LARGEST_SUGGESTED_SIZE + 1)
                       if _fits(trace, size)), None)
        remedy = error.remedy + (f", or data.image_size={larger}" if larger else "")
        raise ModelConfigError(
            f"{name}: block {error.block} {error.operation} on a {error.size}x{error.size} "
            f"feature map (input {image_size}x{image_size}) would shrink it below 1x1; "
            f"use {remedy}"
        ) from None


def _fits(trace: Callable[[int], list[Block]], size: int) -> bool:
    try:
        trace(size)
    except DoesNotFit:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Keras layers (Keras imported inside each function).


def initializer(name: str):
    """A Keras initializer from its name; `random_normal_unit` is S1's N(0, 1)."""
    import keras

    if name == "random_normal_unit":
        return keras.initializers.RandomNormal(mean=0.0, stddev=1.0)
    return keras.initializers.get(name)


def regularizer(l2: float):
    """An L2 kernel penalty (l2 * sum of squared weights), or None for l2 == 0."""
    import keras

    return keras.regularizers.L2(float(l2)) if l2 > 0 else None


def stem(inputs, image_size: int, augment: bool):
    """Augments (training only) and adapts the 28x28 input to image_size x image_size.

    Augmentation runs first, on the small image, where it is cheapest; it fills with zeros
    (MNIST's background) rather than reflecting the digit. Equal sizes pass through, 4 pixels
    more are zero-padded (28 -> 32, exact and free), anything else is resized inside the model,
    so the dataset is never resized in memory (S2's mistake).
    """
    import keras

    x = inputs
    if augment:
        x = keras.layers.RandomTranslation(TRANSLATION, TRANSLATION, fill_mode="constant",
                                           name="augment_translation")(x)
        x = keras.layers.RandomRotation(ROTATION, fill_mode="constant",
                                        name="augment_rotation")(x)
    height, width = inputs.shape[1], inputs.shape[2]
    if (height, width) == (image_size, image_size):
        return x
    if height == width and image_size == height + 4:
        return keras.layers.ZeroPadding2D(2, name="pad")(x)
    return keras.layers.Resizing(image_size, image_size, name="resize")(x)


def conv(x, filters: int, kernel_size: int, padding: str, params: Mapping, name: str):
    """Conv2D, then BatchNormalization (when params["batch_norm"]), then the activation.

    With batch normalization the convolution has no bias: the normalization's offset replaces it.
    """
    import keras

    batch_norm = params.get("batch_norm", False)
    x = keras.layers.Conv2D(
        filters, kernel_size, padding=padding, use_bias=not batch_norm,
        activation=None if batch_norm else params["activation"],
        kernel_initializer=initializer(params["kernel_initializer"]),
        kernel_regularizer=regularizer(params["l2"]), name=name,
    )(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_bn")(x)
        x = keras.layers.Activation(params["activation"], name=f"{name}_act")(x)
    return x


def max_pool(x, pool_size: int, padding: str | None, name: str):
    """A max-pool with stride = pool_size, or nothing when the plan skipped it."""
    import keras

    if padding is None:
        return x
    return keras.layers.MaxPooling2D(pool_size, padding=padding, name=name)(x)


def dense_stack(x, layers: int, units: int, params: Mapping):
    """Flatten, then `layers` x [Dense(units, activation) -> Dropout when dropout > 0]."""
    import keras

    x = keras.layers.Flatten(name="flatten")(x)
    for index in range(1, layers + 1):
        x = keras.layers.Dense(
            units, activation=params["activation"],
            kernel_initializer=initializer(params["kernel_initializer"]),
            kernel_regularizer=regularizer(params["l2"]), name=f"dense{index}",
        )(x)
        if params["dropout"] > 0:
            x = keras.layers.Dropout(params["dropout"], name=f"dropout{index}")(x)
    return x


def head(x, num_classes: int, params: Mapping):
    """The logits, divided by the softmax temperature (T < 1 sharpens, T > 1 flattens).

    Both layers compute in float32 so the logits stay exact under a mixed-precision policy.
    """
    import keras

    x = keras.layers.Dense(
        num_classes, kernel_initializer=initializer(params["kernel_initializer"]),
        kernel_regularizer=regularizer(params["l2"]), dtype="float32", name="logits",
    )(x)
    return keras.layers.Rescaling(1.0 / params["temperature"], dtype="float32",
                                  name="temperature")(x)


def functional_model(inputs, outputs, name: str):
    import keras

    return keras.Model(inputs, outputs, name=name)


def image_input(input_shape):
    import keras

    return keras.Input(tuple(input_shape), name="image")
