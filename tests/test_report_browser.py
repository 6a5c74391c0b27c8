"""report.html in a real headless Chromium: it renders with no console errors, and markup in
criteria text (untrusted registry data) shows as text instead of running.

Chromium is driven over the DevTools protocol on loopback, with aiohttp's websocket client.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from extract.evaluate.report import render_html
from extract.evaluate.scoring import score_trial, summarise

CHROMIUM = Path("/usr/bin/chromium")
PAYLOAD = '<script>document.title = "pwned"; console.error("injected")</script><img src=x onerror="alert(1)">'
TEXT = f"Inclusion Criteria:\n\n* ECOG 0-1 {PAYLOAD}\n* Measurable disease per RECIST 1.1"


def _metrics() -> tuple[dict, dict]:
    ecog = TEXT.index("ECOG 0-1")
    record = {
        "eligibility_text": TEXT,
        "criteria": [
            {"id": "inc-1", "kind": "inclusion", "text": TEXT[ecog - 2 : TEXT.index("\n* Meas")],
             "start": ecog - 2, "end": TEXT.index("\n* Meas")},
        ],  # fmt: skip
        "eligibility": {
            "performance_status": [{"scale": "ECOG", "min": 0, "max": 1, "evidence": {
                "criterion_id": "inc-1", "quote": "ECOG 0-1", "start": ecog, "end": ecog + 8}}],
            "brain_metastases": {"status": "excluded", "evidence": {
                "criterion_id": "inc-1", "quote": PAYLOAD, "start": TEXT.index(PAYLOAD),
                "end": TEXT.index(PAYLOAD) + len(PAYLOAD)}},
        },  # fmt: skip
        "extraction": {"ungrounded_items": 0},
    }
    gold = {
        "performance_status": [{"scale": "ECOG", "min": 0, "max": 1, "evidence": {"quote": "ECOG 0-1"}}],
        "measurable_disease": {"required": True, "standard": "RECIST 1.1", "evidence": {"quote": "Measurable disease"}},
    }
    trial = score_trial("NCT00000001", gold, record)
    metrics = {"run": {"run_id": "run-1", "backend": "rules", "model": None, "prompt_version": PAYLOAD},
               "split": "dev", "resamples": 10, "seed": 0, **summarise([trial], 10), "trials": [trial]}  # fmt: skip
    return metrics, {"NCT00000001": TEXT}


async def _load(url: str, profile: Path) -> dict:
    """Open `url` in headless Chromium; return console messages, exceptions and a few DOM facts."""
    browser = subprocess.Popen(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                page = next(t for t in await response.json() if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                return await _drive(ws, url)
    finally:
        browser.terminate()
        browser.wait(timeout=30)


async def _drive(ws: aiohttp.ClientWebSocketResponse, url: str) -> dict:
    ids = itertools.count(1)
    events: list[dict] = []

    async def call(method: str, **params) -> dict:
        message_id = next(ids)
        await ws.send_json({"id": message_id, "method": method, "params": params})
        while True:
            message = json.loads((await ws.receive(timeout=30)).data)
            if message.get("id") == message_id:
                assert "error" not in message, message
                return message.get("result", {})
            events.append(message)

    for domain in ("Runtime", "Log", "Page"):
        await call(f"{domain}.enable")
    await call("Page.navigate", url=url)
    while not any(e.get("method") == "Page.loadEventFired" for e in events):
        events.append(json.loads((await ws.receive(timeout=30)).data))
        if events[-1].get("method") == "Page.javascriptDialogOpening":  # an alert() blocks the page
            await call("Page.handleJavaScriptDialog", accept=True)
    await asyncio.sleep(0.5)  # let late errors (a failing image, an onerror handler) arrive
    facts = await call("Runtime.evaluate", returnByValue=True, expression="""({
        title: document.title,
        scripts: document.scripts.length,
        images: document.images.length,
        text: document.body.innerText,
        marks: [...document.querySelectorAll('mark')].map(m => m.className),
        rows: document.querySelectorAll('table tr').length,
    })""")
    problems = [
        e["params"] for e in events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "warning", "assert"))
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] in ("error", "warning"))
        or e.get("method") == "Page.javascriptDialogOpening"
    ]  # fmt: skip
    return {"problems": problems, **facts["result"]["value"]}


def test_report_renders_without_errors_and_shows_markup_as_text(tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get update && apt-get install -y chromium`")
    metrics, texts = _metrics()
    page = tmp_path / "report.html"
    page.write_text(render_html(metrics, texts))
    (tmp_path / "profile").mkdir()

    seen = asyncio.run(_load(page.as_uri(), tmp_path / "profile"))

    assert seen["problems"] == []
    assert seen["title"] == "eligex eval: run-1"
    assert seen["scripts"] == 0 and seen["images"] == 0
    assert PAYLOAD in seen["text"]  # the criterion's markup is shown, as text
    assert {"found", "spurious", "missed"} <= set(seen["marks"])
    assert seen["rows"] > 10
