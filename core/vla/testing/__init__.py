"""Helpers for testing vla and its plugins: the plugin conformance check, test policies and a test arm.

Importing this package stays light; the test components live in submodules.
"""

from vla.testing.conformance import ConformanceError, check_plugin, check_spec

__all__ = ["ConformanceError", "check_plugin", "check_spec"]
