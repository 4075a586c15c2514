"""Settings of the heuristic rewarder (the `plugins.heuristic` section of vla.yaml)."""

from __future__ import annotations

import attrs


@attrs.define
class HeuristicConfig:
    # YAML file with colours and task rules; None uses the packaged rules for the sim tasks
    # (vla_heuristic/default_rules.yaml). Copy that file to tune for a real camera.
    rules: str | None = None
    # success when score >= threshold; each rule maps its measure to 0.5 at its cut-off
    threshold: float = 0.5
