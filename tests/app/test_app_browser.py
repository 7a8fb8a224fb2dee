"""genprop-app in a real headless Chromium (selenium, the system chromedriver; nothing downloaded).

``genprop-app`` runs in a subprocess on the tiny export; the browser uploads a toy video and an
edited first frame, runs, and checks that the result video plays in the page and that the served
mp4 decodes with the input's frame count. Bad uploads must show their message in the page. Skips
with the reason when Chromium or chromedriver is missing (``apt-get install chromium
chromium-driver``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
SERVER_START_S = 90  # importing torch and gradio on a loaded 2-core machine
RUN_S = 60
DOCS_SCREENSHOT = "GENPROP_APP_SCREENSHOT"  # set to a path to keep a small copy of the screenshot


def _which(names: tuple[str, ...]) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_export: Path, toy_cases: Path, tmp_path_factory) -> Iterator[str]:
    """``genprop-app`` on the tiny export, in a subprocess; yields its URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "server.log"
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    argv = [
        sys.executable,
        "-m",
        "genprop_app.cli",
        "--model",
        str(tiny_export),
        "--port",
        str(port),
    ]
    argv += ["--cases", str(toy_cases), "--max-frames", "8"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"genprop-app exited with {proc.returncode}: {log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"genprop-app did not answer in {SERVER_START_S} s: {log}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium through the system chromedriver (selenium-manager stays offline)."""
    binary, driver = _which(BROWSERS), shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip(
            "Chromium or chromedriver not found (apt-get install chromium chromium-driver): "
            f"browser={binary}, driver={driver}"
        )
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must not download a browser or driver
    pytest.importorskip("selenium", reason="selenium is not installed (make install has it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1700",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield drv
    finally:
        drv.quit()


def _wait(what: str, probe: Callable[[], object], timeout: float, shot: Callable[[], Path]):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; screenshot: {shot()}")
        time.sleep(0.25)


def test_page_runs_an_uploaded_edit_and_shows_bad_uploads(
    browser, server: str, toy, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    d = browser
    screenshot = tmp_path / "genprop_app.png"

    def shot() -> Path:
        d.save_screenshot(str(screenshot))
        return screenshot

    def message() -> str:
        # Gradio re-renders the box while an event is pending; a box not (yet) in the page reads
        # as no message, so the waits below retry instead of failing on the first poll.
        js = "const t = document.querySelector('#message textarea'); return t ? t.value : '';"
        return d.execute_script(js) or ""

    def message_with(needle: str, timeout: float = 20) -> str:
        return _wait(
            f"a message with {needle!r}", lambda: needle in message() and message(), timeout, shot
        )

    def upload(elem_id: str, path: Path) -> None:
        d.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]").send_keys(str(path))

    d.get(server)
    page_ready = "#video-upload input[type=file]", "#message textarea"
    _wait(
        "the page", lambda: all(d.find_elements(By.CSS_SELECTOR, c) for c in page_ready), 30, shot
    )

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00 not a video " * 64)
    upload("video-upload", bad)
    text = message_with("broken.mp4")
    assert "not a readable video" in text, f"{text!r}; screenshot: {shot()}"
    assert "/" not in text, f"a server path is shown: {text!r}"
    assert "Traceback" not in d.page_source

    upload("video-upload", toy.mp4)
    text = message_with("in.mp4")
    assert text.startswith("Loaded in.mp4: 5 frames of 32x32"), f"{text!r}; screenshot: {shot()}"

    d.execute_script("document.querySelector('#edited-acc button').click()")
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(small)
    edited_input = "#edited-upload input[type=file]"
    _wait("the edit input", lambda: d.find_elements(By.CSS_SELECTOR, edited_input), 10, shot)
    upload("edited-upload", small)
    text = message_with("small.png")
    assert "the edited frame is 24x20 but the video is 32x32" in text, f"screenshot: {shot()}"

    upload("edited-upload", toy.edit_png)
    message_with("uploaded edited frame")
    d.find_element(By.CSS_SELECTOR, "#run").click()
    message_with("Done", RUN_S)
    assert "Done: 5 frames of 32x32" in message(), f"{message()!r}; screenshot: {shot()}"

    state_js = (
        "const v = document.querySelector('#result-video video');"
        "return v && [v.src, v.readyState, v.duration, v.error && v.error.code];"
    )
    src, ready, duration, error = _wait(
        "the result video to load",
        lambda: (s := d.execute_script(state_js)) and s[1] >= 1 and s,
        20,
        shot,
    )
    assert error is None and duration == pytest.approx(5 / 8, abs=0.05), (
        f"the result video does not play: readyState {ready}, duration {duration}, error {error}; "
        f"screenshot: {shot()}"
    )
    served = tmp_path / "served.mp4"
    with urllib.request.urlopen(src, timeout=10) as r:
        served.write_bytes(r.read())
    with av.open(str(served)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (32, 32, 3), f"screenshot: {shot()}"
    assert np.abs(frames[0].astype(int) - toy.edit).mean() < 8, "frame 0 is the edited frame"
    shot()
    assert screenshot.stat().st_size > 0
    if os.environ.get(DOCS_SCREENSHOT):  # regenerate docs/app.png (see docs/app.md)
        _save_small(screenshot, Path(os.environ[DOCS_SCREENSHOT]))


def _save_small(src: Path, dst: Path, width: int = 900) -> None:
    """A palette PNG of ``src`` at ``width`` pixels (the docs' copy stays well under 200 KB)."""
    with Image.open(src) as im:
        small = im.convert("RGB").resize((width, round(im.height * width / im.width)))
    small.quantize(colors=128).save(dst, optimize=True)
