"""``asr serve`` on a free 127.0.0.1 port: the OpenAI-style endpoint with real FSDD audio, every kind of
bad input, and the web page driven in a real headless Chromium.

The server announces its address on its first stdout line only once its socket is bound, so the
tests read that line (no polling) and stop the server themselves.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from asr.manifest import read_manifest
from asr.serve import post_audio
from asr.transcribe import load_model
from conftest import REPO, asr


def post(url: str, file_name: str, data: bytes, **fields) -> tuple[int, str]:
    return post_audio(url, file_name, data, **{"model": "whisper-1", **fields})


@pytest.fixture(scope="module")
def onnx_model(fsdd_work, tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "fsdd.onnx"
    asr("export", str(fsdd_work / "model.pt"), "--onnx", str(path))
    return path


@pytest.fixture(scope="module")
def server(onnx_model):
    """``asr serve`` with 2 workers and small limits (1 MB, 3 s) so that the limits can be tested."""
    proc = subprocess.Popen([sys.executable, "-m", "asr", "serve", str(onnx_model), "--port", "0", "--workers", "2",
                             "--max-mb", "1", "--max-seconds", "3"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # written once the socket is bound
    assert "listening on http://127.0.0.1:" in line, line + proc.stderr.read()
    yield line.split()[4]
    proc.terminate()
    proc.wait(timeout=60)


@pytest.mark.parametrize("option, value, message", [
    ("--port", "99999", "--port 99999 is no TCP port"),  # before: an OverflowError traceback from bind()
    ("--workers", "0", "must be positive"),
    ("--max-mb", "0", "must be positive"),
    ("--chunk-seconds", "0", "chunk_seconds must be a positive number"),
])
def test_bad_service_options_are_refused_before_serving(onnx_model, option, value, message):
    r = asr("serve", str(onnx_model), option, value, check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr and message in r.stderr, r.stderr


def test_transcriptions_match_the_model_in_every_response_format(server, onnx_model, fsdd_work):
    utts = read_manifest(fsdd_work / "prepare" / "isolated" / "test.jsonl")[::20]
    direct = load_model(onnx_model)
    for u in utts:
        data = open(u.audio, "rb").read()
        status, body = post(server, os.path.basename(u.audio), data)
        assert status == 200, body
        assert json.loads(body) == {"text": direct.transcribe(u.audio).text}
    status, body = post(server, "a.wav", data, response_format="text")
    assert (status, body) == (200, direct.transcribe(u.audio).text + "\n")
    status, body = post(server, "a.wav", data, response_format="verbose_json")
    v = json.loads(body)
    assert status == 200 and v["text"] == direct.transcribe(u.audio).text and v["words"]
    assert 0 <= v["words"][0]["start"] < v["words"][0]["end"] <= v["duration"] + 0.1
    with urllib.request.urlopen(f"{server}health", timeout=30) as r:
        assert json.loads(r.read())["status"] == "ok"


def test_bad_input_gets_a_4xx_naming_the_problem_and_the_service_goes_on(server, fsdd_work):
    good = read_manifest(fsdd_work / "prepare" / "isolated" / "test.jsonl")[0]
    wav = open(good.audio, "rb").read()
    long = io.BytesIO()
    sf.write(long, np.zeros(8_000 * 5, np.float32), 8_000, format="WAV")  # 5 s: over --max-seconds 3
    cases = {
        "notes.txt": (b"this is not audio", 400, "not a readable audio file"),
        "empty.wav": (b"", 400, "empty"),
        "cut.wav": (wav[:30], 400, "not a readable audio file, or a truncated one"),
        "big.wav": (wav + b"\0" * 1_200_000, 413, "over this server's limit of 1 MB"),
        "long.wav": (long.getvalue(), 413, "over this server's limit of 3 s"),
    }
    for name, (data, code, words) in cases.items():
        status, body = post(server, name, data)
        assert status == code, (name, body)
        message = json.loads(body)["error"]["message"]
        assert words in message and (name in message or code == 413), (name, message)
    status, body = post(server, "a.wav", wav, response_format="srt")
    assert status == 400 and "response_format" in body
    status, body = post(server, "a.wav", wav)  # still serving
    assert status == 200 and json.loads(body)["text"]


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def test_the_web_page_transcribes_an_uploaded_file_in_chromium(server, fsdd_work, tmp_path):
    found = _chromium()
    if found is None:
        msg = "Chromium and chromedriver not installed (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,700"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    try:
        driver.set_script_timeout(60)
        driver.get(server)
        u = read_manifest(fsdd_work / "prepare" / "isolated" / "test.jsonl")[3]
        driver.find_element(By.ID, "file").send_keys(u.audio)
        # the page resolves window.asrWait(1) with the first finished request's outcome, before or after
        # this call: wait on that, not on a clock
        outcome = driver.execute_async_script("window.asrWait(1).then(arguments[arguments.length - 1]);")
        expected = load_model(fsdd_work / "model.pt").transcribe(u.audio).text
        assert outcome["text"] == expected
        assert driver.find_element(By.ID, "transcript").text == expected
        rows = driver.find_elements(By.CSS_SELECTOR, "#words tbody tr")
        assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows] == expected.split()
        shot = tmp_path / "serve-page.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 5_000
        print(f"screenshot: {shot}")
    finally:
        driver.quit()
