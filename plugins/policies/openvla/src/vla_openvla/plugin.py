"""vla-openvla's registration: the `openvla` policy backend and its GPU service."""

from vla import hookimpl
from vla.specs import HealthCheck, PolicySpec, Resources, ServiceSpec
from vla_openvla.config import OpenVLAConfig

POLICY_PORT = 8080
HF_CACHE = "/home/vla/.cache/huggingface"

OPENVLA_SERVICE = ServiceSpec(
    name="policy",
    image="vla-openvla:latest",
    build_context="images/openvla",
    command=("vla", "serve", "--policy", "openvla", "--host", "0.0.0.0", "--port", str(POLICY_PORT)),
    port=POLICY_PORT,
    gpus=1,
    # The first start downloads ~15 GB of weights and loads them in bf16: give it time.
    healthcheck=HealthCheck.http(POLICY_PORT, interval_s=15.0, timeout_s=5.0, retries=5, start_period_s=1200.0),
    volumes={"vla-model-cache": HF_CACHE},
    environment={"HF_HOME": HF_CACHE},
    # transformers reads the 15 GB of bf16 weights through host memory before moving them to the GPU
    resources=Resources(cpu=4, memory_gib=32),
)


@hookimpl
def register_policies(register):
    register(
        PolicySpec(
            name="openvla",
            description="OpenVLA-7B (transformers, bf16): one 7-DoF end-effector delta action per request.",
            factory="vla_openvla.vllm_backend:make_backend",
            config=OpenVLAConfig,
            services=(OPENVLA_SERVICE,),
        )
    )
