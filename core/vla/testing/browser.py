"""Debian's chromium, headless, through playwright, for tests of vla's web pages.

Playwright is used only as the driver: it never downloads a browser here; the test launches
the system's ``chromium`` (``apt-get install chromium``, which scripts/system-deps.sh does).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from typing import Iterator

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str:
    for path in (os.environ.get("VLA_CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if path and os.path.exists(path):
            return path
    raise RuntimeError("no chromium found: install Debian's chromium (scripts/system-deps.sh) or set VLA_CHROMIUM")


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator[object]:
    """A playwright ``Page`` in a headless Debian chromium; closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()
