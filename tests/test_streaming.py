"""Streaming: causal features and CMVN, the latency-controlled network, the search in pieces, the Stream, and
(with the short fsdd_stream recipe's model) the command line and the WebSocket service."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asr.config import to_dict
from asr.decoding import DecodeOptions
from asr.errors import AsrError
from asr.frontend import Cmvn, FeatureConfig, FeatureStream, mfcc
from asr.model import AcousticModel, ModelConfig, Network, checkpoint_dict
from asr.modelfile import check
from asr.tokenizer import CharTokenizer
from asr.transcribe import Recognizer

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
            lp, out_lengths = model(x, lengths)
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
    lp, _ = model(x, lengths)
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
    meta = check(checkpoint_dict(model, tok.to_dict(), to_dict(fc), stats), "test model")
    return Recognizer(meta, Network(meta), DecodeOptions(method=method, beam_size=8))


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_a_stream_ends_with_the_offline_text_whatever_the_pieces(fsdd_utts, method):
    from asr.audio import load_audio

    rec = _recognizer(chunk=4, method=method)
    wave = np.concatenate([load_audio(u.audio, 8_000) for u in fsdd_utts[:3]])
    offline = rec.search(rec.log_probs(wave))
    for piece in PIECES[1:]:
        stream = rec.stream(endpoint_silence=0)  # no endpoints: one utterance, as offline
        partials = _in_pieces(stream.accept, wave, piece)
        result = stream.finish()
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
