"""vla-cmaes's entry point: the online trainer `cmaes`. Imports no numpy or cma."""

from vla import hookimpl
from vla.specs import TrainerSpec
from vla_cmaes.config import CMAESConfig


@hookimpl
def register_trainers(register):
    register(
        TrainerSpec(
            name="cmaes",
            description="CMA-ES over a policy's parameters from rewarder scores alone (online, for vla learn).",
            factory="vla_cmaes.trainer:CMAESTrainer",
            config=CMAESConfig,
            mode="online",
        )
    )
