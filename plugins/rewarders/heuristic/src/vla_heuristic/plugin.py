"""Entry point of the vla-heuristic distribution: registers the `heuristic` rewarder."""

from vla import hookimpl
from vla.specs import HealthCheck, RewarderSpec, ServiceSpec

from vla_heuristic.config import HeuristicConfig

PORT = 18080


@hookimpl
def register_rewarders(register):
    register(
        RewarderSpec(
            name="heuristic",
            description="Colour masks (HSV, OpenCV) with per-task rules: inside a container, past a line, raised.",
            factory="vla_heuristic.rewarder:HeuristicRewarder",
            config=HeuristicConfig,
            services=(
                ServiceSpec(
                    name="rewarder",
                    image="vla-runtime:latest",
                    build_context="images/runtime",
                    command=("vla", "serve-rewarder", "--rewarder", "heuristic", "--host", "0.0.0.0",
                             "--port", str(PORT)),
                    port=PORT,
                    gpus=0,
                    healthcheck=HealthCheck.http(PORT, "/healthz", start_period_s=30.0),
                ),
            ),
        )
    )
