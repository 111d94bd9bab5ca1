"""S3's simple CNN, generalised: blocks of [same conv -> valid conv -> max-pool], then dense layers.

At S3's values (2 blocks, 32 filters, 3x3 kernels, 2x2 pools, one dense layer of 512, no batch
normalization, no dropout) the model has 889,834 parameters at 28x28x1 and 10 classes.
"""

from collections.abc import Mapping

import vggsweep.models.blocks as blocks


def plan(params: Mapping, image_size: int) -> list[blocks.Block]:
    """Checks the values and plans every block's output shape (pure Python)."""
    blocks.check_common(params)
    for key in ("conv_blocks", "filters", "kernel_size", "pool_size"):
        blocks.check_count(params, key)
    blocks.check_count(params, "dense_layers", minimum=0)
    blocks.check_count(params, "dense_units")
    return blocks.fit("cnn", lambda size: _trace(params, size), image_size)


def _trace(params: Mapping, size: int) -> list[blocks.Block]:
    kernel, pool_size, pooling = params["kernel_size"], params["pool_size"], params["pooling"]
    trace = [blocks.Block("input", (size, size, 1))]
    for index in range(1, params["conv_blocks"] + 1):
        filters = params["filters"] * 2 ** (index - 1)
        if size >= kernel:
            conv_padding, size = "valid", size - kernel + 1
        elif pooling == "skip":
            conv_padding = "same"  # The map is too small: keep its size, as S1 dropped pools.
        else:
            raise blocks.DoesNotFit(index, f"conv {kernel}x{kernel} (valid padding)", size,
                                    "model.pooling=skip, fewer model.conv_blocks")
        padding = blocks.pool_padding(size, pool_size, pooling, index)
        size = blocks.pooled_size(size, pool_size, padding)
        trace.append(blocks.Block(f"block{index}", (size, size, filters), padding, conv_padding))
    return trace


def build_cnn(
    input_shape: tuple = (28, 28, 1),
    num_classes: int = 10,
    image_size: int = 28,
    *,
    conv_blocks: int = 2,  # S3: 2
    filters: int = 32,  # filters of block 1; doubled in each following block (S3: 32, 64)
    kernel_size: int = 3,
    pool_size: int = 2,  # max-pool size and stride
    dense_layers: int = 1,
    dense_units: int = 512,
    dropout: float = 0.0,  # after each dense layer; 0: none
    batch_norm: bool = False,  # BatchNormalization after each convolution
    l2: float = 0.0,  # L2 penalty on every kernel; 0: none
    kernel_initializer: str = "glorot_uniform",  # Keras' default, as in S3
    pooling: str = "skip",  # valid | same | skip: what to do when a pool does not fit
    activation: str = "relu",
    temperature: float = 1.0,  # logits are divided by it
    augment: bool = False,  # random shifts and rotations while training
):
    """Builds the CNN as an uncompiled functional Keras model whose output is logits / T."""
    params = dict(locals())
    plan_ = plan(params, image_size)
    inputs = blocks.image_input(input_shape)
    x = blocks.stem(inputs, image_size, augment)
    for block in plan_[1:]:
        filters_here = block.shape[2]
        x = blocks.conv(x, filters_here, kernel_size, "same", params, f"{block.name}_conv1")
        x = blocks.conv(x, filters_here, kernel_size, block.conv_padding, params,
                        f"{block.name}_conv2")
        x = blocks.max_pool(x, pool_size, block.pool, f"{block.name}_pool")
    x = blocks.dense_stack(x, dense_layers, dense_units, params)
    return blocks.functional_model(inputs, blocks.head(x, num_classes, params), "cnn")
