"""The demo page in a real browser: headless Chromium loads it, a clip is uploaded and run, and the
screenshot shows the localisation overlay. Slow (a browser and the app in a subprocess):
`pytest -m slow tests/test_demo_browser.py`; skipped where Chromium is not installed."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from tests.browser import Browser, chromium, free_port, run_on_page, start_demo
from tests.inference_media import tiny_models, write_clip

pytestmark = pytest.mark.slow


def test_a_clip_run_on_the_page_shows_the_overlay(tmp_path):
    if chromium() is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    pytest.importorskip("gradio", reason="the demo needs the optional extra: pip install 'avfusion[demo]'")
    from PIL import Image

    models = tiny_models(tmp_path / "models")
    clip = write_clip(tmp_path / "clip.mp4", 1.6, size=(96, 72))
    port, log = free_port(), tmp_path / "demo.log"
    app = start_demo([models["classify"], models["localize"]], port, log)
    browser = None
    try:
        browser = Browser()
        run_on_page(browser, port, clip, ["classify", "localize"])
        assert browser.js("!!document.querySelector('#localize-video video')")
        assert "clip.classify.json" in browser.js("document.querySelector('#status').innerText")
        box = browser.js("(() => { const r = document.querySelector('#localize-video video').getBoundingClientRect();"
                         " return [r.left + scrollX, r.top + scrollY, r.right + scrollX, r.bottom + scrollY]; })()")
        shot = browser.screenshot(tmp_path / "page.png")
    finally:
        if browser is not None:
            browser.close()
        app.terminate()
        app.wait(timeout=30)
    picture = np.asarray(Image.open(shot).convert("RGB").crop([int(v) for v in box])).astype(int)
    assert picture.shape[0] > 50 and picture.shape[1] > 50
    colourful = (picture.max(-1) - picture.min(-1)) > 100          # the overlay video: heatmap colours on grey frames
    assert colourful.mean() > 0.25
    # stopped with a signal, the app removed its temporary directory (uploads and outputs)
    workdir = re.search(r"uploads and outputs in (\S+)", log.read_text()).group(1)
    assert not os.path.exists(workdir)
