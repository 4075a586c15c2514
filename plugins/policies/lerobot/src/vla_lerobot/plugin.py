"""vla-lerobot's registrations: the `lerobot` policy backend and the `act`, `diffusion` and
`smolvla` trainers. Imports only vla and attrs: listing plugins never imports torch."""

from vla import hookimpl
from vla.specs import HealthCheck, PolicySpec, Resources, ServiceSpec, TrainerSpec
from vla_lerobot.config import LeRobotPolicyConfig, LeRobotTrainerConfig

POLICY_PORT = 8080

LEROBOT_SERVICE = ServiceSpec(
    name="policy",
    image="vla-lerobot:latest",
    build_context="images/lerobot",
    command=("vla", "serve", "--policy", "lerobot", "--host", "0.0.0.0", "--port", str(POLICY_PORT)),
    port=POLICY_PORT,
    gpus=1,
    # SmolVLA and pi0 checkpoints are large; the first start downloads them into the cache.
    healthcheck=HealthCheck.http(POLICY_PORT, start_period_s=600.0),
    # The checkpoint: a hub id in VLA_LEROBOT_PATH, or a folder copied into the models volume.
    volumes={"vla-model-cache": "/home/vla/.cache/huggingface", "vla-lerobot-models": "/models"},
    environment={"HF_HOME": "/home/vla/.cache/huggingface", "VLA_LEROBOT_PATH": "/models/lerobot"},
    # pi0/pi0.5 checkpoints (3B parameters) load in float32 on the host first
    resources=Resources(cpu=4, memory_gib=24),
)


@hookimpl
def register_policies(register):
    register(
        PolicySpec(
            name="lerobot",
            description="A LeRobot pretrained policy (ACT, Diffusion, SmolVLA, pi0/pi0.5) with its own processors, batched across arms.",
            factory="vla_lerobot.backend:make_backend",
            config=LeRobotPolicyConfig,
            services=(LEROBOT_SERVICE,),
            checkpoint_info="vla_lerobot.checkpoint_info:read_checkpoint_info",
        )
    )


@hookimpl
def register_trainers(register):
    for name, label in (("act", "ACT"), ("diffusion", "Diffusion Policy"), ("smolvla", "SmolVLA")):
        register(
            TrainerSpec(
                name=name,
                description=f"Train a LeRobot {label} policy on a local LeRobot dataset (vla train --policy {name}).",
                factory=f"vla_lerobot.trainer:{name}_trainer",
                config=LeRobotTrainerConfig,
            )
        )
