"""vla-openpi's registrations: `pi0` and `pi0-fast`, each served by openpi's own
`scripts/serve_policy.py` in the openpi image (port 8000 inside, published on the policy port)."""

from vla import hookimpl
from vla.specs import HealthCheck, PolicySpec, ServiceSpec
from vla_openpi.config import OPENPI_PORT, OpenPIConfig, Pi0FastConfig

OPENPI_IMAGE = "vla-openpi:latest"
ASSETS = "/openpi_assets"
MEM_FRACTION = 0.9  # of the GPU that JAX preallocates  # OPENPI_DATA_HOME: where openpi caches downloaded checkpoints

# openpi training config and checkpoint served by default. The LIBERO configs read the keys
# of vla-openpi's default key map; a lab serving its own fine-tune changes both here and in
# `plugins.<name>.keys`.
CHECKPOINTS = {
    "pi0": ("pi0_libero", "gs://openpi-assets/checkpoints/pi0_libero"),
    "pi0-fast": ("pi0_fast_libero", "gs://openpi-assets/checkpoints/pi0_fast_libero"),
}


def openpi_service(policy: str) -> ServiceSpec:
    config_name, checkpoint = CHECKPOINTS[policy]
    return ServiceSpec(
        name="policy",
        image=OPENPI_IMAGE,
        build_context="images/openpi",
        command=(
            "uv", "run", "--no-sync", "scripts/serve_policy.py", f"--port={OPENPI_PORT}",
            "policy:checkpoint", f"--policy.config={config_name}", f"--policy.dir={checkpoint}",
        ),
        port=OPENPI_PORT,
        gpus=1,
        # openpi's server answers GET /healthz with 200 once the checkpoint is loaded and it listens;
        # the first start downloads and JIT-compiles the model.
        healthcheck=HealthCheck.http(OPENPI_PORT, "/healthz", interval_s=15.0, retries=5, start_period_s=1200.0),
        volumes={"vla-openpi-assets": ASSETS},
        environment={"OPENPI_DATA_HOME": ASSETS, "XLA_PYTHON_CLIENT_MEM_FRACTION": str(MEM_FRACTION)},
        gpu_memory_fraction=MEM_FRACTION,
    )


@hookimpl
def register_policies(register):
    register(
        PolicySpec(
            name="pi0",
            description="pi0 (flow matching, 50-action chunks) served by openpi's serve_policy.py.",
            factory="vla_openpi.remote:pi0_backend",
            config=OpenPIConfig,
            services=(openpi_service("pi0"),),
            client_adapter="vla_openpi.adapter:OpenpiAdapter",
        )
    )
    register(
        PolicySpec(
            name="pi0-fast",
            description="pi0-FAST (autoregressive FAST tokens, 10-action chunks) served by openpi's serve_policy.py.",
            factory="vla_openpi.remote:pi0_fast_backend",
            config=Pi0FastConfig,
            services=(openpi_service("pi0-fast"),),
            client_adapter="vla_openpi.adapter:OpenpiAdapter",
        )
    )
