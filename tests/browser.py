"""Headless Chromium for page tests: Debian's /usr/bin/chromium driven by Playwright.

``make test`` installs Debian's chromium when it is missing; Playwright only
drives it (no browser download). The flags keep Chromium off the network,
which this machine's closed network would otherwise refuse many times a start.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

CHROMIUM = os.environ.get("REPLAY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@dataclass
class PageLog:
    """What a page reported while it was open: console errors and uncaught exceptions."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return self.console_errors + self.page_errors + self.failed_requests


@contextmanager
def chromium_page(width: int = 1280, height: int = 900) -> Iterator[tuple[Any, PageLog]]:
    """A fresh headless Chromium page and the log of its errors; closed on exit."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} not found: `make test` installs Debian's chromium")
    log = PageLog()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})

            def on_console(m: Any) -> None:
                if m.type == "error":
                    log.console_errors.append(m.text)

            page.on("console", on_console)
            page.on("pageerror", lambda e: log.page_errors.append(str(e)))
            page.on("requestfailed", lambda r: log.failed_requests.append(r.url))
            yield page, log
        finally:
            browser.close()
