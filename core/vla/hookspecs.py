"""The hooks a plugin implements. Each is a registration callback called with keywords only."""

from vla import hookspec


@hookspec
def register_robots(register):
    """Call ``register(RobotSpec(...))`` for each robot driver this plugin provides."""


@hookspec
def register_policies(register):
    """Call ``register(PolicySpec(...))`` for each policy backend this plugin provides."""


@hookspec
def register_rewarders(register):
    """Call ``register(RewarderSpec(...))`` for each rewarder this plugin provides."""


@hookspec
def register_trainers(register):
    """Call ``register(TrainerSpec(...))`` for each trainer this plugin provides."""


@hookspec
def register_commands(cli):
    """Add click commands or groups to the ``vla`` CLI group ``cli``."""
