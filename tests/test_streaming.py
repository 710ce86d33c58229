"""Streaming: causal features and CMVN, the latency-controlled network, the search in pieces, the Stream, and
(with the short fsdd_stream recipe's model) the command line and the WebSocket service."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.core.config import to_dict
from asr.core.errors import AsrError
from asr.features.frontend import Cmvn, FeatureConfig, FeatureStream, mfcc
from asr.model.config import ModelConfig
from asr.model.modelfile import ModelFile
from asr.model.network import AcousticModel, Network, checkpoint_dict
from asr.recognize.recognizer import Recognizer
from asr.search.options import DecodeOptions
from asr.text.tokenizer import CharTokenizer

PIECES = (1, 37, 160, 1000, 10**6)  # samples per accept(): one sample, odd sizes, whole-signal


def _in_pieces(accept, x: np.ndarray, piece: int) -> list:
    return [accept(x[i : i + piece]) for i in range(0, len(x), piece)]


@pytest.mark.parametrize("deltas", [0, 1, 2])
@pytest.mark.parametrize("kind", ["mfcc", "fbank"])
def test_feature_stream_gives_the_offline_frames_in_any_pieces(deltas, kind):
    cfg = FeatureConfig(sample_rate=8_000, top_db=0.0, deltas=deltas, kind=kind)
    rng = np.random.default_rng(deltas)
    for n in (0, 1, 129, 2_345):
        x = (0.1 * rng.standard_normal(n)).astype(np.float32)
        ref = mfcc(x, cfg)
        for piece in PIECES:
            fs = FeatureStream(cfg)
            got = np.concatenate([*_in_pieces(fs.accept, x, piece), fs.finish()])
            assert got.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * max(1.0, float(np.abs(ref).max())))


def test_a_floor_below_the_peak_cannot_stream():
    with pytest.raises(AsrError, match="top_db=0"):
        FeatureStream(FeatureConfig(sample_rate=8_000))  # the default keeps 80 dB below the loudest frame


def test_cmvn_stream_equals_whole_utterance_normalisation():
    feats = np.random.default_rng(0).standard_normal((200, 6)).astype(np.float32) * 3 + 1
    for kind in ("online", "global", "none"):
        cmvn = Cmvn(kind, np.full(6, 0.5), np.full(6, 2.0), prior_frames=30)
        normalise = cmvn.stream()
        got = np.concatenate([normalise(feats[i : i + 7]) for i in range(0, 200, 7)])
        assert np.array_equal(got, cmvn(feats)), kind
    for kind in ("utterance", "speaker"):
        with pytest.raises(AsrError, match="cmvn=online or global"):
            Cmvn(kind, np.zeros(6), np.ones(6)).stream()


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_chunked_training_and_streaming_steps_agree(rnn, bidirectional):
    """The batch forward (what training runs, padded items of several lengths) equals the network run one
    chunk at a time with carried states (what a stream runs), for several chunk and context sizes."""
    torch.manual_seed(0)
    for chunk, right, stack in ((1, 0, 1), (3, 2, 2), (5, 5, 3), (8, 0, 1), (4, 7, 2)):
        cfg = ModelConfig(
            rnn=rnn, bidirectional=bidirectional, num_layers=3, hidden=16, stack=stack, chunk=chunk, right_context=right
        )
        model = AcousticModel(6, 10, cfg).eval()
        lengths = torch.tensor([23, 1, 17, 40])
        x = torch.randn(4, 40, 6)
        with torch.no_grad():
            lp, out_lengths, _ = model(x, lengths)
            for i, n in enumerate(lengths.tolist()):
                steps = model.stack_frames(x[i : i + 1, :n], torch.tensor([n]))
                state, outs = None, []
                for k in range(0, steps.shape[1], chunk):
                    o, state = model.step(steps[:, k : k + chunk + right], min(chunk, steps.shape[1] - k), state)
                    outs.append(o)
                got = torch.cat(outs)
                assert got.shape[0] == out_lengths[i]
                torch.testing.assert_close(got, lp[i, : out_lengths[i]], atol=1e-5, rtol=0)
    model.train()
    lp = model(x, lengths).log_probs
    lp.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)


def test_a_streaming_model_config_is_checked():
    with pytest.raises(ValueError, match="right_context"):
        ModelConfig(right_context=4)
    with pytest.raises(ValueError, match="projection"):
        ModelConfig(chunk=4, proj=64)
    assert ModelConfig(chunk=4).streaming and not ModelConfig().streaming


def _recognizer(chunk: int, method: str = "greedy", cmvn: str = "online", top_db: float = 0.0) -> Recognizer:
    """A small random streaming model (its text is noise, but the same noise offline and streamed)."""
    torch.manual_seed(1)
    fc = FeatureConfig(sample_rate=8_000, top_db=top_db, cmvn=cmvn)
    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz'")
    model = AcousticModel(fc.dim, len(tok.units), ModelConfig(hidden=32, num_layers=2, stack=3, chunk=chunk))
    stats = Cmvn(cmvn, np.zeros(fc.dim), np.full(fc.dim, 10.0)).to_dict()
    meta = ModelFile.from_dict(checkpoint_dict(model, tok.to_dict(), to_dict(fc), stats), "test model")
    return Recognizer(meta, Network(meta), DecodeOptions(method=method, beam_size=8))


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_a_stream_ends_with_the_offline_text_whatever_the_pieces(fsdd_utts, method):
    from asr.data.audio import load_audio

    rec = _recognizer(chunk=4, method=method)
    wave = np.concatenate([load_audio(u.audio, 8_000) for u in fsdd_utts[:3]])
    offline = rec.search(rec.log_probs(wave))
    for piece in PIECES[1:]:
        stream = rec.stream(endpoint_silence=0)  # no endpoints: one utterance, as offline
        partials = _in_pieces(stream.accept, wave, piece)
        stream.finish()
        result = stream.transcript
        assert result.text == offline.text and result.text
        assert [(w.word, w.start, w.end) for w in result.words] == [
            (w, s * rec.frame_seconds, (e + 1) * rec.frame_seconds) for w, s, e in offline.words
        ]
        assert all(0 < w.conf <= 1 for w in result.words)
        if piece < len(wave) // 2:
            assert any(p.text for p in partials[:-1])  # text before the end
    assert rec.transcribe(wave, 8_000).text  # transcribe() of a streaming model runs a stream


def test_offline_models_and_features_that_need_the_future_refuse_to_stream():
    with pytest.raises(AsrError, match="offline model"):
        _recognizer(chunk=0).stream()
    with pytest.raises(AsrError, match="cmvn=online or global"):
        _recognizer(chunk=4, cmvn="utterance").stream()
    with pytest.raises(AsrError, match="top_db=0"):
        _recognizer(chunk=4, top_db=80.0).stream()
    rec = _recognizer(chunk=4)
    with pytest.raises(AsrError, match="sample rate"):
        rec.stream(sample_rate=0)
    stream = rec.stream()
    stream.finish()
    with pytest.raises(AsrError, match="finished"):
        stream.accept(np.zeros(10, np.float32))
    with pytest.raises(AsrError, match="NaN"):
        rec.stream().accept(np.full(10, np.nan, np.float32))


# --- the short fsdd_stream recipe's model: the recipe, the command line, the WebSocket service ---------------


def _decoded(work, name: str) -> dict[str, str]:
    from asr.core.layout import DecodeDir
    from asr.core.textfiles import read_text

    return read_text(DecodeDir(work / "decode").set(name).hyp)


@pytest.fixture(scope="module")
def streamed(fsdd_stream_work):
    """The exported streaming model, 12 connected test utterances (audio at 8 kHz) and the decode stage's text."""
    from asr.data.audio import load_audio
    from asr.data.manifest import read_manifest
    from asr.recognize.recognizer import load_model

    utts = read_manifest(fsdd_stream_work / "prepare" / "connected" / "test.jsonl")[::9][:12]
    hyps = _decoded(fsdd_stream_work, "connected/test")
    return load_model(fsdd_stream_work / "model.pt"), [(u, load_audio(u.audio, 8_000), hyps[u.id]) for u in utts]


def test_a_stream_gives_the_decode_stage_text_of_every_utterance(streamed):
    rec, utts = streamed
    assert rec.streaming and sum(bool(hyp) for _, _, hyp in utts) >= 10
    rng = np.random.default_rng(0)
    for u, wave, hyp in utts:
        stream = rec.stream()
        i, partials = 0, []
        while i < len(wave):
            n = int(rng.integers(1, 2_000))  # pieces of random sizes, as a client sends them
            partials.append(stream.accept(wave[i : i + n]).text)
            i += n
        stream.finish()
        assert stream.transcript.text == hyp, u.id
        assert len(stream.segments) <= 1  # no endpoint inside one connected-digit recording
        if len(hyp.split()) > 2:
            assert any(p for p in partials[: len(partials) * 3 // 4]), u.id  # words before the end


def test_silence_ends_an_utterance_and_the_next_is_timed_from_the_stream_start(streamed):
    rec, utts = streamed
    (_, first, hyp1), (_, second, hyp2) = [x for x in utts if x[2]][:2]
    gap = (1e-4 * np.random.default_rng(1).standard_normal(8_000 * 2)).astype(np.float32)  # 2 s of near silence
    stream = rec.stream()
    updates = [stream.accept(x) for x in (first, gap, second)]
    assert [t.text for t in updates[1].finished] == [hyp1]  # ended during the silence, before the next words
    last = stream.finish()
    assert [t.text for t in last] == [hyp2] and stream.finish() == []  # the last utterance, once
    assert [s.text for s in stream.segments] == [hyp1, hyp2] and stream.transcript.text == f"{hyp1} {hyp2}"
    start2 = (len(first) + len(gap)) / 8_000
    second_words = stream.segments[1].words
    assert start2 - 0.1 <= second_words[0].start < second_words[-1].end <= start2 + len(second) / 8_000 + 0.1


def test_transcribe_stream_reads_raw_pcm_and_wav_from_standard_input(streamed, fsdd_stream_work, tmp_path):
    import io
    import json
    import subprocess
    import sys

    import soundfile as sf
    from helpers import REPO

    _, utts = streamed
    u, wave, hyp = next(x for x in utts if len(x[2].split()) > 2)
    pcm = np.clip(np.round(wave * 32768), -32768, 32767).astype("<i2")  # the file's own samples
    wav = io.BytesIO()
    sf.write(wav, pcm, 8_000, format="WAV", subtype="PCM_16")
    model = str(fsdd_stream_work / "model.pt")
    for data, extra in ((pcm.tobytes(), ["--rate", "8000"]), (wav.getvalue(), [])):
        r = subprocess.run(
            [sys.executable, "-m", "asr", "transcribe", model, "--stream", "-", *extra],
            input=data,
            capture_output=True,
            cwd=REPO,
            timeout=300,
        )
        lines = r.stdout.decode().splitlines()
        assert r.returncode == 0, r.stderr.decode()
        assert lines[-1] == f"final\t{hyp}"
        assert any(line.startswith("partial\t") and line != "partial\t" for line in lines[:-1])
    r = subprocess.run(
        [sys.executable, "-m", "asr", "transcribe", model, "--stream", u.audio, "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    last = json.loads(r.stdout.splitlines()[-1])
    assert last["text"] == hyp and [w["word"] for w in last["result"]] == hyp.split()


@pytest.fixture(scope="module")
def stream_server(fsdd_stream_work):
    """``asr serve`` of the streaming model on a free port (2 workers, 5 s without a message closes)."""
    from helpers import serving

    with serving(fsdd_stream_work / "model.pt", "--workers", "2", "--timeout", "5") as url:
        yield url.replace("http://", "ws://") + "v1/stream"


def _closed_with(ws) -> int:
    """The close code the server sent (after its last message).

    The raw frame is read: ``recv_data`` would answer the close, and that answer races the server's own close."""
    import websocket

    frame = ws.recv_frame()
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    return int.from_bytes(frame.data[:2], "big")


def test_a_vosk_client_streams_a_recording_in_pieces_of_any_size(stream_server, streamed):
    import json

    import websocket

    _, utts = streamed
    for (_, wave, hyp), piece in zip([x for x in utts if len(x[2].split()) > 2][:3], (160, 1_001, 4_000)):
        pcm = np.clip(np.round(wave * 32768), -32768, 32767).astype("<i2").tobytes()
        ws = websocket.create_connection(stream_server, timeout=60)
        ws.send(json.dumps({"config": {"sample_rate": 8000}}))
        replies = []
        for i in range(0, len(pcm), 2 * piece):
            ws.send_binary(pcm[i : i + 2 * piece])
            replies.append(json.loads(ws.recv()))  # one reply per message: a partial, or a result
        ws.send('{"eof" : 1}')
        final = json.loads(ws.recv())
        ws.close()
        texts = [r.get("partial", r.get("text")) for r in replies]
        assert any(texts[:-1]) and all(set(r) in ({"partial"}, {"result", "text"}) for r in replies)
        assert final["text"] == hyp and [w["word"] for w in final["result"]] == hyp.split()
        assert all(set(w) == {"word", "start", "end", "conf"} and w["start"] < w["end"] for w in final["result"])


@pytest.mark.parametrize(
    "messages, code, error",
    [
        (["not json"], 1007, "not JSON"),
        ([b"\x00\x01\x02"], 1007, "3 bytes"),
        (['{"config": {"sample_rate": 0}}'], 1008, "sample_rate 0"),
        (['{"config": {"sample_rate": "fast"}}'], 1008, "sample_rate 'fast'"),
        (['{"hello": 1}'], 1008, "unknown message"),
        ([b"\x00\x00" * 800, '{"config": {"sample_rate": 16000}}'], 1008, "a config after audio"),
        (['{"config": {"phrase_list": ["one two"]}}'], 1008, "['phrase_list']: not supported"),
        (['{"config": {"max_alternatives": 3}}'], 1008, "['max_alternatives']: not supported"),
        (['{"config": {"rate": 8000}}'], 1008, "config keys ['rate'] are not Vosk's"),
        (['{"eof": 1}', b"\x00\x00" * 800], 1008, "after eof"),
        (['{"config": {"sample_rate": 1' + "0" * 5_000 + "}}"], 1007, "not JSON"),  # past Python's int digits
        (["[" * 100_000 + "]" * 100_000], 1007, "not JSON"),  # past the parser's recursion
    ],
)
def test_bad_messages_get_an_error_and_a_close_and_the_service_goes_on(stream_server, streamed, messages, code, error):
    import json

    import websocket

    ws = websocket.create_connection(stream_server, timeout=60)
    replies = []
    for m in messages:
        (ws.send_binary if isinstance(m, bytes) else ws.send)(m)
        replies.append(json.loads(ws.recv()))
    assert "error" in replies[-1] and error in replies[-1]["error"], replies
    assert all("error" not in r for r in replies[:-1])
    assert _closed_with(ws) == code
    ws.shutdown()
    _, utts = streamed
    _, wave, hyp = utts[0]
    ok = websocket.create_connection(stream_server, timeout=60)  # the next client is served as before
    ok.send_binary(np.clip(np.round(wave * 32768), -32768, 32767).astype("<i2").tobytes())
    ok.recv()
    ok.send('{"eof": 1}')
    assert json.loads(ok.recv())["text"] == hyp
    ok.close()


@pytest.fixture(scope="module")
def busy_server(fsdd_stream_work):
    """``asr serve`` of the streaming model, one worker, room for 2 open requests or streams, 3 s timeouts."""
    from helpers import serving

    with serving(fsdd_stream_work / "model.pt", "--max-connections", "2", "--timeout", "3") as url:
        yield url


def _health(url: str) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(url + "health", timeout=30) as r:
        return json.loads(r.read())


def test_idle_sockets_are_closed_and_health_and_transcriptions_stay_answered(busy_server, streamed):
    """70 sockets that send nothing or half a request: every request got a 503 for as long as they were held."""
    import socket
    import urllib.parse

    from asr.serve.client import post_audio

    host, port = urllib.parse.urlsplit(busy_server).hostname, urllib.parse.urlsplit(busy_server).port
    idle = []
    for k in range(70):
        sock = socket.create_connection((host, port), timeout=30)
        if k % 2:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # half a header, never finished
        idle.append(sock)
    assert _health(busy_server)["status"] == "ok"
    _, utts = streamed
    _, wave, hyp = utts[0]
    pcm = np.clip(np.round(wave * 32768), -32768, 32767).astype("<i2")
    wav = io.BytesIO()
    sf.write(wav, pcm, 8_000, format="WAV", subtype="PCM_16")
    status, body = post_audio(busy_server, "a.wav", wav.getvalue())
    assert status == 200 and json.loads(body)["text"] == hyp, body
    for sock in idle:  # the server closes each once --timeout (3 s) passed without a whole header
        answer = b""
        while chunk := sock.recv(4096):  # blocks until the server answers or closes (30 s at most)
            answer += chunk
        assert answer in (b"", b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        sock.close()


def test_streams_past_the_limit_are_refused_with_1013_and_counted_in_health(busy_server, streamed):
    import websocket

    from asr.serve.client import post_audio

    url = busy_server.replace("http://", "ws://") + "v1/stream"
    _, utts = streamed
    pcm = np.clip(np.round(utts[0][1] * 32768), -32768, 32767).astype("<i2").tobytes()
    open_ = []
    for _ in range(2):
        ws = websocket.create_connection(url, timeout=60)
        ws.send_binary(pcm[:3200])
        assert "partial" in json.loads(ws.recv())  # being served: counted
        open_.append(ws)
    health = _health(busy_server)
    assert health["streams"] == 2 and health["max_connections"] == 2, health
    extra = websocket.create_connection(url, timeout=60)
    reply = json.loads(extra.recv())
    assert "busy" in reply["error"] and "2 stream(s)" in reply["error"], reply
    assert _closed_with(extra) == 1013
    status, body = post_audio(busy_server, "a.wav", b"RIFF")
    assert status == 503 and "busy" in json.loads(body)["error"]["message"], body
    for ws in open_:
        ws.send('{"eof": 1}')
        assert "text" in json.loads(ws.recv())
        ws.close()


def test_reset_ends_the_utterance_and_the_stream_goes_on_as_vosk_s_server_does(stream_server, streamed):
    """``{"reset": 1}`` was refused with 1008, a second config before audio too, and ``words: 0`` was ignored."""
    import websocket

    _, utts = streamed
    (_, first, hyp1), (_, second, hyp2) = [x for x in utts if x[2]][:2]
    ws = websocket.create_connection(stream_server, timeout=60)
    ws.send(json.dumps({"config": {"sample_rate": 16000}}))
    ws.send(json.dumps({"config": {"sample_rate": 8000, "words": 0}}))  # the last config before audio counts
    for wave, hyp in ((first, hyp1), (second, hyp2)):
        ws.send_binary(np.clip(np.round(wave * 32768), -32768, 32767).astype("<i2").tobytes())
        assert set(json.loads(ws.recv())) == {"partial"}  # no endpoint inside one recording
        ws.send(json.dumps({"reset": 1}))
        assert json.loads(ws.recv()) == {"text": hyp}  # words: 0, so no word list
    ws.send('{"eof": 1}')
    assert json.loads(ws.recv()) == {"text": ""}
    ws.close()


def test_a_message_over_the_limit_is_closed_with_1009(stream_server):
    import websocket

    from asr.serve.launch import MAX_STREAM_MESSAGE

    ws = websocket.create_connection(stream_server, timeout=60)
    # A 600 KB message (37 s of 8 kHz audio), of which only the header and one byte past the limit are sent: the
    # server reads all that was sent before it closes, so its socket ends with a FIN, never a reset that could
    # race the close frame (sending all 600 KB left unread bytes behind, and a reset, on a loaded machine).
    frame = websocket.ABNF.create_frame(b"\x00\x00" * 300_000, websocket.ABNF.OPCODE_BINARY).format()
    header = 2 + 8 + 4  # opcode and length byte, 64-bit length, mask
    ws.sock.sendall(frame[: header + MAX_STREAM_MESSAGE + 1])
    assert _closed_with(ws) == 1009
    ws.shutdown()


@pytest.mark.parametrize("rnn, bidirectional", [("lstm", True), ("gru", True), ("lstm", False)])
def test_the_streaming_model_exports_to_onnx_and_streams_there_alike(rnn, bidirectional, tmp_path, fsdd_utts):
    from asr.data.audio import load_audio
    from asr.model.onnx_export import to_onnx
    from asr.model.onnxrt import load

    torch.manual_seed(2)
    fc = FeatureConfig(sample_rate=8_000, top_db=0.0, cmvn="global")
    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz'")
    cfg = ModelConfig(rnn=rnn, bidirectional=bidirectional, hidden=24, num_layers=2, stack=3, chunk=5, right_context=3)
    model = AcousticModel(fc.dim, len(tok.units), cfg)
    stats = Cmvn("global", np.zeros(fc.dim), np.full(fc.dim, 10.0)).to_dict()
    torch.save(checkpoint_dict(model, tok.to_dict(), to_dict(fc), stats), tmp_path / "m.pt")
    to_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    meta, onnx_net = load(tmp_path / "m.onnx")
    torch_net = Network(ModelFile.from_dict(checkpoint_dict(model, tok.to_dict(), to_dict(fc), stats), "m"))
    feats = np.random.default_rng(0).standard_normal((100, fc.dim)).astype(np.float32)
    np.testing.assert_allclose(onnx_net(feats), torch_net(feats), atol=1e-4, rtol=0)
    ours = Recognizer(meta, onnx_net, DecodeOptions(method="greedy"))
    theirs = Recognizer(meta, torch_net, DecodeOptions(method="greedy"))
    wave = np.concatenate([load_audio(u.audio, 8_000) for u in fsdd_utts[:2]])
    stream = ours.stream()
    for i in range(0, len(wave), 700):
        stream.accept(wave[i : i + 700])
    stream.finish()
    assert stream.transcript.text == theirs.transcribe(wave, 8_000).text


def test_the_page_transcribes_live_from_a_microphone_in_chromium(stream_server, streamed, tmp_path):
    """Chromium's fake microphone plays a recording once (then silence): partials while it plays, the endpoint's
    result after it, then Stop; the waveform shows the words' spans and a click plays one."""
    import os
    import shutil

    import soundfile as sf

    browser, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (browser and driver_path):
        msg = "Chromium and chromedriver not installed (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    _, utts = streamed
    _, wave, hyp = next(x for x in utts if len(x[2].split()) > 2)
    mic = tmp_path / "mic.wav"
    sf.write(mic, np.concatenate([np.zeros(4_000, np.float32), wave]), 8_000, subtype="PCM_16")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=900,800",
        "--use-fake-ui-for-media-stream",  # allow the microphone without asking
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}%noloop",  # the recording once, then silence
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(arg)
    page = stream_server.replace("ws://", "http://").removesuffix("v1/stream")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_script_timeout(120)
        driver.get(page)
        # the page's own health answer shown (not a second request of ours, which could come back first)
        driver.execute_async_script("window.asrReady.then(() => arguments[arguments.length - 1]());")
        assert driver.find_element(By.ID, "live").is_displayed()
        driver.find_element(By.ID, "live-start").click()
        # the endpoint after the recording ends gives its result: window.asrWait(1) resolves with it
        first = driver.execute_async_script("window.asrWait(1).then(arguments[arguments.length - 1]);")
        assert first["text"].split() == hyp.split()
        assert driver.execute_script("return window.asrPartials.length") > 0  # text while it played
        driver.find_element(By.ID, "live-stop").click()
        done = driver.execute_async_script("window.asrWait(2).then(arguments[arguments.length - 1]);")
        assert done["live"] and done["text"] == hyp
        spans = driver.find_elements(By.CSS_SELECTOR, "#spans button")
        assert [b.text for b in spans] == hyp.split()
        spans[-1].click()
        played = driver.execute_script("return window.asrPlayed")
        assert played["word"] == hyp.split()[-1] and played["samples"] > 0
        driver.save_screenshot(str(tmp_path / "live.png"))
    finally:
        driver.quit()


def _channels(wav: bytes, n: int) -> bytes:
    """A WAV file's bytes with its fmt chunk's channel count set to ``n``."""
    at = wav.index(b"fmt ") + 10
    return wav[:at] + n.to_bytes(2, "little") + wav[at + 2 :]


def test_live_audio_reads_raw_pcm_and_wav_streams_and_names_a_bad_header():
    import io

    import soundfile as sf

    from asr.core.errors import AudioError
    from asr.data.audio import live_audio

    x = (np.arange(4_001) % 200 - 100).astype("<i2")
    rate, blocks = live_audio("-", 8_000, stdin=io.BytesIO(x.tobytes() + b"\x01"))  # a last half sample
    got = np.concatenate(list(blocks))
    assert rate == 8_000 and np.array_equal(got, x / 32768.0)
    wav = io.BytesIO()
    sf.write(wav, np.stack([x, x], 1), 16_000, format="WAV", subtype="PCM_16")  # stereo: mixed down
    rate, blocks = live_audio("-", 8_000, stdin=io.BytesIO(wav.getvalue()))
    assert rate == 16_000 and np.array_equal(np.concatenate(list(blocks)), x / 32768.0)
    eight = io.BytesIO()
    sf.write(eight, x / 32768.0, 8_000, format="WAV", subtype="PCM_U8")
    for data, message in (
        (b"RIFF\x00\x00\x00\x00AVI LIST", "not WAV"),
        (eight.getvalue(), "8 bits"),
        (wav.getvalue()[:30], "fmt chunk"),
        # channel counts a file's header is refused for (before: accepted on standard input; 0: "format 1")
        *((_channels(wav.getvalue(), n), f"declaring {n} channels") for n in (0, 64, 65_535)),
    ):
        with pytest.raises(AudioError, match=message):
            live_audio("-", 8_000, stdin=io.BytesIO(data))
