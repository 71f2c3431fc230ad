"""The browser form, driven by headless Chromium through Playwright.

:func:`check_form` is reusable against any running API (local process or compose stack):
it needs Debian's ``chromium`` (``apt-get install chromium``); no browser download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        feedback_buttons: The "It was actually:" buttons under the answer.
        feedback_message: What the form said after the sample's own cultivar was pressed
            there (recorded, or why not, e.g. the prediction log is off).
    """

    cultivar: str
    bars: list[tuple[str, str]]
    invalid_message: str
    external_requests: list[str]
    feedback_buttons: list[str]
    feedback_message: str


def check_form(
    base_url: str, sample_class_id: int = 0, screenshot: Path | None = None
) -> FormCheck:
    """Opens the form, fills in a cultivar's typical sample, predicts, answers "It was
    actually:" with that cultivar, then tries bad input.

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
            buttons = page.locator("#feedback-classes button").all_inner_texts()
            page.click(f"#feedback-classes button[data-class-id='{sample_class_id}']")
            page.wait_for_selector("#feedback-result:not([hidden])")
            feedback = page.inner_text("#feedback-result")
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)

            page.fill("#alcohol", "-5")
            page.click("#predict")
            page.wait_for_selector("#message:not([hidden])")
            invalid = page.inner_text("#message")
        finally:
            browser.close()
    return FormCheck(cultivar, bars, invalid, external, buttons, feedback)


@dataclass(frozen=True)
class DocsCheck:
    """What the documentation pages showed.

    Attributes:
        swagger_text: The visible text of Swagger UI (``/docs``) once its operations rendered.
        operation_ids: The operation ids Swagger UI shows, top to bottom.
        redoc_text: The visible text of ReDoc (``/redoc``) once it rendered.
        requests: Every request both pages made, in order.
        blocked: The requests to any other origin, refused before they left (must be none).
        console_errors: The pages' console errors (the Content-Security-Policy's refusals).
    """

    swagger_text: str
    operation_ids: list[str]
    redoc_text: str
    requests: list[str]
    blocked: list[str]
    console_errors: list[str]


def check_docs(base_url: str, screenshots: Path | None = None) -> DocsCheck:
    """Opens ``/docs`` and ``/redoc`` with every request to another origin refused.

    Args:
        base_url: The API's address, e.g. ``http://127.0.0.1:7654``.
        screenshots: A directory for ``docs.png`` and ``redoc.png``, if wanted.

    Returns:
        What the pages showed and asked for, for the caller to assert on.
    """
    from playwright.sync_api import Route, sync_playwright

    origin = base_url.rstrip("/")
    requests: list[str] = []
    blocked: list[str] = []
    console_errors: list[str] = []

    def only_the_api(route: Route) -> None:
        url = route.request.url
        requests.append(url)
        if url == origin or url.startswith(f"{origin}/"):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("blockedbyclient")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", only_the_api)
            page.on(
                "console",
                lambda message: (
                    console_errors.append(message.text) if message.type == "error" else None
                ),
            )
            page.goto(f"{origin}/docs", wait_until="networkidle")
            page.wait_for_selector("#swagger-ui .opblock-summary-operation-id")
            swagger_text = page.inner_text("#swagger-ui")
            operation_ids = page.locator(".opblock-summary-operation-id").all_inner_texts()
            if screenshots is not None:
                page.screenshot(path=str(screenshots / "docs.png"), full_page=True)

            page.goto(f"{origin}/redoc", wait_until="networkidle")
            page.wait_for_selector("redoc .api-content h2")
            redoc_text = page.inner_text("redoc")
            if screenshots is not None:
                page.screenshot(path=str(screenshots / "redoc.png"))
        finally:
            browser.close()
    return DocsCheck(swagger_text, operation_ids, redoc_text, requests, blocked, console_errors)


@dataclass(frozen=True)
class WarningCheck:
    """What the form showed for a wine with values outside the model's training range.

    Attributes:
        cultivar: The cultivar shown.
        bars: Each probability bar's label and shown value.
        value_lines: How many lines each bar's value takes on screen (1: no wrapping).
        field_warnings: The visible warning under each field that has one, by field name.
        described_by: Each warned field's ``aria-describedby`` (what a screen reader reads).
        ranges: The training range shown under each changed field.
        summary: The visible warning line of the result.
        after_edit: The visible field warnings once the warned fields were edited.
    """

    cultivar: str
    bars: list[tuple[str, str]]
    value_lines: list[int]
    field_warnings: dict[str, str]
    described_by: dict[str, str]
    ranges: dict[str, str]
    summary: str
    after_edit: dict[str, str]


#: How many line boxes an element's text takes (a wrapped text has one rectangle per line).
_LINES_JS = """element => {
    const range = document.createRange();
    range.selectNodeContents(element);
    return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
}"""


def _visible_field_warnings(page: Any) -> dict[str, str]:
    notes = page.locator(".field .warning:visible")
    return {
        (notes.nth(i).get_attribute("id") or "").removesuffix("-warning"): notes.nth(i).inner_text()
        for i in range(notes.count())
    }


def check_form_warnings(
    base_url: str,
    values: dict[str, str],
    sample_class_id: int = 0,
    screenshot: Path | None = None,
) -> WarningCheck:
    """Fills in a cultivar's typical sample, changes some fields, predicts, reads the warnings.

    Args:
        base_url: The API's address.
        values: Field name to the text typed into it (e.g. ``{"alcohol": "0.132"}``).
        sample_class_id: Which cultivar's "Typical …" button to press first.
        screenshot: Where to save a PNG of the page with the warnings, if wanted.

    Returns:
        What the page showed, for the caller to assert on.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base_url.rstrip('/')}/", wait_until="networkidle")
            page.wait_for_selector("body[data-ready='true']")
            page.click(f"#samples button[data-class-id='{sample_class_id}']")
            for name, text in values.items():
                page.fill(f"#{name}", text)
            page.click("#predict")
            page.wait_for_selector("#warnings:not([hidden])")
            bars = page.locator("#bars .bar")
            shown = [
                (bars.nth(i).locator(".label").inner_text(), bars.nth(i).locator(".value"))
                for i in range(bars.count())
            ]
            warnings = _visible_field_warnings(page)
            described = {
                name: page.get_attribute(f"#{name}", "aria-describedby") or "" for name in warnings
            }
            ranges = {name: page.inner_text(f"#{name}-range") for name in values}
            summary = page.inner_text("#warnings")
            cultivar = page.inner_text("#cultivar")
            value_lines = [value.evaluate(_LINES_JS) for _, value in shown]
            bar_texts = [(label, value.inner_text()) for label, value in shown]
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
            for name in values:
                page.fill(f"#{name}", "12.5")
            after_edit = _visible_field_warnings(page)
        finally:
            browser.close()
    return WarningCheck(
        cultivar, bar_texts, value_lines, warnings, described, ranges, summary, after_edit
    )
