"""Driving `avfusion demo` in a real browser: Debian's headless Chromium over the DevTools protocol
(through a pipe: no driver, no download), for the browser test and the screenshot in docs/demo.md.

    python -m tests.browser -c CHECKPOINT [-c ...] --video CLIP --tasks classify,localize -o shot.png

starts `avfusion demo` on a free port, uploads CLIP on the page, presses Run, waits for the localisation
overlay and saves a screenshot of the page.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


#: run CHROMIUM with the pipe ends given as fds 3 (its input) and 4 (its output); through high numbers
#: first, so that neither move overwrites the other
REMAP = ("import fcntl, os, sys\n"
         "a, b = (fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3])\n"
         "os.dup2(a, 3)\nos.dup2(b, 4)\nos.close(a)\nos.close(b)\n"
         "os.execv(sys.argv[3], sys.argv[3:])")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """A headless Chromium page spoken to over --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self, width: int = 1280, height: int = 900):
        exe = chromium()
        if exe is None:
            raise RuntimeError("chromium not found (Debian: apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="avfusion-chromium-")
        to_browser, self._cmd = os.pipe()
        self._events, from_browser = os.pipe()
        args = ["--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--mute-audio", "--disable-dev-shm-usage", f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen([sys.executable, "-c", REMAP, str(to_browser), str(from_browser), exe, *args],
                                     pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id, self.session = b"", 0, None
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.send("Page.enable")
            self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
        except BaseException:
            self.close()
            raise

    def send(self, method: str, timeout: float = 30.0, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._cmd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._events], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer {method} in {timeout} s")
            chunk = os.read(self._events, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium exited")
            self._buffer += chunk

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not self.js(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page did not show {what} in {timeout} s")
            time.sleep(0.25)

    def upload(self, selector: str, path: str | Path) -> None:
        root = self.send("DOM.getDocument", depth=-1, pierce=True)["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise RuntimeError(f"no {selector} on the page")
        self.send("DOM.setFileInputFiles", nodeId=node, files=[str(Path(path).resolve())])

    def screenshot(self, path: str | Path, colours: int | None = None) -> Path:
        """The whole page as a PNG (its height as laid out); `colours`: quantise to keep the file small."""
        height = int(self.js("document.documentElement.scrollHeight"))
        width = int(self.js("document.documentElement.clientWidth"))
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)
        time.sleep(1.0)
        data = base64.b64decode(self.send("Page.captureScreenshot", format="png", timeout=60)["data"])
        path = Path(path)
        path.write_bytes(data)
        if colours:
            from PIL import Image
            Image.open(path).convert("RGB").quantize(colors=colours).save(path, optimize=True)
        return path

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd)
        os.close(self._events)
        shutil.rmtree(self.profile, ignore_errors=True)


def start_demo(checkpoints, port: int, log: Path, timeout: float = 180.0, extra=()) -> subprocess.Popen:
    """`avfusion demo` in a subprocess, answering on 127.0.0.1:port (stop it with .terminate())."""
    argv = [sys.executable, "-m", "avfusion", "demo", "--port", str(port)]
    for c in checkpoints:
        argv += ["-c", str(c)]
    argv += list(extra)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"avfusion demo did not start:\n{log.read_text()}")
            time.sleep(0.5)


def run_on_page(browser: Browser, port: int, video: Path, tasks, regions: str = "", timeout: float = 300.0) -> None:
    """Open the page, upload `video`, tick `tasks`, press Run, wait for the outputs of `tasks`."""
    browser.send("Page.navigate", url=f"http://127.0.0.1:{port}/")
    browser.wait_for("!!document.querySelector('#run')", 60, "the Run button")
    browser.upload("#video input[type=file]", video)
    browser.wait_for("!!document.querySelector('#video video')", 60, "the uploaded video")
    browser.js(f"""(() => {{
        const wanted = {json.dumps(list(tasks))};
        for (const box of document.querySelectorAll('#tasks input[type=checkbox]')) {{
            const name = box.closest('label').innerText.trim();
            if (box.checked !== wanted.includes(name)) box.click();
        }}
        return true; }})()""")
    if regions:
        browser.js(f"""(() => {{ const t = document.querySelector('#regions textarea');
            t.value = {json.dumps(regions)}; t.dispatchEvent(new Event('input', {{bubbles: true}})); return true; }})()""")
    browser.js("document.querySelector('#run').click(), true")
    done = ["!!document.querySelector('#status p, #status strong')"]
    if "localize" in tasks:
        done.append("(() => { const i = document.querySelector('#localize-sheet img'); "
                    "return !!i && i.complete && i.naturalWidth > 0; })()")
    browser.wait_for(" && ".join(done), timeout, "the outputs")
    time.sleep(2.0)                                          # let the videos show their first frame


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", "-c", action="append", required=True)
    p.add_argument("--video", required=True, type=Path)
    p.add_argument("--tasks", default="classify,localize")
    p.add_argument("--regions", default="")
    p.add_argument("--labels", help="passed to `avfusion demo --labels`")
    p.add_argument("--output", "-o", type=Path, required=True)
    p.add_argument("--colours", type=int, default=128, help="quantise the PNG to this many colours (0: keep)")
    args = p.parse_args(argv)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        app = start_demo(args.checkpoint, port, Path(tmp) / "demo.log",
                         extra=["--labels", args.labels] if args.labels else [])
        browser = None
        try:
            browser = Browser()
            run_on_page(browser, port, args.video, args.tasks.split(","), args.regions)
            browser.screenshot(args.output, args.colours or None)
        finally:
            if browser is not None:
                browser.close()
            app.terminate()
            app.wait(timeout=30)
    print(f"{args.output}: {args.output.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
