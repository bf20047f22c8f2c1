"""Headless Chromium for the tests that render a page (and docs/screenshots.py): Playwright's
own browser when ``playwright install chromium`` was run, else a Chromium of the system
(``apt install chromium``). ``chromium()`` skips the calling test when there is neither."""

from __future__ import annotations

import contextlib
import shutil

import pytest

SYSTEM_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def launch(pw):
    """A headless Chromium from ``pw`` (a started Playwright), or the error that says why there is none."""
    try:
        return pw.chromium.launch()
    except Exception as exc:  # noqa: BLE001 - Playwright's browser was not downloaded
        system = next((path for name in SYSTEM_BROWSERS if (path := shutil.which(name))), None)
        if system is None:
            raise RuntimeError(f"no Chromium: {str(exc).splitlines()[0]}") from exc
        return pw.chromium.launch(executable_path=system)


@contextlib.contextmanager
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        try:
            browser = launch(pw)
        except RuntimeError as exc:
            pytest.skip(str(exc))
        try:
            yield browser
        finally:
            browser.close()
