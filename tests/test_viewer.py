"""The HTML viewer in a real headless browser (Debian's chromium driven by Playwright): it loads
offline, steps through frames, toggles a head, and the canvas changes with no page errors.
Skipped when chromium or Playwright is missing, except in CI (CI set), where it must run."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from s3ta import agents, envs
from s3ta.analysis.recording import record
from s3ta.viz.viewer import write_viewer

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright is not installed")
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail("/usr/bin/chromium is missing in CI (apt-get install -y chromium)")
        pytest.skip("chromium is not installed")
    return sync_playwright


def test_viewer_in_headless_chromium(tmp_path):
    sync_playwright = _browser_or_skip()
    torch.manual_seed(0)
    env = envs.make("catch", 1, seed=0)
    agent = agents.build("s3ta-small", env.observation_shape, env.num_actions).eval()
    recording = record(agent, env, 1, seed=0, source={"env": "catch"})
    recording.save(tmp_path / "rec")
    page_path = write_viewer(recording)
    assert "http://" not in page_path.read_text() and "https://" not in page_path.read_text()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors, requests = [], []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_path.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=15000)
            canvas = "document.getElementById('main').toDataURL()"
            first = page.evaluate(canvas)
            page.click("#next")
            page.click("#next")
            assert page.evaluate("window.s3taViewer.state.t") == 2
            stepped = page.evaluate(canvas)
            assert stepped != first
            page.uncheck("#on0")  # toggle head 0 off
            toggled = page.evaluate(canvas)
            assert toggled != stepped
            page.select_option("#mode", "what-where")
            assert page.evaluate(canvas) != toggled
            page.click("#play")
            for _ in range(50):  # the page's CSP forbids eval, so poll instead of wait_for_function
                if page.evaluate("window.s3taViewer.state.t") >= 4:
                    break
                page.wait_for_timeout(100)
            assert page.evaluate("window.s3taViewer.state.t") >= 4
            page.click("#play")
            page.locator("#scrub").fill("6")
            assert page.evaluate("window.s3taViewer.state.t") == 6
            shot = page.screenshot(path=str(tmp_path / "viewer.png"))
            assert len(shot) > 10000
        finally:
            browser.close()
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
