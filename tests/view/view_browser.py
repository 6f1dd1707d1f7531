"""A small headless-Chromium driver over the DevTools protocol, for the view tests.

>>> with Chromium.launch() as browser:
...     page = browser.new_page(width=900, height=700)
...     page.goto(path.as_uri())
...     page.wait_for("document.querySelector('.tvz').dataset.ready === '1'")
...     page.move_mouse(300, 200)
...     assert not page.errors

Chromium runs as root here, so it needs --no-sandbox; the flags that stop background
networking keep it from trying (and loudly failing) to reach Google. Errors are collected
from every frame, out-of-process iframes included (auto-attached, flattened sessions).
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

__all__ = ["Chromium", "Page", "find_chromium"]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]


def find_chromium() -> str | None:
    """The path of a Chromium or Chrome binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """One browser process and its DevTools websocket."""

    def __init__(self, process, profile: str, socket) -> None:
        self.process, self.profile, self.socket = process, profile, socket
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self.pages: list[Page] = []

    @classmethod
    def launch(cls, binary: str | None = None, timeout: float = 30.0) -> Chromium:
        import websocket

        binary = binary or find_chromium()
        if binary is None:
            raise FileNotFoundError("no chromium binary on PATH (apt-get install -y chromium)")
        profile = tempfile.mkdtemp(prefix="tvz-chromium-")
        process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = pathlib.Path(profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"chromium did not open its DevTools port (exit code {process.poll()})")
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        socket = websocket.create_connection(
            f"ws://127.0.0.1:{port}{path}", timeout=timeout, suppress_origin=True
        )
        return cls(process, profile, socket)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            shutil.rmtree(self.profile, ignore_errors=True)

    # -- the protocol ------------------------------------------------------------------------

    def send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0
    ):
        """Send one command and return its result, dispatching the events that arrive meanwhile."""
        self._next_id += 1
        own = self._next_id
        message = {"id": own, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        # Event handlers may send commands of their own while this one waits, so replies are
        # filed by id rather than taken to be the answer to the latest command.
        while own not in self._replies:
            incoming = self._receive(deadline - time.monotonic())
            if "id" in incoming:
                self._replies[incoming["id"]] = incoming
            else:
                self._dispatch(incoming)
        reply = self._replies.pop(own)
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def pump(self, seconds: float) -> None:
        """Handle events for a while (error collection, frames attaching)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                incoming = self._receive(deadline - time.monotonic())
            except TimeoutError:
                return
            if "id" in incoming:
                self._replies[incoming["id"]] = incoming
            else:
                self._dispatch(incoming)

    def _receive(self, timeout: float) -> dict:
        import websocket

        self.socket.settimeout(max(timeout, 0.001))
        try:
            return json.loads(self.socket.recv())
        except websocket.WebSocketTimeoutException as error:
            raise TimeoutError("no message from chromium in time") from error

    def _dispatch(self, event: dict) -> None:
        for page in self.pages:
            if event.get("sessionId") in page.sessions:
                page.handle(event)

    def new_page(self, width: int = 1000, height: int = 800) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        self.pages.append(page)
        page.watch(session)
        self.send("Page.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        return page


class Page:
    """One tab: navigation, script evaluation, real mouse input, screenshots and the errors seen."""

    def __init__(self, browser: Chromium, target: str, session: str) -> None:
        self.browser, self.target, self.session = browser, target, session
        self.sessions = {session}
        self.errors: list[str] = []
        self.loaded = False
        self.frame_contexts: dict[str, tuple] = {}  # frameId -> (main-world context id, session)

    def watch(self, session: str) -> None:
        """Collect errors from one session (the page, or an iframe attached out of process)."""
        self.sessions.add(session)
        for domain in ("Runtime.enable", "Log.enable"):
            self.browser.send(domain, session=session)
        self.browser.send(
            "Target.setAutoAttach",
            {"autoAttach": True, "waitForDebuggerOnStart": False, "flatten": True},
            session=session,
        )

    def handle(self, event: dict) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description", details.get("text", ""))
            self.errors.append("exception: " + text)
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(
                "console.error: "
                + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            )
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append("log: " + params["entry"].get("text", ""))
        elif method == "Page.loadEventFired":
            self.loaded = True
        elif method == "Runtime.executionContextCreated":
            context = params["context"]
            aux = context.get("auxData", {})
            if aux.get("isDefault") and aux.get("frameId"):
                self.frame_contexts[aux["frameId"]] = (context["id"], event.get("sessionId"))
        elif method == "Target.attachedToTarget":
            # An out-of-process iframe: a session of its own, watched like the page.
            self.watch(params["sessionId"])
            self.browser.send("Runtime.runIfWaitingForDebugger", session=params["sessionId"])

    def send(self, method: str, params: dict | None = None):
        return self.browser.send(method, params, session=self.session)

    def goto(self, url: str, timeout: float = 20.0) -> None:
        self.loaded = False
        self.frame_contexts.clear()
        self.send("Page.navigate", {"url": url})
        deadline = time.monotonic() + timeout
        while not self.loaded:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not finish loading in {timeout} s")
            self.browser.pump(0.05)

    def evaluate(self, expression: str, context: tuple | None = None):
        """The JSON value of ``expression`` in the page, or in ``context`` (an (id, session) pair)."""
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        session = self.session
        if context is not None:
            params["contextId"], session = context[0], context[1] or self.session
        result = self.browser.send("Runtime.evaluate", params, session=session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluating {expression!r} failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0, context: tuple | None = None):
        """Poll until ``expression`` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression, context)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still false after {timeout} s; errors: {self.errors}")
            self.browser.pump(0.05)

    def hover_until(
        self,
        x: float,
        y: float,
        expression: str,
        context: tuple | None = None,
        attempts: int = 3,
        timeout: float = 5.0,
    ):
        """Move the mouse to (x, y) until ``expression`` holds; return its value.

        On a loaded machine the first move into a freshly laid-out iframe is sometimes lost,
        so the pointer leaves and comes back, a few times, before giving up.
        """
        for attempt in range(attempts):
            self.move_mouse(1, 1)
            self.move_mouse(x, y)
            try:
                return self.wait_for(expression, timeout, context)
            except TimeoutError:
                if attempt == attempts - 1:
                    raise

    def iframe_contexts(self, count: int, timeout: float = 15.0) -> list[tuple]:
        """The (context id, session) of each iframe's main world, in order of creation, once ``count`` exist.

        Chromium may run a sandboxed iframe out of process; its context then arrives on the
        iframe's own session, which is why contexts are collected from events, not the frame tree.
        """
        main = self.send("Page.getFrameTree")["frameTree"]["frame"]["id"]
        deadline = time.monotonic() + timeout
        while True:
            contexts = [context for frame, context in self.frame_contexts.items() if frame != main]
            if len(contexts) >= count or time.monotonic() > deadline:
                return contexts
            self.browser.pump(0.05)

    def move_mouse(self, x: float, y: float) -> None:
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})

    def click(self, x: float, y: float) -> None:
        self.move_mouse(x, y)
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
            )

    def double_click(self, x: float, y: float) -> None:
        """Two clicks as a person makes them: click events for each, then one dblclick."""
        self.move_mouse(x, y)
        for count in (1, 2):
            for kind in ("mousePressed", "mouseReleased"):
                self.send(
                    "Input.dispatchMouseEvent",
                    {"type": kind, "x": x, "y": y, "button": "left", "clickCount": count},
                )

    def press(self, key: str, code: str, key_code: int) -> None:
        for kind in ("rawKeyDown", "keyUp"):
            self.send(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": key, "code": code, "windowsVirtualKeyCode": key_code},
            )

    def center_of(self, selector: str, index: int = 0) -> tuple[float, float]:
        """Viewport coordinates of the middle of the index-th element matching ``selector``."""
        box = self.evaluate(
            f"(() => {{ const r = document.querySelectorAll({json.dumps(selector)})[{index}]"
            ".getBoundingClientRect();"
            "return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        return box[0], box[1]

    def screenshot(self, path: str | os.PathLike | None = None) -> bytes:
        png = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        if path is not None:
            pathlib.Path(path).write_bytes(png)
        return png
