"""A real browser (Debian's headless Chromium, driven by Playwright) uses the upload form."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("Debian's chromium package is not installed", allow_module_level=True)

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
DEADLINE_MS = 180_000  # every wait of a page: a deadline for a busy machine, not a speed check
SHOTS = (
    Path(os.environ.get("CHESTX_SCREENSHOTS", "")) if os.environ.get("CHESTX_SCREENSHOTS") else None
)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def _shot(page, name: str) -> None:
    if SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / name), full_page=True)


def test_upload_with_javascript(browser, live_server, xray_dir):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(DEADLINE_MS)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
    page.goto(live_server.url + "/")
    assert "Research use only, not for clinical diagnosis" in page.inner_text("#notice")
    page.set_input_files("#image", str(xray_dir / "PNEUMONIA" / "person1000_bacteria_2931.jpeg"))
    page.wait_for_selector("#preview:not([hidden])")
    page.click("#submit")
    verdict = page.wait_for_selector("#verdict")
    assert verdict.inner_text().split()[0] in ("Normal", "Abnormal")
    heatmap = page.wait_for_selector("#heatmap")
    page.wait_for_function("document.getElementById('heatmap').naturalWidth > 0")
    assert heatmap.get_attribute("src").startswith("data:image/png;base64,")
    assert "threshold 0.500" in page.inner_text("#result")
    assert page.url.endswith("/")  # rendered in place
    _shot(page, "ui-result-js.png")
    assert not errors, errors  # no script errors, no CSP violations


def test_a_file_without_extension_dropped_on_the_form(browser, live_server, xray_dir):
    """The file chooser hides files its ``accept`` list does not name (a PACS export's
    ``IM000001``); dropped on the form, such a file is sent and read by its content."""
    import base64

    xray = (xray_dir / "NORMAL" / "IM-0115-0001.jpeg").read_bytes()
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(DEADLINE_MS)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_server.url + "/")
    assert "drag it here" in page.inner_text("#image-help")
    dropped = page.evaluate_handle(
        """(b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "IM000001"));  // no extension, no MIME type
            return dt;
        }""",
        base64.b64encode(xray).decode(),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    assert page.inner_text("#filename").startswith("IM000001")
    page.click("#submit")
    verdict = page.wait_for_selector("#verdict")
    assert verdict.inner_text().split()[0] in ("Normal", "Abnormal")
    assert not errors, errors


def test_upload_without_javascript_on_a_phone(browser, live_server, xray_dir):
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    context.set_default_timeout(DEADLINE_MS)
    page = context.new_page()
    page.goto(live_server.url + "/")
    page.set_input_files("#image", str(xray_dir / "NORMAL" / "IM-0115-0001.jpeg"))
    page.click("#submit")
    page.wait_for_selector("h1#verdict")
    assert page.locator("#heatmap").is_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # no sideways scrolling on a phone
    _shot(page, "ui-result-nojs-phone.png")
    context.close()


def test_bad_upload_shows_a_friendly_message(browser, live_server, tmp_path):
    bad = tmp_path / "notes.jpeg"
    bad.write_text("these are not pixels")
    page = browser.new_page()
    page.set_default_timeout(DEADLINE_MS)
    page.goto(live_server.url + "/")
    page.set_input_files("#image", str(bad))
    page.click("#submit")
    alert = page.wait_for_selector("[role=alert]")
    assert "not an image" in alert.inner_text()
    _shot(page, "ui-error.png")


def _document_png(path: Path) -> Path:
    import cv2
    import numpy as np

    from chestx import negatives

    page = negatives.document(np.random.default_rng(7))
    path.write_bytes(cv2.imencode(".png", page)[1].tobytes())
    return path


def test_document_upload_shows_the_refusal_panel(browser, live_server, tmp_path):
    """The live server's model carries the shipped input gate: a scanned report is refused."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_server.url + "/")
    page.set_input_files("#image", str(_document_png(tmp_path / "report.png")))
    page.wait_for_selector("#preview:not([hidden])")
    page.click("#submit")
    panel = page.wait_for_selector("#refusal", timeout=30_000)
    assert panel.inner_text().startswith("No result")
    text = page.inner_text("#result")
    assert "This does not look like a frontal chest X-ray:" in text
    assert "so no result is given" in text
    page.wait_for_function("document.getElementById('upload').naturalWidth > 0")
    assert page.locator("#heatmap").count() == 0 and "P(pneumonia)" not in text
    _shot(page, "ui-refused-js.png")
    assert not errors, errors


def test_clipped_xray_is_refused_as_one_that_cannot_be_judged(
    browser, live_server, xray_dir, tmp_path
):
    """app.js words the gate's other headline: a chest X-ray exported too bright is one the
    model cannot judge as sent, not "not a frontal chest X-ray"."""
    import cv2
    import numpy as np

    gray = cv2.imread(str(xray_dir / "NORMAL" / sorted(os.listdir(xray_dir / "NORMAL"))[0]), 0)
    path = tmp_path / "bright.png"
    cv2.imwrite(str(path), np.clip(gray * 2.0, 0, 255).astype(np.uint8))
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.set_default_timeout(DEADLINE_MS)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(live_server.url + "/")
    page.set_input_files("#image", str(path))
    page.wait_for_selector("#preview:not([hidden])")
    page.click("#submit")
    panel = page.wait_for_selector("#refusal")
    assert panel.inner_text().startswith("No result")
    text = page.inner_text("#result")
    assert "This chest X-ray cannot be judged as it is: " in text
    assert "clipped to white" in text and "so no result is given" in text
    assert "frontal chest X-ray:" not in text and "For Presentation" in text
    assert not errors, errors


def test_document_upload_without_javascript(browser, live_server, tmp_path):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(live_server.url + "/")
    page.set_input_files("#image", str(_document_png(tmp_path / "report.png")))
    page.click("#submit")
    page.wait_for_selector("h1#refusal")
    assert "so no result is given" in page.inner_text("[role=alert]")
    assert page.locator("#upload").is_visible() and page.locator("#heatmap").count() == 0
    context.close()
