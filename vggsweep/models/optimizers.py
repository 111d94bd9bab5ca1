"""Optimizers: Adam and SGD with S4's exponential learning-rate decay and weight averaging.

The keyword arguments of `build_optimizer` are the valid keys of `conf/optimizer/*.yaml`.
Keras is imported inside the function so that config validation stays instant.
"""

from __future__ import annotations

import inspect

from vggsweep.errors import ConfigError

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine", "exponential")
#: Valid ranges of the numeric keys: (low, high, low inclusive, high inclusive).
RANGES = {
    "learning_rate": (0.0, None, False, False),
    "beta_1": (0.0, 1.0, True, False),
    "beta_2": (0.0, 1.0, True, False),
    "momentum": (0.0, 1.0, True, False),
    "decay_epochs": (0.0, None, True, False),
    "decay_steps": (0, None, True, False),
    "decay_rate": (0.0, 1.0, False, True),
    "ema_momentum": (0.0, 1.0, True, False),
}


def build_optimizer(
    name: str = "adam",
    learning_rate: float = 1e-3,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    momentum: float = 0.9,
    nesterov: bool = True,
    schedule: str = "constant",
    decay_epochs: float = 0.0,
    decay_steps: int = 0,
    decay_rate: float = 0.96,
    staircase: bool = False,
    ema: bool = False,
    ema_momentum: float = 0.99,
    steps_per_epoch: int | None = None,
    total_steps: int | None = None,
):
    """Builds a Keras optimizer.

    Args:
        name: `adam` or `sgd`.
        learning_rate: the initial learning rate.
        beta_1, beta_2: Adam's moment decay rates.
        momentum, nesterov: SGD's momentum.
        schedule: `constant`; `cosine`: cosine decay from `learning_rate` to 0 over the whole
            training run (adapts to any budget); `exponential`: `decay_rate` every
            `decay_epochs` epochs or `decay_steps` steps (S4).
        decay_epochs: decay the rate by `decay_rate` every `decay_epochs` epochs (0: off); it
            follows the data size, unlike `decay_steps`.
        decay_steps: decay the rate by `decay_rate` every `decay_steps` steps (0: off; S4).
        decay_rate: the multiplier per decay period.
        staircase: decay in discrete steps (S4) instead of continuously.
        ema: keep an exponential moving average of the weights, used for evaluation (S4).
        ema_momentum: the EMA's momentum.
    """
    import keras

    if schedule not in SCHEDULES:
        raise ValueError(f"optimizer.schedule={schedule!r}; valid: {', '.join(SCHEDULES)}")
    rate = learning_rate
    if schedule == "cosine":
        if not total_steps:
            raise ValueError("optimizer.schedule=cosine needs the run's total number of steps")
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps)
    if schedule != "exponential":
        decay_epochs = decay_steps = 0
    if decay_epochs and decay_epochs > 0:
        if decay_steps:
            raise ValueError("optimizer: set decay_epochs or decay_steps, not both")
        if not steps_per_epoch:
            raise ValueError("optimizer.decay_epochs needs the number of steps per epoch")
        decay_steps = max(1, round(decay_epochs * steps_per_epoch))
    if decay_steps and decay_steps > 0:
        rate = keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=decay_steps, decay_rate=decay_rate, staircase=staircase
        )
    common = {"learning_rate": rate, "use_ema": bool(ema), "ema_momentum": ema_momentum}
    if name == "adam":
        return keras.optimizers.Adam(beta_1=beta_1, beta_2=beta_2, **common)
    if name == "sgd":
        return keras.optimizers.SGD(momentum=momentum, nesterov=nesterov, **common)
    raise ValueError(f"optimizer.name={name!r} is not supported; valid: {', '.join(OPTIMIZERS)}")


def check_point(params: dict) -> None:
    """Checks one point of the optimizer config (no Keras); ConfigError with one line."""
    for key, (low, high, low_in, high_in) in RANGES.items():
        value = params.get(key)
        if value is None or isinstance(value, bool):
            continue
        too_low = value < low if low_in else value <= low
        too_high = high is not None and (value > high if high_in else value >= high)
        if too_low or too_high:
            bound = f"{'>=' if low_in else '>'} {low}" + (
                f" and {'<=' if high_in else '<'} {high}" if high is not None else "")
            raise ConfigError(f"optimizer.{key}={value} is out of range; valid: {bound}")
    schedule = params.get("schedule", "constant")
    if schedule not in SCHEDULES:
        raise ConfigError(f"optimizer.schedule={schedule!r} is not valid; valid: "
                          f"{', '.join(SCHEDULES)}")
    if schedule == "exponential" and params.get("decay_epochs") and params.get("decay_steps"):
        raise ConfigError("optimizer: set decay_epochs or decay_steps, not both (the other 0)")


def builder_params() -> dict:
    """The optimizer config's valid keys (except `name`) and their types."""
    signature = inspect.signature(build_optimizer)
    types = {"int": int, "float": float, "bool": bool, "str": str}
    return {
        name: types.get(param.annotation, param.annotation)
        for name, param in signature.parameters.items()
        if name not in ("name", "steps_per_epoch", "total_steps")
    }
