import json
import math
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import build_features

from asr.core.config import to_dict
from asr.core.ctc import ctc_min_frames, greedy
from asr.core.errors import AsrError, ConfigError
from asr.data.augment import AugmentConfig
from asr.data.batching import Batch, make_batches
from asr.features.store import FeatureStore
from asr.model.config import ModelConfig
from asr.model.network import AcousticModel, build_from_checkpoint, read_checkpoint
from asr.pipeline import recipe
from asr.text.tokenizer import CharTokenizer
from asr.train.data import Spelling, load_data
from asr.train.stage import TrainConfig, train

REPO = Path(__file__).resolve().parent.parent
TINY = TrainConfig(
    train_sets=("tiny",),
    dev_sets=("tiny",),
    model=ModelConfig(num_layers=1, hidden=64, dropout=0.0),
    lr=1e-2,
    epochs=40,
    batch_frames=60,
    early_stop=0,
    average_last=1,
    threads=1,
    checkpoint_every=0,
    schedule="plateau",
    warmup=0.0,
    lr_patience=100,
)  # a constant LR


def test_tiny_model_overfits_real_speech(tiny_features, tmp_path):
    summary = train(TINY, tiny_features, tmp_path, tmp_path / "partial", log=lambda m: None)
    # per-token CTC loss of a memorised set; a model that only outputs blanks sits near 3
    assert summary["final_train_loss"] < 0.1
    assert summary["dev_wer"] == 0.0
    ckpt = read_checkpoint(tmp_path / "model.pt")  # weights_only=True inside
    model = build_from_checkpoint(ckpt)
    store = FeatureStore(tiny_features)
    fs = store.open("tiny")
    tok = CharTokenizer.from_dict(ckpt["tokenizer"])
    for i, u in enumerate(fs.utts):
        x = torch.from_numpy(store.cmvn(fs[i], u["speaker"]))[None]
        log_probs, lengths, _ = model(x, torch.tensor([len(x[0])]))
        assert tok.decode(greedy(log_probs, lengths)[0]) == u["text"]
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert any((tmp_path / "tb").iterdir())
    assert json.loads((tmp_path / "history.json").read_text())[-1]["epoch"] == 40


def test_model_shapes_stacking_and_padding_invariance():
    torch.manual_seed(0)
    for rnn, stack, proj in (("lstm", 1, 0), ("gru", 2, 0), ("lstm", 3, 16)):
        m = AcousticModel(5, 7, ModelConfig(rnn=rnn, num_layers=2, hidden=32, proj=proj, stack=stack, dropout=0)).eval()
        x = torch.randn(3, 10, 5)
        lengths = torch.tensor([10, 7, 4])
        out, out_len, _ = m(x, lengths)
        assert out.shape == (3, math.ceil(10 / stack), 7)
        assert out_len.tolist() == [math.ceil(n / stack) for n in (10, 7, 4)]
        # packing: an item alone gives the same output as inside a padded batch
        alone = m(x[1:2, :7], lengths[1:2]).log_probs
        torch.testing.assert_close(alone[0], out[1, : out_len[1]], rtol=1e-5, atol=1e-5)


def test_a_convolutional_front_end_keeps_each_utterance_its_own_and_exports_to_onnx(tmp_path):
    from asr.features.frontend import Cmvn, FeatureConfig
    from asr.model.info import describe
    from asr.model.modelfile import ModelFile
    from asr.model.network import Network, checkpoint_dict
    from asr.model.onnx_export import to_onnx
    from asr.model.onnxrt import load

    with pytest.raises(ValueError, match="a streaming model .* has none"):
        ModelConfig(conv=8, chunk=4)
    torch.manual_seed(0)
    fc = FeatureConfig(kind="fbank", n_mels=23, deltas=0)
    tok = CharTokenizer("abc")
    model = AcousticModel(fc.dim, len(tok.units), ModelConfig(num_layers=2, hidden=16, stack=3, conv=4, dropout=0))
    assert model.rnn.input_size == 4 * 6  # 23 features halved twice (rounded up): 12, then 6
    x, lengths = torch.randn(3, 20, fc.dim), torch.tensor([20, 13, 2])
    out, out_len, _ = model(x, lengths)
    assert out_len.tolist() == [7, 5, 1] and out.shape == (3, 7, len(tok.units))
    for b, n in enumerate(lengths.tolist()):  # padding (and what lies in it) never reaches an utterance
        alone = model(x[b : b + 1, :n], lengths[b : b + 1]).log_probs
        torch.testing.assert_close(alone[0], out[b, : out_len[b]], rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(out[0].sum(), list(model.front.parameters()))
    assert all(float(g.abs().max()) > 0 for g in grads)
    stats = Cmvn("global", np.zeros(fc.dim), np.ones(fc.dim)).to_dict()
    ckpt = checkpoint_dict(model, tok.to_dict(), to_dict(fc), stats)
    torch.save(ckpt, tmp_path / "m.pt")
    to_onnx(tmp_path / "m.pt", tmp_path / "m.onnx")
    assert "after 2 convolutions of 4 channels (x3 in time)" in describe(tmp_path / "m.pt")
    _, onnx_net = load(tmp_path / "m.onnx")
    feats = np.random.default_rng(0).standard_normal((31, fc.dim)).astype(np.float32)
    np.testing.assert_allclose(onnx_net(feats), Network(ModelFile.from_dict(ckpt, "m"))(feats), atol=1e-4, rtol=0)


def test_cpu_unpacked_rnn_equals_packed_rnn_with_gradients():
    # the CPU path runs each direction over the padded batch (oneDNN kernel); it must give
    # what nn.LSTM/GRU over a packed batch gives (the CUDA path), outputs and gradients
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(0)
    for rnn, bidirectional in (("lstm", True), ("gru", True), ("lstm", False)):
        m = AcousticModel(
            6, 5, ModelConfig(rnn=rnn, bidirectional=bidirectional, num_layers=3, hidden=16, stack=1, dropout=0)
        )
        x, lengths = torch.randn(4, 12, 6), torch.tensor([12, 3, 9, 1])
        # a random weighting of the real frames' log-probabilities as the loss
        weights = torch.randn(4, 12, 5) * (torch.arange(12)[None, :, None] < lengths[:, None, None])
        ours = m(x, lengths).log_probs
        grads = torch.autograd.grad((ours * weights).sum(), list(m.parameters()))
        h, _ = m.rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        h, _ = pad_packed_sequence(h, batch_first=True, total_length=12)
        ref = m.output(h).log_softmax(-1)
        ref_grads = torch.autograd.grad((ref * weights).sum(), list(m.parameters()))
        with torch.no_grad():  # inference takes the packed path
            inference = m(x, lengths).log_probs
        for b, n in enumerate(lengths):
            torch.testing.assert_close(ours[b, :n], ref[b, :n], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(inference[b, :n], ref[b, :n], rtol=1e-5, atol=1e-5)
        assert min(float(g.abs().max()) for g in ref_grads) > 1e-3  # every parameter gets a real gradient
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_intermediate_ctc_reads_the_chosen_layer_and_weights_both_losses():
    import torch.nn.functional as F
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from asr.train.trainer import ctc_loss

    for bad in ({"inter_ctc": 3}, {"inter_ctc": 1, "proj": 8}):
        with pytest.raises(ValueError, match="inter_ctc is an RNN layer below the top"):
            ModelConfig(num_layers=3, hidden=16, **bad)
    with pytest.raises(ValueError, match="inter_ctc_weight"):
        TrainConfig(inter_ctc_weight=1.0)
    torch.manual_seed(0)
    x, lengths = torch.randn(3, 14, 6), torch.tensor([14, 5, 9])
    y, yl = torch.tensor([1, 2, 3, 2, 4, 1, 3]), torch.tensor([3, 2, 2])
    for layer in (1, 2):
        m = AcousticModel(6, 5, ModelConfig(num_layers=3, hidden=16, stack=1, dropout=0, inter_ctc=layer))
        top, out_len, mid = m(x, lengths, inter=True)
        plain = m(x, lengths).log_probs
        torch.testing.assert_close(top, plain, rtol=1e-5, atol=1e-5)  # the top layer is the model's output
        # the intermediate head reads RNN layer `layer`: an nn.LSTM of that many layers with the same weights
        below = torch.nn.LSTM(6, 16, num_layers=layer, batch_first=True, bidirectional=True)
        below.load_state_dict({k: v for k, v in m.rnn.state_dict().items() if int(k.split("_l")[1][0]) < layer})
        h, _ = below(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        h, _ = pad_packed_sequence(h, batch_first=True, total_length=14)
        ref = m.inter_output(h).log_softmax(-1)
        for b, n in enumerate(lengths):
            torch.testing.assert_close(mid[b, :n], ref[b, :n], rtol=1e-5, atol=1e-5)

        top_loss, mid_loss = (
            F.ctc_loss(lp.transpose(0, 1), y, out_len, yl, reduction="mean", zero_infinity=True) for lp in (top, mid)
        )
        loss, _ = ctc_loss(m, Batch(x, lengths, y, yl), torch.device("cpu"), "fp32", 0.3)
        torch.testing.assert_close(loss, 0.7 * top_loss + 0.3 * mid_loss)
        loss.backward()
        assert float(m.inter_output.weight.grad.abs().max()) > 0
        # the packed path (CUDA's: cuDNN) gives the same outputs and gradients as the CPU's padded one
        for rnn in ("lstm", "gru"):
            m = AcousticModel(6, 5, ModelConfig(rnn=rnn, num_layers=3, hidden=16, stack=1, dropout=0, inter_ctc=layer))
            results = []
            for pack in (False, True):
                m.pack = pack
                top, _, mid = m(x, lengths, inter=True)
                weights = torch.randn(2, *top.shape, generator=torch.Generator().manual_seed(1))
                weights = weights * (torch.arange(14)[None, None, :, None] < lengths[None, :, None, None])
                loss = (top * weights[0]).sum() + (mid * weights[1]).sum()
                results.append((top, mid, torch.autograd.grad(loss, list(m.parameters()))))
            (top0, mid0, g0), (top1, mid1, g1) = results
            for b, n in enumerate(lengths):
                torch.testing.assert_close(top1[b, :n], top0[b, :n], rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(mid1[b, :n], mid0[b, :n], rtol=1e-5, atol=1e-5)
            for a, r in zip(g1, g0):
                torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-6)
    # a streaming model: the head reads layer 1 of the chunked computation (a 1-layer chunked model's output)
    m = AcousticModel(6, 5, ModelConfig(num_layers=2, hidden=16, dropout=0, chunk=4, right_context=2, inter_ctc=1))
    top, _, mid = m(x, lengths, inter=True)
    torch.testing.assert_close(top, m(x, lengths).log_probs, rtol=1e-5, atol=1e-5)
    below = AcousticModel(6, 5, ModelConfig(num_layers=1, hidden=16, dropout=0, chunk=4, right_context=2))
    below.rnn.load_state_dict({k: v for k, v in m.rnn.state_dict().items() if "_l0" in k})
    ref = m.inter_output(below._rnn_chunked(x, lengths)).log_softmax(-1)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(mid[b, :n], ref[b, :n], rtol=1e-5, atol=1e-5)


def test_a_model_trained_with_intermediate_ctc_ships_without_it(tiny_features, tmp_path):
    from asr.model.info import describe
    from asr.model.modelfile import ModelFile
    from asr.model.network import Network
    from asr.model.onnx_export import to_onnx
    from asr.model.onnxrt import load

    cfg = replace(TINY, model=ModelConfig(num_layers=2, hidden=64, dropout=0.0, inter_ctc=1), epochs=40)
    summary = train(cfg, tiny_features, tmp_path, tmp_path / "partial", log=lambda m: None)
    assert summary["dev_wer"] == 0.0  # it still learns the tiny set
    ckpt = read_checkpoint(tmp_path / "model.pt")
    assert "inter_output.weight" in ckpt["state_dict"]
    assert "intermediate CTC after layer 1 (training only)" in describe(tmp_path / "model.pt")
    to_onnx(tmp_path / "model.pt", tmp_path / "m.onnx")  # decoding reads the top layer alone
    _, onnx_net = load(tmp_path / "m.onnx")
    feats = np.random.default_rng(0).standard_normal((40, ckpt["input_dim"])).astype(np.float32)
    np.testing.assert_allclose(onnx_net(feats), Network(ModelFile.from_dict(ckpt, "m"))(feats), atol=1e-4, rtol=0)


DIGIT_PHONES = {
    "zero": "Z IH R OW",
    "one": "W AH N",
    "two": "T UW",
    "three": "TH R IY",
    "four": "F AO R",
    "five": "F AY V",
    "six": "S IH K S",
    "seven": "S EH V AH N",
    "eight": "EY T",
    "nine": "N AY N",
}


def test_intermediate_ctc_over_other_units_reads_its_own_targets():
    import torch.nn.functional as F

    from asr.text.tokenizer import PhoneTokenizer
    from asr.train.data import Data, collate
    from asr.train.trainer import ctc_loss

    with pytest.raises(ValueError, match="inter_vocab"):
        ModelConfig(num_layers=2, hidden=8, inter_vocab=7)  # a head's size without the head
    torch.manual_seed(0)
    x, lengths = torch.randn(3, 14, 6), torch.tensor([14, 5, 9])
    y, yl = torch.tensor([1, 2, 3, 2, 4, 1, 3]), torch.tensor([3, 2, 2])
    aux, auxl = torch.tensor([6, 1, 5, 2, 3, 4, 6, 2, 1]), torch.tensor([4, 2, 3])
    m = AcousticModel(6, 5, ModelConfig(num_layers=3, hidden=16, stack=1, dropout=0, inter_ctc=2, inter_vocab=7))
    top, out_len, mid = m(x, lengths, inter=True)
    assert top.shape[-1] == 5 and mid.shape[-1] == 7
    top_loss = F.ctc_loss(top.transpose(0, 1), y, out_len, yl, reduction="mean", zero_infinity=True)
    mid_loss = F.ctc_loss(mid.transpose(0, 1), aux, out_len, auxl, reduction="mean", zero_infinity=True)
    loss, _ = ctc_loss(m, Batch(x, lengths, y, yl, aux, auxl), torch.device("cpu"), "fp32", 0.3)
    torch.testing.assert_close(loss, 0.7 * top_loss + 0.3 * mid_loss)

    # batches carry both target sequences, and a piece of a batch keeps each utterance's own
    feats = [np.full((n, 2), k, np.float32) for k, n in enumerate((4, 7, 5))]
    data = Data(
        sets=[feats],
        items=[(0, 0), (0, 1), (0, 2)],
        labels=[[1], [2, 3], [4, 5, 6]],
        frames=np.array([4, 7, 5]),
        ids=["a", "b", "c"],
        speakers=["s"] * 3,
        texts=["", "", ""],
        inter_labels=[[7, 8], [9], [10, 11, 12]],
    )
    batch = collate(data, [0, 1, 2], None)
    fields = ("lengths", "targets", "target_lengths", "inter_targets", "inter_target_lengths")
    assert [getattr(batch, f).tolist() for f in fields] == [
        [4, 7, 5],
        [1, 2, 3, 4, 5, 6],
        [1, 2, 3],
        [7, 8, 9, 10, 11, 12],
        [2, 1, 3],
    ]
    piece = batch.select([2, 0])
    assert [getattr(piece, f).tolist() for f in fields] == [[5, 4], [4, 5, 6, 1], [3, 1], [10, 11, 12, 7, 8], [3, 2]]
    assert piece.feats.shape == (2, 5, 2) and float(piece.feats[0, 0, 0]) == 2.0
    # without intermediate targets there are none, also in a piece
    plain = collate(replace(data, inter_labels=None), [0, 1, 2], None).select([1])
    assert plain.inter_targets is None and plain.inter_target_lengths is None and plain.targets.tolist() == [2, 3]

    # too short for the intermediate targets is too short: the longer of the two sequences decides
    store_like = type("S", (), {})
    tok = PhoneTokenizer(["A", "B"])
    fs = type("FS", (), {"utts": [{"id": "u", "text": "x", "frames": 3, "speaker": "s"}], "__getitem__": None})()
    store_like.expand = staticmethod(lambda names: ["n"])
    store_like.open = staticmethod(lambda name: fs)
    kept, short = load_data(
        store_like, ["n"], Spelling(tok, lambda t: "A"), 1, inter=Spelling(tok, lambda t: "A B A B")
    )
    assert not kept.items and short == [("u", 3, 4)]


def _digit_lexicon(folder: Path) -> Path:
    folder.mkdir()
    (folder / "lexicon.txt").write_text("".join(f"{w} {p}\n" for w, p in DIGIT_PHONES.items()))
    (folder / "g2p.txt").write_text("")
    return folder


def _decode_greedy(features: Path, lexicon: Path, train_dir: Path, out: Path):
    """The decode stage's output for the set ``tiny``, greedy, of the model in ``train_dir``."""
    from asr.core.context import Stage, StageContext
    from asr.core.layout import DecodeDir
    from asr.decode import stage as decode

    out.mkdir()
    cfg = decode.DecodeConfig(sets=("tiny",), tune_sets=(), search=decode.DecodeOptions(method="greedy"))
    inputs = {"features": features, "lexicon": lexicon, "train": train_dir}
    decode.stage(StageContext(Stage(6, "decode", decode.stage), cfg, out, inputs, None, log=lambda m: None))
    return DecodeDir(out).set("tiny")


def test_phones_at_a_middle_layer_under_characters_are_learnt_and_kept(tiny_features, tmp_path):
    from asr.model.info import describe
    from asr.text.tokenizer import tokenizer_from_dict

    lexicon = _digit_lexicon(tmp_path / "lexicon")
    model_cfg = ModelConfig(num_layers=2, hidden=64, dropout=0.0, inter_ctc=1)
    cfg = replace(TINY, model=model_cfg, inter_units="phone", epochs=40)
    summary = train(cfg, tiny_features, tmp_path / "out", tmp_path / "partial", log=lambda m: None, lexicon_dir=lexicon)
    assert summary["dev_wer"] == 0.0  # the characters on top are learnt
    ckpt = read_checkpoint(tmp_path / "out" / "model.pt")
    phones = tokenizer_from_dict(ckpt["inter_tokenizer"])
    assert ckpt["tokenizer"]["type"] == "char" and ckpt["inter_tokenizer"]["type"] == "phone"
    assert ckpt["model"]["inter_vocab"] == len(phones) == ckpt["state_dict"]["inter_output.weight"].shape[0]
    assert f"intermediate CTC after layer 1 over {len(phones)} phone units (training only)" in describe(
        tmp_path / "out" / "model.pt"
    )
    # ... and so are the phones below them: the middle layer's head spells each utterance in the lexicon's phones
    model = build_from_checkpoint(ckpt).eval()
    store = FeatureStore(tiny_features)
    tiny = store.open("tiny")
    with torch.no_grad():
        for k, u in enumerate(tiny.utts):
            x = torch.as_tensor(store.cmvn(tiny[k], u["speaker"]))[None]
            _, n, mid = model(x, torch.tensor([len(x[0])]), inter=True)
            assert phones.decode(greedy(mid, n)[0]) == DIGIT_PHONES[u["text"]], u["id"]

    # the decode stage scores its greedy output as words (a character model), though the recipe has a lexicon
    decoded = _decode_greedy(tiny_features, lexicon, tmp_path / "out", tmp_path / "dec")
    assert not decoded.greedy_ref.exists() and decoded.greedy.read_text() == decoded.ref.read_text()

    # the reverse (characters under phones) trains too; the settings that cannot work are named
    cfg = replace(cfg, units="phone", inter_units="char", epochs=2)
    train(cfg, tiny_features, tmp_path / "rev", tmp_path / "rev_partial", log=lambda m: None, lexicon_dir=lexicon)
    ckpt = read_checkpoint(tmp_path / "rev" / "model.pt")
    assert ckpt["tokenizer"]["type"] == "phone" and ckpt["inter_tokenizer"]["type"] == "char"
    assert _decode_greedy(tiny_features, lexicon, tmp_path / "rev", tmp_path / "rev_dec").greedy_ref.is_file()
    with pytest.raises(AsrError, match="set train.model.inter_ctc"):
        train(replace(cfg, model=ModelConfig(num_layers=2)), tiny_features, tmp_path / "x", tmp_path / "xp")
    with pytest.raises(ConfigError, match="set train.model.inter_ctc"):  # a recipe refuses it before anything runs
        recipe.pipeline("fsdd", str(tmp_path / "work"), ["train.inter_units=phone"])
    with pytest.raises(ConfigError, match="set train.model.inter_ctc"):  # and so does its cross-validation
        recipe.pipeline("fsdd_loso", str(tmp_path / "loso"), ["train.inter_units=phone"])
    empty = tmp_path / "none"
    empty.mkdir()  # the lexicon stage's output for a recipe without one
    with pytest.raises(AsrError, match="set lexicon.path"):
        train(
            replace(cfg, units="char", inter_units="phone"),
            tiny_features,
            tmp_path / "y",
            tmp_path / "yp",
            lexicon_dir=empty,
        )


def test_onednn_primitive_cache_is_capped_unless_the_user_set_it():
    code = "import asr, os; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}

    def run(e):
        return subprocess.run(
            [sys.executable, "-c", code], env=e, cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert run(env) == "16"
    assert run({**env, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "256"}) == "256"


def test_batches_are_frame_bounded_sorted_then_shuffled():
    frames = torch.randint(10, 200, (500,)).numpy()
    for epoch in (0, 1, 2):
        batches = make_batches(frames, 2_000, epoch, seed=1)
        assert sorted(i for b in batches for i in b) == list(range(500))
        assert all(len(b) * max(frames[i] for i in b) <= 2_000 or len(b) == 1 for b in batches)
    first = make_batches(frames, 2_000, 0, 1)
    assert [max(frames[i] for i in b) for b in first] == sorted(max(frames[i] for i in b) for b in first)
    assert make_batches(frames, 2_000, 1, 1) == make_batches(frames, 2_000, 1, 1)
    assert make_batches(frames, 2_000, 1, 1) != make_batches(frames, 2_000, 2, 1)


def test_too_short_utterance_is_reported_at_load_and_never_inf(fsdd_utts, tmp_path):
    long_text = "one two three four five six seven eight nine zero"
    utts = fsdd_utts[:5] + [replace(fsdd_utts[5], id="liar", text=long_text)]
    feats = build_features(tmp_path / "w", {"tiny": utts})
    store = FeatureStore(feats)
    tok = CharTokenizer.from_texts(u.text for u in utts)
    messages = []
    data, short = load_data(store, ["tiny"], Spelling(tok), 3, log=messages.append)
    assert [s[0] for s in short] == ["liar"] and short[0][2] == ctc_min_frames(tok.encode(long_text))
    assert "liar" in messages[0] and "left out" in messages[0]
    assert "liar" not in data.ids and len(data.ids) == 5
    cfg = replace(TINY, model=replace(TINY.model, stack=3), epochs=2)
    summary = train(cfg, feats, tmp_path / "out", tmp_path / "partial", log=lambda m: None)
    assert summary["too_short"] == 2  # once in train, once in dev
    assert math.isfinite(summary["final_train_loss"]) and summary["skipped_steps"] == 0
    assert "liar" in (tmp_path / "out" / "too_short.txt").read_text()


def _train_cmd(feats, out, partial, cfg):
    return [
        sys.executable,
        "-m",
        "asr.train.stage",
        "--features",
        str(feats),
        "--out",
        str(out),
        "--partial",
        str(partial),
        "--config",
        json.dumps(to_dict(cfg)),
    ]


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(fsdd_utts, tmp_path):
    # bit-exact on the CPU; CUDA's RNN and CTC backward kernels are not deterministic (tests/test_gpu.py).
    # Augmented training: a reverberated/noised/VTLP copy of every utterance, and SpecAugment
    six = [u for u in fsdd_utts if u.speaker == "jackson"][:6]
    tiny_features = build_features(tmp_path / "feats", {"tiny": six}, augment=AugmentConfig(copies=1, rooms=2))
    cfg = replace(
        TINY,
        epochs=6,
        evaluations=6,
        batch_frames=150,
        min_batches=1,
        checkpoint_every=1,
        spec_augment=True,
        average_last=3,
        model=replace(TINY.model, dropout=0.2, num_layers=2),
        device="cpu",
    )
    ref = subprocess.run(
        _train_cmd(tiny_features, tmp_path / "ref", tmp_path / "ref_p", cfg), cwd=REPO, capture_output=True, text=True
    )
    assert ref.returncode == 0, ref.stderr
    # stop deterministically early in epoch 3 (the process kills itself there)
    frames = FeatureStore(tiny_features).open("tiny")
    frames = np.array([u["frames"] for u in frames.utts])
    counts = [len(make_batches(frames, cfg.batch_frames, e, cfg.seed)) for e in range(cfg.epochs)]
    # every update checkpoints, but one with a dev evaluation (6 at even intervals) after it (train.eval):
    # stop at the first update of epoch 3 that has none
    eval_every = math.ceil(sum(counts) / cfg.evaluations)
    step = counts[0] + counts[1] + 1
    step += step % eval_every == 0
    batch = step - counts[0] - counts[1]
    assert batch < counts[2]
    out, partial = tmp_path / "run", tmp_path / "run_p"
    env = {**os.environ, "ASR_TEST_STOP_AT": f"train.checkpoint:{step - step // eval_every}"}
    killed = subprocess.run(_train_cmd(tiny_features, out, partial, cfg), cwd=REPO, capture_output=True, env=env)
    assert killed.returncode == -signal.SIGKILL
    assert not (out / "model.pt").exists()
    state = torch.load(partial / "checkpoint.pt", weights_only=True)["state"]
    assert (state["epoch"], state["batch"]) == (2, batch)
    again = subprocess.run(_train_cmd(tiny_features, out, partial, cfg), cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    h_ref = json.loads((tmp_path / "ref" / "history.json").read_text())
    h_run = json.loads((out / "history.json").read_text())
    assert len(h_ref) == len(h_run) == 6
    for a, b in zip(h_ref, h_run):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6, abs=1e-7)
        assert a["dev_loss"] == pytest.approx(b["dev_loss"], rel=1e-6, abs=1e-7)


def test_two_process_gloo_ddp(tiny_features, tmp_path):
    cfg = replace(TINY, epochs=3, evaluations=3, batch_frames=150, average_last=2, device="cpu")  # Gloo, also on a GPU
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "asr.train.stage",
        *_train_cmd(tiny_features, tmp_path / "out", tmp_path / "p", cfg)[3:],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    ckpt = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    model = build_from_checkpoint(ckpt)
    assert model.output.out_features == len(ckpt["tokenizer"]["units"])
    hist = json.loads((tmp_path / "out" / "history.json").read_text())
    assert len(hist) == 3 and hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_non_finite_gradients_skip_the_step_and_are_counted(fsdd_utts, tmp_path):
    feats = build_features(tmp_path / "w", {"tiny": fsdd_utts[:4]}, cmvn="none")
    fs = FeatureStore(feats).open("tiny")
    data = np.memmap(
        f"{feats}/tiny.f32", dtype=np.float32, mode="r+", shape=(sum(u["frames"] for u in fs.utts), fs.dim)
    )
    data[fs.utts[1]["start"]] = np.nan  # one corrupt frame in one utterance
    data.flush()
    cfg = replace(TINY, epochs=2, batch_frames=60)  # one utterance per batch
    summary = train(cfg, feats, tmp_path / "out", tmp_path / "p", log=lambda m: None)
    assert summary["skipped_steps"] == 2  # the corrupt utterance, once per epoch
    ckpt = read_checkpoint(tmp_path / "out" / "model.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


class _Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("planted", ["checkpoint.pt", "eval99.pt"])
def test_planted_pickles_in_the_checkpoint_folder_are_refused_without_running(tiny_features, tmp_path, planted):
    # the resume checkpoint, and the evaluated models averaged at the end (eval99 sorts last)
    from asr.core.errors import AsrError

    partial = tmp_path / "partial"
    partial.mkdir()
    marker = tmp_path / "ran"
    torch.save({"model": _Payload(marker)}, partial / planted)
    with pytest.raises(AsrError, match=f"{planted}: not a file of tensors and plain data, refused without running"):
        train(replace(TINY, epochs=2, average_last=3), tiny_features, tmp_path / "out", partial, log=lambda m: None)
    assert not marker.exists()


def test_a_checkpoint_folder_the_runner_did_not_write_is_discarded(tmp_path):
    from asr.core.context import Stage
    from asr.pipeline.runner import Pipeline

    seen = []
    work = tmp_path / "w"
    (work / ".partial-a").mkdir(parents=True)
    (work / ".partial-a" / "checkpoint.pt").write_bytes(b"planted")  # no KEY file: not ours

    def stage(ctx):
        seen.extend(p.name for p in ctx.partial.iterdir())

    Pipeline([Stage(1, "a", stage)], {"a": TINY}, work).run(log=lambda m: None)
    assert seen == ["KEY"]


def test_subword_units_round_trip_every_transcript(so762_root):
    from asr.corpora.speechocean762 import read_split
    from asr.text.tokenizer import SubwordTokenizer, tokenizer_from_dict

    texts = [u.text for u in read_split(so762_root, "train")[0]]
    for kind in ("bpe", "unigram"):
        tok = SubwordTokenizer.train(texts, 300, kind)
        assert len(tok) == 300 and tok.units[0] == "<blk>"
        back = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
        assert back.units == tok.units
        for t in texts:
            ids = back.encode(t)
            assert 0 not in ids and back.decode(ids) == t and back.words(ids, list(range(len(ids))))[0] == t
    with pytest.raises(Exception, match="outside the alphabet"):
        tok.encode("caf\u00e9")


def test_a_model_with_subword_units_trains_loads_safely_and_transcribes(tiny_features, tmp_path):
    from asr.recognize.recognizer import load_model

    cfg = replace(TINY, units="bpe", vocab_size=24)
    summary = train(cfg, tiny_features, tmp_path, tmp_path / "partial", log=lambda m: None)
    assert summary["dev_wer"] == 0.0
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    assert ckpt["tokenizer"]["type"] == "sentencepiece" and len(ckpt["tokenizer"]["units"]) == 24
    store = FeatureStore(tiny_features)
    utts = store.open("tiny").utts
    for method in ("greedy", "beam"):
        rec = load_model(tmp_path / "model.pt", method=method)
        for u in utts[:3]:
            t = rec.transcribe(u["audio"])
            assert t.text == u["text"] and [w.word for w in t.words] == u["text"].split(), method


def test_spec_augment_starts_after_the_set_share_of_updates(tiny_features, tmp_path):
    base = replace(TINY, epochs=3, evaluations=3, model=replace(TINY.model, dropout=0.0))
    plain = train(base, tiny_features, tmp_path / "a", tmp_path / "ap", log=lambda m: None)
    later = train(
        replace(base, spec_augment=True, spec_augment_from=2 / 3),
        tiny_features,
        tmp_path / "b",
        tmp_path / "bp",
        log=lambda m: None,
    )
    assert plain["epochs"] == later["epochs"] == 3
    assert later["schedule"]["spec_augment_from"] == 2 * later["schedule"]["batches_per_epoch"]
    h_plain = json.loads((tmp_path / "a" / "history.json").read_text())
    h_later = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["train_loss"] for h in h_plain[:2]] == [h["train_loss"] for h in h_later[:2]]  # clean epochs
    assert h_plain[2]["train_loss"] != h_later[2]["train_loss"]  # masked from the third on


def test_the_schedule_scales_with_the_training_audio():
    from asr.train.config import plan

    cfg = TrainConfig(batch_frames=8_000)
    tiny = plan(cfg, np.full(30, 400), 0.01)  # 30 utterances of 4 s: 2 minutes
    assert tiny.updates == cfg.min_updates  # not 10 epochs of 2 batches
    assert tiny.batch_frames == 1_200 and tiny.batches_per_epoch >= cfg.min_batches
    hours = {h: plan(cfg, np.full(int(h * 3600), 100), 0.01) for h in (1, 4, 100)}  # 1-second utterances
    assert [hours[h].updates for h in (1, 4, 100)] == [1_000, 2_000, 10_000]  # sqrt of the hours
    assert all(s.batch_frames == 8_000 for s in hours.values())
    assert hours[100].updates / hours[100].batches_per_epoch < 10 < hours[1].updates / hours[1].batches_per_epoch
    assert plan(replace(cfg, epochs=3), np.full(3600, 100), 0.01).updates == 3 * hours[1].batches_per_epoch
    assert plan(replace(cfg, updates=123), np.full(3600, 100), 0.01).updates == 123
    # utterances of many lengths: epochs after the first pack less tightly (jittered lengths), and
    # ``epochs=3`` is three whole passes, each by its own batches
    from asr.data.batching import make_batches

    varied = np.random.default_rng(0).integers(100, 1_500, size=2_000)
    three = plan(replace(cfg, epochs=3), varied, 0.01)
    counts = [len(make_batches(varied, three.batch_frames, e, cfg.seed)) for e in range(3)]
    assert three.updates == sum(counts) and counts[0] == three.batches_per_epoch < counts[1] and three.epochs == 3
    assert plan(replace(cfg, epochs=3), varied, 0.01, world=2).updates == sum(c // 2 for c in counts)
    s = hours[1]
    assert (s.warmup, s.eval_every) == (50, s.batches_per_epoch)  # dev once an epoch by default ...
    assert plan(replace(cfg, evaluations=20), np.full(3600, 100), 0.01).eval_every == 50  # ... or 20 times a run
    cosine = replace(cfg, schedule="cosine")
    lr = [s.lr_factor(step, cosine) for step in range(s.updates)]
    assert lr[0] < 0.05 and lr[s.warmup] == pytest.approx(1.0)  # warm-up, then the peak ...
    assert all(a >= b for a, b in zip(lr[s.warmup :], lr[s.warmup + 1 :]))  # ... decaying ...
    assert lr[-1] == pytest.approx(cfg.final_lr, abs=1e-4)  # ... to the final share
    assert s.lr_factor(s.warmup + 1, cfg) == 1.0  # the default, plateau: held after the warm-up
    assert s.lr_factor(900, replace(cfg, schedule="plateau")) == 1.0  # held: dev plateaus decay it


def test_plateau_decay_halves_the_lr_after_the_dev_loss_stalls_past_its_patience():
    from asr.train.trainer import TrainState

    st = TrainState()
    scales = []
    for loss in (2.0, 1.5, 1.6, 1.5, 1.7, 1.4, 1.45, 1.41, 1.42):
        st.plateau(loss, patience=1, decay=0.5)
        scales.append(st.lr_scale)
    # 1.6 and 1.5 do not beat 1.5: halved on the second; 1.4 improves; 1.45, 1.41 stall: halved again
    assert scales == [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_background_batch_workers_train_the_same_model(fsdd_utts, tmp_path):
    # a DataLoader with 2 worker processes builds the batches ahead; nothing random happens there,
    # so the model and its history equal those of batches built in the training process
    feats = build_features(tmp_path / "w", {"tiny": fsdd_utts[:12]}, shard_hours=0.001)  # several shards, too
    assert len(FeatureStore(feats).open("tiny").paths) > 1
    runs = {}
    for workers in (0, 2):
        cfg = replace(TINY, epochs=3, batch_frames=150, spec_augment=True, loader_workers=workers, device="cpu")
        train(cfg, feats, tmp_path / f"out{workers}", tmp_path / f"p{workers}", log=lambda m: None)
        hist = json.loads((tmp_path / f"out{workers}" / "history.json").read_text())
        runs[workers] = (
            [{k: v for k, v in h.items() if "seconds" not in k} for h in hist],
            read_checkpoint(tmp_path / f"out{workers}" / "model.pt")["state_dict"],
        )
    assert runs[0][0] == runs[2][0]
    assert all(torch.equal(runs[0][1][k], runs[2][1][k]) for k in runs[0][1])
    with pytest.raises(ValueError, match="loader_workers must be >= 0"):
        replace(TINY, loader_workers=-2)


class _RoomFor(torch.nn.Module):
    """The model on a device with room for fewer than ``limit`` padded frames: a larger batch raises the
    out-of-memory error CUDA raises; ``tries`` counts the batches sent."""

    def __init__(self, core, limit):
        super().__init__()
        self.core, self.limit, self.tries = core, limit, 0

    def forward(self, x, lengths):
        self.tries += 1
        if x.shape[0] * x.shape[1] >= self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.core(x, lengths)


def _trainer(limit, tmp_path):
    from asr.core.layout import CheckpointDir
    from asr.train.config import plan
    from asr.train.trainer import Trainer

    torch.manual_seed(0)
    cfg = replace(TINY, model=replace(TINY.model, dropout=0.0), clip_norm=1e9)
    core = AcousticModel(5, 6, cfg.model)
    logs = []
    t = Trainer(
        cfg=cfg,
        core=core,
        model=_RoomFor(core, limit) if limit else core,
        opt=torch.optim.SGD(core.parameters(), lr=0.0),  # the gradients are compared
        schedule=plan(cfg, np.array([100] * 20), 0.01),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        device=torch.device("cpu"),
        ckpt=CheckpointDir(tmp_path / "ckpt"),
        cmvn=None,
        hop_seconds=0.01,
        log=logs.append,
    )
    return t, logs


def _batch(lengths):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(len(lengths), max(lengths), 5, generator=g)
    yl = torch.tensor([max(1, n // 8) for n in lengths])
    y = torch.randint(1, 6, (int(yl.sum()),), generator=g)
    return Batch(x, torch.tensor(lengths), y, yl)


def test_a_batch_too_large_for_the_device_trains_in_pieces_with_the_same_gradient(tmp_path):
    batch = _batch([40, 38, 35, 33, 30, 22, 20, 9])  # 8 x 40 = 320 padded frames
    whole, _ = _trainer(0, tmp_path / "a")
    loss, _, audio = whole._update(batch, list(whole.core.parameters()))
    split, logs = _trainer(200, tmp_path / "b")  # room for fewer than 200: halves of 4 x 40 and 4 x 30 fit
    loss2, _, audio2 = split._update(batch, list(split.core.parameters()))
    assert loss2 == pytest.approx(loss, rel=1e-5) and audio2 == audio
    for a, b in zip(whole.core.parameters(), split.core.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6)
    assert split.split_at == 320 and split.model.tries == 3  # the whole batch, then its two halves
    assert logs == [
        "train: a batch of 320 padded frames did not fit in cpu memory; batches of 320 frames or more are trained "
        "in pieces from now on (train.batch_frames=160 would avoid it)"
    ]
    split._update(batch, list(split.core.parameters()))  # the next batch as large: cut up front, no failed try
    assert split.model.tries == 5 and len(logs) == 1 and split.state.step == 2 and split.state.skipped == 0


def test_an_utterance_too_long_for_the_device_is_left_out_by_name_and_the_rest_trains(tmp_path):
    batch = _batch([60, 12, 10])
    t, logs = _trainer(50, tmp_path)
    _, _, audio = t._update(batch, list(t.core.parameters()), ["long", "a", "b"])
    assert audio == pytest.approx(0.22)  # "a" and "b" trained
    assert logs[-1] == (
        "train: long (60 frames) does not fit in cpu memory on its own; left out of this update (cut long "
        "recordings into shorter utterances)"
    )
    assert all(p.grad is not None for p in t.core.parameters()) and t.state.loss_n == 2
    t2, logs2 = _trainer(5, tmp_path / "none")  # nothing fits: the update is skipped and counted, the run goes on
    assert t2._update(_batch([9]), list(t2.core.parameters()), ["u1"]) == (0.0, 0.0, 0.0)
    assert t2.state.step == 1 and t2.state.skipped == 1 and "u1 (9 frames) does not fit" in logs2[0]


def test_split_batch_halves_until_each_piece_fits():
    from asr.data.batching import split_batch

    lengths = torch.tensor([50, 40, 30, 20, 10])
    assert split_batch(lengths, None) == [[0, 1, 2, 3, 4]]
    assert split_batch(lengths, 100) == [[0], [1], [2], [3, 4]]  # [0, 1, 2] is 150, [0, 1] is 100
    assert split_batch(lengths, 1) == [[0], [1], [2], [3], [4]]
    whole = _batch([50, 40, 30, 20, 10])
    x, y = whole.feats, whole.targets
    piece = whole.select([3, 4])
    assert piece.feats.shape == (2, 20, 5) and piece.lengths.tolist() == [20, 10]
    assert piece.target_lengths.tolist() == [2, 1] and piece.inter_targets is None
    assert piece.targets.tolist() == y[-3:].tolist() and torch.equal(piece.feats[1, :10], x[4, :10])


def test_gpu_benchmark_synthetic_utterances_are_librispeech_like_and_ctc_feasible():
    from asr.benchmarks.gpu import LIBRISPEECH_MEAN_S, settings_for, synthetic_data

    data = synthetic_data(2.0, 13, 30, 3, 0.01)
    seconds = data.frames * 0.01
    assert abs(seconds.sum() / 3600 - 2.0) < 0.1 and 1.0 <= seconds.min() and seconds.max() <= 35.0
    assert abs(seconds.mean() - LIBRISPEECH_MEAN_S) < 0.5 and LIBRISPEECH_MEAN_S == pytest.approx(12.3, abs=0.05)
    for lab, f in zip(data.labels, data.frames):
        assert 1 <= min(lab) and max(lab) < 30 and ctc_min_frames(lab) <= math.ceil(f / 3)
    assert np.mean([len(lab) / s for lab, s in zip(data.labels, seconds)]) > 13  # about 14 units a second
    x = data.sets[0][5]
    assert x.shape == (data.frames[5], 13) and x.dtype == np.float32
    cfg = replace(TINY, batch_frames=5000)
    assert settings_for(cfg, None) == [dict(device="cpu", precision="fp32", batch_frames=5000, packed=None)]
    gpu = settings_for(cfg, 250_000)[1:]
    assert sorted({s["batch_frames"] for s in gpu}) == [5000, 50_000, 100_000, 200_000]
    assert {(s["packed"], s["precision"]) for s in gpu if s["batch_frames"] == 200_000} == {
        (True, "fp32"),
        (False, "fp32"),
        (True, "bf16"),
    }


def test_batch_frames_zero_sizes_batches_to_the_device_on_the_cpu_the_default():
    from asr.train.config import plan
    from asr.train.trainer import device_batch_frames

    assert device_batch_frames(AcousticModel(5, 6, TINY.model), 300, torch.device("cpu")) == 20_000
    frames = np.random.default_rng(0).integers(100, 1500, 400)
    assert plan(replace(TINY, batch_frames=0), frames, 0.01) == plan(replace(TINY, batch_frames=20_000), frames, 0.01)
    with pytest.raises(ValueError, match="batch_frames and evaluations >= 0"):
        replace(TINY, batch_frames=-1)


def test_weight_noise_perturbs_the_gradient_and_leaves_the_weights(tmp_path):
    batch = _batch([40, 30, 20])
    clean, _ = _trainer(0, tmp_path / "a")
    clean._update(batch, list(clean.core.parameters()))
    noisy, _ = _trainer(0, tmp_path / "b")
    noisy.cfg = replace(noisy.cfg, weight_noise=0.075, weight_noise_from=0.5, lr=1e-12)  # the weights stay
    noisy.schedule = replace(noisy.schedule, weight_noise_from=1)
    before = [p.detach().clone() for p in noisy.core.parameters()]
    params = list(noisy.core.parameters())
    noisy._update(batch, params)  # update 0: before weight_noise_from, the clean gradient
    for a, b in zip(clean.core.parameters(), params):
        torch.testing.assert_close(b.grad, a.grad)
    noisy._update(batch, params)  # update 1: the gradient at noisy weights; the noise is taken off again
    assert any(not torch.allclose(b.grad, a.grad, atol=1e-4) for a, b in zip(clean.core.parameters(), params))
    for w0, w in zip(before, params):
        torch.testing.assert_close(w.detach(), w0, rtol=0, atol=1e-6)
    for bad in (dict(weight_noise=-0.1), dict(weight_noise_from=1.5)):
        with pytest.raises(ValueError, match="weight_noise must be >= 0 and weight_noise_from in"):
            replace(TINY, **bad)


@pytest.mark.parametrize("kind", ["none", "global", "speaker", "utterance", "online"])
def test_cmvn_on_the_batch_equals_cmvn_of_each_utterance(kind):
    # training normalises the padded batch on the model's device; decoding and the front end each utterance
    from asr.features.frontend import Cmvn
    from asr.train.data import normalise_batch

    rng = np.random.default_rng(0)
    feats = [rng.normal(3.0, 2.0, (n, 4)).astype(np.float32) for n in (30, 7, 18)]
    speakers = ["a", "b", "unseen"]
    stats = {s: {"mean": rng.normal(size=4), "std": rng.uniform(1, 2, 4)} for s in ("a", "b")}
    cmvn = Cmvn(kind, rng.normal(size=4), rng.uniform(1, 2, 4), stats, prior_frames=10)
    x = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(f) for f in feats], batch_first=True)
    out = normalise_batch(cmvn, x, torch.tensor([30, 7, 18]), speakers)
    for i, (f, s) in enumerate(zip(feats, speakers)):
        want = cmvn(f, s)
        if kind in ("none", "global", "speaker"):
            assert torch.equal(out[i, : len(f)], torch.from_numpy(want))
        else:
            torch.testing.assert_close(out[i, : len(f)], torch.from_numpy(want), rtol=1e-5, atol=1e-5)
        assert not out[i, len(f) :].any()
    assert normalise_batch(None, x, torch.tensor([30, 7, 18]), speakers) is x
