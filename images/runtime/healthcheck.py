"""Container health check for vla services, in Python because slim images have no curl.

Exits 0 when the service's /healthz answers 200 ("ready"), 1 otherwise. The URL comes from
VLA_HEALTH_URL, else http://127.0.0.1:$VLA_PORT/healthz (VLA_PORT defaults to 8080).
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("VLA_PORT", "8080")
    url = os.environ.get("VLA_HEALTH_URL") or f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            body = response.read(300).decode(errors="replace")
            print(body)
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:  # 503 while the model loads, 500 when it failed
        print(f"{url}: HTTP {exc.code}")
        return 1
    except OSError as exc:
        print(f"{url}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
