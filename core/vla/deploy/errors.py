"""The one error type of `vla.deploy`: something that stops a deployment, said plainly."""

from __future__ import annotations


class DeployError(RuntimeError):
    """A deployment cannot go ahead. The message names what is wrong and, when known, the fix."""
