"""Write docs/explain-page.png: the page of README's command, in headless Chromium (as the test).

    .venv/bin/python tools/explain_screenshot.py

Runs ``matnet explain --sizes 64,32,10 --data digits --html PAGE``, opens PAGE offline, picks the
equation ``dW1 = A0ᵀ · dZ1``, moves to step 12 and saves a screenshot of the window.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from matnet.cli import main

ROOT = Path(__file__).resolve().parents[1]


def screenshot(out: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        page_path = Path(folder) / "run.html"
        main(["explain", "--sizes", "64,32,10", "--data", "digits", "--html", str(page_path)])
        url = page_path.as_uri()
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"), args=["--no-sandbox"]
            )
            context = browser.new_context(viewport={"width": 1500, "height": 1250})
            context.set_offline(True)
            page = context.new_page()
            page.route("**/*", lambda r: r.continue_() if r.request.url == url else r.abort())
            page.goto(url)
            page.locator('#backward .eq[data-name="dW1"]').click()
            page.locator("#step").focus()
            for _ in range(12):
                page.keyboard.press("ArrowRight")
            page.mouse.move(0, 0)
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    # A 128-colour palette keeps the committed picture small (Pillow comes with the dev extra).
    from PIL import Image

    Image.open(out).convert("RGB").quantize(128).save(out, optimize=True)


if __name__ == "__main__":
    screenshot(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "explain-page.png")
