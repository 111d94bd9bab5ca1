"""VGG (Simonyan & Zisserman, 2014) as in S0/S1/S2, with defaults that learn on MNIST.

Each stage is `n` 3x3 same-padded convolutions followed by a 2x2 max-pool with stride 2; stage
filters are 64, 128, 256, 512, 512 (times `width_multiplier`); the classifier is
Flatten -> [Dense(4096) -> Dropout] x 2 -> logits. VGG16 at 224x224x1, 10 classes, without batch
normalization has S2's 134,300,362 parameters.

The defaults differ from the articles on purpose: trained from scratch with unit-variance normal
weights (S1) or without normalization, VGG16 on MNIST sits at chance or diverges. He-normal
initialization and batch normalization make it learn (tests/test_models.py keeps the evidence).
"""

from collections.abc import Mapping, Sequence

import vggsweep.models.blocks as blocks

#: Convolutions per stage of the paper's configurations.
STAGES = {
    "vgg11": (1, 1, 2, 2, 2),  # configuration A
    "vgg13": (2, 2, 2, 2, 2),  # configuration B
    "vgg16": (2, 2, 3, 3, 3),  # configuration D
    "vgg19": (2, 2, 4, 4, 4),  # configuration E
}
STAGE_FILTERS = (64, 128, 256, 512, 512)  # stages beyond the fifth keep 512


def depth(params: Mapping) -> int:
    """Weight layers: convolutions + dense layers + the logits (VGG16: 13 + 2 + 1)."""
    return sum(params["stages"]) + params["dense_layers"] + 1


def stage_filters(index: int, width_multiplier: float) -> int:
    """Filters of stage `index` (0-based), scaled and never below 1."""
    base = STAGE_FILTERS[min(index, len(STAGE_FILTERS) - 1)]
    return max(1, round(base * width_multiplier))


def plan(params: Mapping, image_size: int) -> list[blocks.Block]:
    """Checks the values and plans every stage's output shape (pure Python)."""
    blocks.check_common(params)
    stages = params["stages"]
    blocks.require(
        isinstance(stages, Sequence) and not isinstance(stages, str) and len(stages) > 0
        and all(blocks.is_int(n) and n >= 1 for n in stages),
        f"model.stages={stages!r} must be a non-empty list of convolutions per stage, "
        "e.g. [2, 2, 3, 3, 3]",
    )
    multiplier = params["width_multiplier"]
    blocks.require(blocks.is_number(multiplier) and multiplier > 0,
                   f"model.width_multiplier={multiplier!r} must be a number > 0")
    blocks.check_count(params, "dense_layers", minimum=0)
    blocks.check_count(params, "dense_units")
    return blocks.fit(f"vgg{depth(params)}", lambda size: _trace(params, size), image_size)


def _trace(params: Mapping, size: int) -> list[blocks.Block]:
    trace = [blocks.Block("input", (size, size, 1))]
    for index, _ in enumerate(params["stages"]):
        padding = blocks.pool_padding(size, 2, params["pooling"], index + 1)
        size = blocks.pooled_size(size, 2, padding)
        filters = stage_filters(index, params["width_multiplier"])
        trace.append(blocks.Block(f"block{index + 1}", (size, size, filters), padding))
    return trace


def build_vgg(
    input_shape: tuple = (28, 28, 1),
    num_classes: int = 10,
    image_size: int = 28,
    *,
    stages: Sequence[int] = STAGES["vgg16"],  # convolutions per stage
    width_multiplier: float = 1.0,  # scales every stage's filters and the dense width
    dense_layers: int = 2,
    dense_units: int = 4096,  # before width_multiplier
    dropout: float = 0.5,  # after each dense layer, as in the paper and S2
    batch_norm: bool = True,  # after each convolution; false reproduces the paper (and S2)
    l2: float = 0.0,  # L2 penalty on every kernel (the paper: 5e-4)
    kernel_initializer: str = "he_normal",  # random_normal_unit reproduces S1's failure
    pooling: str = "same",  # valid | same | skip; at 224 (or 32) same == valid
    activation: str = "relu",
    temperature: float = 1.0,  # logits are divided by it (S0: 0.6)
    augment: bool = False,  # random shifts and rotations while training
):
    """Builds a VGG as an uncompiled functional Keras model whose output is logits / T."""
    params = dict(locals())
    plan_ = plan(params, image_size)
    inputs = blocks.image_input(input_shape)
    x = blocks.stem(inputs, image_size, augment)
    for block, convs in zip(plan_[1:], stages):
        for index in range(1, convs + 1):
            x = blocks.conv(x, block.shape[2], 3, "same", params, f"{block.name}_conv{index}")
        x = blocks.max_pool(x, 2, block.pool, f"{block.name}_pool")
    units = max(1, round(dense_units * width_multiplier))
    x = blocks.dense_stack(x, dense_layers, units, params)
    outputs = blocks.head(x, num_classes, params)
    return blocks.functional_model(inputs, outputs, f"vgg{depth(params)}")
