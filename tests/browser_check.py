"""Open a local HTML file in headless Chromium and report what a reader would meet: console errors, images that do
not decode, elements that stick out of their column; optionally a screenshot.

Speaks the Chrome DevTools protocol over ``--remote-debugging-pipe`` (JSON messages ended by NUL on file
descriptors 3 and 4), so it needs nothing but the Python standard library and a Chromium binary. Usable as a
script: ``python tests/browser_check.py page.html [--screenshot out.png]`` prints the report as JSON.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

# Runs in the page: every image's decode state, and every element whose box leaves its column (the body's content
# box) or whose content is wider than its own box (a table too wide for the page).
_INSPECT = """
(() => {
  const body = document.body.getBoundingClientRect();
  const style = getComputedStyle(document.body);
  const left = body.left + parseFloat(style.paddingLeft), right = body.right - parseFloat(style.paddingRight);
  const images = [...document.images].map(i => ({alt: i.alt.slice(0, 80), complete: i.complete,
    width: i.naturalWidth, height: i.naturalHeight, shown: Math.round(i.getBoundingClientRect().width)}));
  const overflow = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    const name = el.tagName.toLowerCase() + (el.className ? '.' + el.className : '');
    if (r.left < left - 1 || r.right > right + 1)
      overflow.push({element: name, left: Math.round(r.left), right: Math.round(r.right),
                     text: (el.textContent || '').slice(0, 60)});
    else if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible')
      overflow.push({element: name, scroll: el.scrollWidth, client: el.clientWidth,
                     text: (el.textContent || '').slice(0, 60)});
  }
  return JSON.stringify({images, overflow, column: [Math.round(left), Math.round(right)],
                         width: document.documentElement.scrollWidth, viewport: window.innerWidth});
})()
"""


def find_chromium() -> str | None:
    """A Chromium (or Chrome) executable on PATH, or None."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Pipe:
    """The DevTools protocol over a pipe: send a command, read replies and events until its answer."""

    def __init__(self, proc: subprocess.Popen, write_fd: int, read_fd: int):
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.next_id, self.buffer, self.events = 0, b"", []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read(timeout)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def _read(self, timeout: float) -> dict:
        import select

        deadline = time.monotonic() + timeout
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)


def check_page(path: str | os.PathLike, width: int = 1300, height: int = 900, screenshot: str | None = None,
               chromium: str | None = None, timeout: float = 60.0) -> dict:
    """Load ``path`` in headless Chromium at ``width`` x ``height`` and return ``{"errors": [...], "images":
    [...], "overflow": [...], "column": [left, right], "width": scroll width, "viewport": width}``."""
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError("no Chromium found on PATH")
    url = Path(path).resolve().as_uri()
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="chainforget-chromium-")

    def child_fds():  # Chromium reads commands on fd 3 and writes replies on fd 4
        os.dup2(to_chrome_r, 3)
        os.dup2(from_chrome_w, 4)

    args = [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"]
    proc = subprocess.Popen(args, preexec_fn=child_fds, pass_fds=(3, 4),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    pipe = _Pipe(proc, to_chrome_w, from_chrome_r)
    try:
        targets = pipe.send("Target.getTargets", timeout=timeout)["targetInfos"]
        page = next(t["targetId"] for t in targets if t["type"] == "page")
        session = pipe.send("Target.attachToTarget", {"targetId": page, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=session)
        pipe.send("Page.navigate", {"url": url}, session=session)
        pipe.wait_event("Page.loadEventFired", timeout)
        result = json.loads(pipe.send("Runtime.evaluate", {"expression": _INSPECT, "returnByValue": True},
                                      session=session)["result"]["value"])
        if screenshot:
            shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                             session=session, timeout=timeout)
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        errors = []
        for event in pipe.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text", "exception"))
            elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif event.get("method") == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(params["entry"].get("text", "error"))
        result["errors"] = errors
        return result
    finally:
        try:
            pipe.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - already gone; the process is reaped below either way
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(to_chrome_w)
        os.close(from_chrome_r)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    page = sys.argv[1]
    shot = sys.argv[sys.argv.index("--screenshot") + 1] if "--screenshot" in sys.argv else None
    print(json.dumps(check_page(page, screenshot=shot), indent=2))
