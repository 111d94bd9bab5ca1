"""S4's multilayer perceptron: Flatten -> [Dense -> Dropout] x hidden_layers -> logits.

784-500-10 has 397,510 parameters. S4's learning-rate decay and moving average of the weights are
optimizer settings (the optimizer config), not part of the model.
"""

from collections.abc import Mapping

import vggsweep.models.blocks as blocks


def plan(params: Mapping, image_size: int) -> list[blocks.Block]:
    """Checks the values; an MLP has no feature maps, only the (adapted) input."""
    blocks.check_common(params)
    blocks.check_count(params, "hidden_layers", minimum=0)
    blocks.check_count(params, "hidden_units")
    return [blocks.Block("input", (image_size, image_size, 1))]


def build_mlp(
    input_shape: tuple = (28, 28, 1),
    num_classes: int = 10,
    image_size: int = 28,
    *,
    hidden_layers: int = 1,
    hidden_units: int = 500,  # S4: 500
    dropout: float = 0.0,  # after each hidden layer; 0: none
    l2: float = 1e-4,  # L2 penalty on every kernel (S4's regularization rate)
    kernel_initializer: str = "glorot_uniform",
    activation: str = "relu",
    temperature: float = 1.0,  # logits are divided by it
    augment: bool = False,  # random shifts and rotations while training
):
    """Builds the MLP as an uncompiled functional Keras model whose output is logits / T."""
    params = dict(locals())
    plan(params, image_size)
    inputs = blocks.image_input(input_shape)
    x = blocks.stem(inputs, image_size, augment)
    x = blocks.dense_stack(x, hidden_layers, hidden_units, params)
    return blocks.functional_model(inputs, blocks.head(x, num_classes, params), "mlp")
