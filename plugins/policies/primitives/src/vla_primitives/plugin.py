"""vla-primitives' entry point: the policy `primitives`. Imports only vla, attrs and the config."""

from vla import hookimpl
from vla.specs import HealthCheck, PolicySpec, ServiceSpec
from vla_primitives.config import PrimitivesConfig

POLICY_PORT = 8080


@hookimpl
def register_policies(register):
    register(
        PolicySpec(
            name="primitives",
            description="Motion primitives (reach, grasp, lift, place, push) placed by colour masks in the front camera; `vla learn` tunes their parameters.",
            factory="vla_primitives.backend:PrimitivesBackend",
            config=PrimitivesConfig,
            # CPU-only, like the scripted expert: it runs in the runtime image
            services=(
                ServiceSpec(
                    name="policy",
                    image="vla-runtime:latest",
                    build_context="images/runtime",
                    command=("vla", "serve", "--policy", "primitives", "--host", "0.0.0.0", "--port", str(POLICY_PORT)),
                    port=POLICY_PORT,
                    healthcheck=HealthCheck.http(POLICY_PORT, start_period_s=30.0),
                ),
            ),
        )
    )
