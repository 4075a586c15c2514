"""vla: run vision-language-action policies on real arms, score them with VLMs, improve them.

The package root stays import-light: the CLI imports it on every start-up.
"""

import pluggy

__version__ = "0.1.0"

hookspec = pluggy.HookspecMarker("vla")
hookimpl = pluggy.HookimplMarker("vla")

__all__ = ["__version__", "hookimpl", "hookspec"]
