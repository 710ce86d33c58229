"""``asr serve`` on a free 127.0.0.1 port: the OpenAI-style endpoint with real FSDD audio, every kind of
bad input, and the web page driven in a real headless Chromium.

The server announces its address on its first stdout line only once its socket is bound, so the
tests read that line (no polling) and stop the server themselves.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf
from helpers import REPO, asr

from asr.data.manifest import read_manifest
from asr.recognize.recognizer import load_model
from asr.serve.client import post_audio


def post(url: str, file_name: str, data: bytes, **fields) -> tuple[int, str]:
    return post_audio(url, file_name, data, **{"model": "whisper-1", **fields})


@pytest.fixture(scope="module")
def onnx_model(fsdd_work, tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "fsdd.onnx"
    asr("export", str(fsdd_work / "model.pt"), "--onnx", str(path))
    return path


@pytest.fixture(scope="module")
def server(onnx_model):
    """``asr serve`` with 2 workers and small limits (1 MB, 3 s, 5 s without body bytes) so that the limits can
    be tested."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asr",
            "serve",
            str(onnx_model),
            "--port",
            "0",
            "--workers",
            "2",
            "--max-mb",
            "1",
            "--max-seconds",
            "3",
            "--timeout",
            "5",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()  # written once the socket is bound
    assert "listening on http://127.0.0.1:" in line, line + proc.stderr.read()
    yield line.split()[4]
    proc.terminate()
    proc.wait(timeout=60)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--port", "99999", "--port 99999 is no TCP port"),  # before: an OverflowError traceback from bind()
        ("--workers", "0", "must be positive"),
        ("--max-mb", "0", "must be positive"),
        ("--chunk-seconds", "0", "chunk_seconds must be a positive number"),
    ],
)
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
    status, body = post(server, "a.wav", data, response_format="verbose_json", **{"timestamp_granularities[]": "word"})
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
    status, body = post(server, "a.wav", wav, response_format="doc")
    assert status == 400 and "response_format" in body
    status, body = post(server, "a.wav", wav)  # still serving
    assert status == 200 and json.loads(body)["text"]


def _wav(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def test_the_service_checks_audio_as_the_cli_does(server):
    """Before, the service answered 200 (with empty or wrong text) for all of these; the CLI refused them."""
    tone = (0.1 * np.sin(np.arange(8_000) / 3)).astype(np.float32)
    wav = _wav(tone, 8_000)
    nan = tone.copy()
    nan[100] = np.nan
    giga = bytearray(wav)
    giga[24:28] = (2_000_000_000).to_bytes(4, "little")  # the header's sample rate
    cases = {
        "cut.wav": (wav[:-4_000], "truncated: the header declares"),
        "nan.wav": (_wav(nan, 8_000, "FLOAT"), "NaN or infinite samples"),
        "slow.wav": (_wav(tone, 999), "sample rate 999 Hz is not supported"),
        "giga.wav": (bytes(giga), "sample rate 2000000000 Hz is not supported"),
    }
    for name, (data, words) in cases.items():
        status, body = post(server, name, data)
        message = json.loads(body)["error"]["message"]
        assert status == 400 and words in message and name in message, (name, status, body)


def _raw_request(url: str, head: bytes, body_parts, timeout: float = 60.0) -> tuple[int, dict]:
    """Send ``head`` and the ``body_parts`` on a plain socket (without ending the body), then read the answer."""
    import socket

    host, port = url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(head)
        try:
            for part in body_parts:
                s.sendall(part)
        except (BrokenPipeError, ConnectionResetError):  # the server answered and closed: read the answer
            pass
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(
            re.search(rb"content-length: (\d+)", answer.lower()).group(1)
        ):
            data = s.recv(65536)
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1])
    return status, json.loads(answer.split(b"\r\n\r\n", 1)[1])


def test_a_chunked_upload_is_stopped_at_the_limit_not_read_to_its_end(server):
    """2 MB sent chunked (no Content-Length) to a 1 MB server, the body never ended: before, the server waited
    for the rest (spooling it to disk), now it answers 413 once the limit is passed."""
    head = (
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    )
    form = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    piece = b"\0" * 65_536
    parts = [b"%x\r\n%s\r\n" % (len(p), p) for p in [form] + [piece] * 32]
    status, body = _raw_request(server, head, parts)
    assert status == 413 and "over this server's limit of 1 MB" in body["error"]["message"], body


def test_an_idle_upload_is_given_up_after_the_timeout(server):
    """A body that stops arriving: before, the connection was held with no answer for as long as the client
    liked (40 such made /health unanswerable); now a 408 after --timeout (5 s here)."""
    head = (
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    )
    status, body = _raw_request(server, head, [b"--b\r\n"])
    assert status == 408 and "stopped arriving for 5 s" in body["error"]["message"], body


def test_the_service_surface_answers_in_its_own_error_format(server, onnx_model):
    def get(path: str, method: str = "GET"):
        req = urllib.request.Request(f"{server}{path.lstrip('/')}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    assert get("/", "HEAD") == (200, b"")  # before: 405
    for path in ("/docs", "/openapi.json", "/redoc"):  # before: public
        status, body = get(path)
        assert status == 404 and json.loads(body)["error"]["message"], (path, body)
    status, body = get("/health")
    assert json.loads(body)["model"] == onnx_model.name  # before: the absolute path on the server
    # a form without its file: before FastAPI's {"detail": [...]} echoing the input
    status, body = post_audio_fields(server, {"model": "x" * 50, "response_format": "json"})
    assert status == 400 and json.loads(body)["error"]["message"] == "bad request: file: Field required", body
    assert "x" * 50 not in body
    # OpenAI's client with stream=True: before, a 200 it read no events from, silently
    status, body = post(server, "a.wav", b"RIFF", stream="true")
    assert status == 400 and "stream=true" in json.loads(body)["error"]["message"], body


def post_audio_fields(url: str, fields: dict) -> tuple[int, str]:
    boundary = "b0undary"
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        )
        + f"--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        f"{url.rstrip('/')}/v1/audio/transcriptions",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_workers_die_with_a_killed_server_and_the_port_is_free_again(onnx_model):
    """SIGKILL of ``asr serve --workers 2``: before, its workers went on serving the old model and a restart
    failed with "Address already in use"."""
    import queue
    import select
    import signal
    import socket
    import threading

    with socket.socket() as s:  # a free port, named so that the restart can ask for the same one
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    cmd = [sys.executable, "-m", "asr", "serve", str(onnx_model), "--port", port, "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "listening on" in proc.stdout.readline()
    # each worker says so once it serves; read by a thread, so that a worker that never does (uvicorn may replace
    # a worker it finds unresponsive) fails the test with what the server said instead of hanging it
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in iter(proc.stderr.readline, "")], daemon=True).start()
    workers, said = [], []
    while len(workers) < 2:
        try:
            line = lines.get(timeout=300)
        except queue.Empty:
            proc.kill()
            pytest.fail(f"no two workers ready within 300 s; the server said: {said}")
        said.append(line)
        if "ready" in line:
            workers.append(int(line.split()[3]))
    fds = [os.pidfd_open(pid) for pid in workers]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    try:
        for fd in fds:  # a pidfd becomes readable when its process exits
            assert select.select([fd], [], [], 60)[0], "a worker outlived the killed server"
    finally:
        for fd in fds:
            os.close(fd)
    again = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = again.stdout.readline()
        assert "listening on" in line, line + again.stderr.read()
    finally:
        again.terminate()
        again.wait(timeout=60)


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


def test_an_offline_model_refuses_live_streams_with_a_reason(server):
    import websocket

    ws = websocket.create_connection(server.replace("http://", "ws://") + "v1/stream", timeout=60)
    reply = json.loads(ws.recv())
    assert "offline" in reply["error"] and "/v1/audio/transcriptions" in reply["error"]
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(data[:2], "big") == 1008
    ws.close()
    with urllib.request.urlopen(f"{server}health", timeout=30) as r:
        assert json.loads(r.read())["streaming"] is False
