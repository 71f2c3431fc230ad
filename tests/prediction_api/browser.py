"""The browser form, driven by headless Chromium through Playwright.

:func:`check_form` is reusable against any running API (local process or compose stack):
it needs Debian's ``chromium`` (``apt-get install chromium``); no browser download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class FormCheck:
    """What the form showed.

    Attributes:
        cultivar: The cultivar shown after submitting the typical sample.
        bars: Each probability bar's label and shown value (e.g. ``("Cultivar 1", "99.8 %")``).
        invalid_message: The message shown after a negative value was entered.
        external_requests: Requests to any other host (must be none: no CDN).
    """

    cultivar: str
    bars: list[tuple[str, str]]
    invalid_message: str
    external_requests: list[str]


def check_form(
    base_url: str, sample_class_id: int = 0, screenshot: Path | None = None
) -> FormCheck:
    """Opens the form, fills in a cultivar's typical sample, predicts, then tries bad input.

    Args:
        base_url: The API's address, e.g. ``http://127.0.0.1:7654``.
        sample_class_id: Which cultivar's "Typical …" button to press.
        screenshot: Where to save a PNG of the page showing the prediction, if wanted.

    Returns:
        What the page showed, for the caller to assert on.
    """
    from playwright.sync_api import sync_playwright

    base = base_url.rstrip("/")
    external: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "request",
                lambda request: (
                    None if request.url.startswith(base) else external.append(request.url)
                ),
            )
            page.goto(f"{base}/", wait_until="networkidle")
            page.wait_for_selector("body[data-ready='true']")
            page.click(f"#samples button[data-class-id='{sample_class_id}']")
            page.click("#predict")
            page.wait_for_selector("#result:not([hidden])")
            cultivar = page.inner_text("#cultivar")
            bars = [
                (
                    page.locator("#bars .bar .label").nth(i).inner_text(),
                    page.locator("#bars .bar .value").nth(i).inner_text(),
                )
                for i in range(page.locator("#bars .bar").count())
            ]
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)

            page.fill("#alcohol", "-5")
            page.click("#predict")
            page.wait_for_selector("#message:not([hidden])")
            invalid = page.inner_text("#message")
        finally:
            browser.close()
    return FormCheck(cultivar, bars, invalid, external)
