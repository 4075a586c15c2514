"""vla-primitives: motion primitives placed by what the front camera sees, with parameters a learner tunes.

``parameter_space(goal_text)`` lists a goal's parameters (``Param``: name, low, high, init);
``set_parameter_source(backend, source)`` plugs a learner into a running backend, which then
calls ``source.params_for(session)`` at the start of each episode. Importing this package loads
attrs only; numpy, OpenCV and the kinematics load with the backend.
"""

from vla_primitives.params import Goal, GoalError, Param, ParamsError, parameter_space, parse_goal, resolve_params


def set_parameter_source(backend, source) -> None:
    """Plug ``source`` (anything with ``params_for(session) -> dict``) into a ``PrimitivesBackend``."""
    from vla_primitives.backend import set_parameter_source as plug

    plug(backend, source)


__all__ = ["Goal", "GoalError", "Param", "ParamsError", "parameter_space", "parse_goal", "resolve_params",
           "set_parameter_source"]
