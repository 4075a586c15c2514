"""vla-sim's entry point: the robot `sim`, the policy `scripted` and the `vla sim` commands.

Imports only vla, attrs and the light config modules: listing plugins must not import MuJoCo.
"""

from vla import hookimpl
from vla.specs import HealthCheck, PolicySpec, RobotSpec, ServiceSpec
from vla_sim.config import ScriptedConfig, SimConfig

POLICY_PORT = 8080


@hookimpl
def register_robots(register):
    register(
        RobotSpec(
            name="sim",
            description="Simulated SO-101 on a table in MuJoCo: pick_place, push_left and lift, front and wrist cameras.",
            factory="vla_sim.robot:SimRobot",
            config=SimConfig,
            robot_description="vla_so101_description.description:SO101",
            starter_config="vla_sim.config:starter_arm_config",
        )
    )


@hookimpl
def register_policies(register):
    register(
        PolicySpec(
            name="scripted",
            description="Scripted IK expert for the sim tasks; reads object poses from observation.environment_state.",
            factory="vla_sim.expert:ScriptedPolicy",
            config=ScriptedConfig,
            # CPU-only: lets `vla up --policy scripted` exercise the whole GPU-host path without a GPU
            services=(
                ServiceSpec(
                    name="policy",
                    image="vla-runtime:latest",
                    build_context="images/runtime",
                    command=("vla", "serve", "--policy", "scripted", "--host", "0.0.0.0", "--port", str(POLICY_PORT)),
                    port=POLICY_PORT,
                    healthcheck=HealthCheck.http(POLICY_PORT, start_period_s=60.0),
                ),
            ),
        )
    )


@hookimpl
def register_commands(cli):
    from vla_sim.cli import sim

    cli.add_command(sim)
