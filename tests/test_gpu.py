"""The CUDA path: cuDNN RNNs against the CPU kernels, mixed-precision training,
and a model trained on the GPU transcribing on the CPU.

Skipped where no CUDA GPU is visible (CI has none); on a GPU machine run
``pytest tests/test_gpu.py tests/test_train.py``: the training tests there pick CUDA
themselves (``device=auto``).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from helpers import REPO
from test_train import TINY, _train_cmd

from asr.model.config import ModelConfig
from asr.model.network import AcousticModel
from asr.recognize.recognizer import load_model
from asr.train.stage import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible"),
]


@pytest.fixture
def exact_fp32():
    """Plain float32 on the GPU (no TF32 matmuls or cuDNN math), so CPU and GPU can be compared tightly."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(rnn="lstm", num_layers=3, hidden=32, stack=3, dropout=0),
        ModelConfig(rnn="gru", num_layers=2, hidden=32, stack=1, dropout=0),
        ModelConfig(rnn="lstm", num_layers=2, hidden=32, proj=16, stack=2, dropout=0),
        # on CUDA the packed stack runs in two cuDNN calls, below and above the intermediate CTC layer
        ModelConfig(rnn="lstm", num_layers=3, hidden=32, stack=3, dropout=0, inter_ctc=2),
    ],
    ids=["lstm-stack3", "gru", "lstm-proj", "lstm-inter-ctc"],
)
def test_cudnn_model_equals_cpu_model_outputs_and_gradients(cfg, exact_fp32):
    # training on the GPU packs the batch for cuDNN; on the CPU each direction runs over the padded batch
    torch.manual_seed(0)
    cpu = AcousticModel(13, 9, cfg)
    gpu = copy.deepcopy(cpu).cuda()
    x, lengths = torch.randn(5, 40, 13), torch.tensor([40, 7, 33, 1, 20])
    out_len = cpu.output_lengths(lengths)
    weights = torch.randn(5, int(out_len.max()), 9) * (
        torch.arange(int(out_len.max()))[None, :, None] < out_len[:, None, None]
    )
    results = []
    for m, dev in ((cpu, "cpu"), (gpu, "cuda")):
        out, n, inter = m(x.to(dev), lengths.to(dev), inter=True)
        mid = [] if inter is None else [inter]  # the intermediate CTC layer's, if any
        loss = sum(((o * weights.to(dev)).sum() for o in [out, *mid]), torch.zeros((), device=dev))
        grads = torch.autograd.grad(loss, list(m.parameters()))
        results.append(([o.cpu() for o in [out, *mid]], n.cpu(), [g.cpu() for g in grads]))
    (a, na, ga), (b, nb, gb) = results
    assert na.tolist() == nb.tolist() == out_len.tolist() and len(a) == 1 + bool(cfg.inter_ctc)
    for i, n in enumerate(out_len):
        for oa, ob in zip(a, b):
            torch.testing.assert_close(ob[i, :n], oa[i, :n], rtol=1e-4, atol=1e-4)
    for g_cpu, g_gpu in zip(ga, gb):
        torch.testing.assert_close(g_gpu, g_cpu, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_on_cuda_learns_and_the_model_transcribes_on_cpu(
    precision, tiny_features, fsdd_utts, tmp_path
):
    cfg = replace(TINY, device="cuda", precision=precision)
    summary = train(cfg, tiny_features, tmp_path, tmp_path / "partial", log=lambda m: None)
    # fp16's loss scaler starts at 2^16 and halves on each overflow: a few skipped steps, no more
    assert summary["skipped_steps"] <= 16, summary
    assert summary["final_train_loss"] < 0.2, summary
    assert summary["dev_wer"] == 0.0, summary
    six = [u for u in fsdd_utts if u.speaker == "jackson"][:6]  # the tiny set (see conftest.tiny_features)
    on_cpu = load_model(tmp_path / "model.pt", method="greedy")
    on_gpu = load_model(tmp_path / "model.pt", method="greedy", device="cuda")
    for u in six:
        text = on_cpu.transcribe(u.audio).text
        assert text == u.text
        assert on_gpu.transcribe(u.audio).text == text


@pytest.mark.skipif(torch.cuda.device_count() > 1, reason="needs a machine with exactly one GPU")
def test_more_processes_than_gpus_is_a_clear_error(tiny_features, tmp_path):
    cfg = replace(TINY, epochs=1, device="cuda")
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
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "process 1 of 2 has no GPU of its own: 1 visible" in r.stdout + r.stderr


def test_kill_and_resume_on_cuda_continues_where_it_stopped(tiny_features, tmp_path):
    # CUDA's cuDNN RNN and CTC backward kernels sum with atomics, so two runs differ in the last bits and
    # the resumed run is compared with the uninterrupted one within a tolerance (on the CPU it is exact)
    cfg = replace(TINY, epochs=6, evaluations=6, batch_frames=150, checkpoint_every=1, device="cuda")
    ref = subprocess.run(
        _train_cmd(tiny_features, tmp_path / "ref", tmp_path / "ref_p", cfg), cwd=REPO, capture_output=True, text=True
    )
    assert ref.returncode == 0, ref.stderr
    out, partial = tmp_path / "run", tmp_path / "run_p"
    env = {**os.environ, "ASR_TEST_STOP_AT": "train.eval:3"}  # after the third epoch's evaluation
    killed = subprocess.run(_train_cmd(tiny_features, out, partial, cfg), cwd=REPO, capture_output=True, env=env)
    assert killed.returncode == -signal.SIGKILL
    assert torch.load(partial / "checkpoint.pt", weights_only=True)["state"]["epoch"] == 3
    again = subprocess.run(_train_cmd(tiny_features, out, partial, cfg), cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "(epoch 4, batch 0)" in again.stdout + again.stderr
    h_ref = json.loads((tmp_path / "ref" / "history.json").read_text())
    h_run = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in h_run] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(h_ref, h_run):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.1)


def test_padded_and_packed_cudnn_paths_agree(exact_fp32):
    # asr.benchmarks.gpu times both; either may become the default on CUDA
    torch.manual_seed(0)
    m = AcousticModel(13, 9, ModelConfig(rnn="lstm", num_layers=2, hidden=32, stack=3, dropout=0)).cuda()
    x, lengths = torch.randn(4, 50, 13, device="cuda"), torch.tensor([50, 9, 31, 22], device="cuda")
    outs = []
    for pack in (True, False):
        m.pack = pack
        out, n, _ = m(x, lengths)
        grads = torch.autograd.grad(sum(out[i, : n[i]].sum() for i in range(4)), list(m.parameters()))
        outs.append(([out[i, : n[i]] for i in range(4)], grads))
    for a, b in zip(outs[0][0] + list(outs[0][1]), outs[1][0] + list(outs[1][1])):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_the_memory_probe_finds_a_batch_that_trains():
    from asr.train.trainer import MAX_DEVICE_BATCH_FRAMES, device_batch_frames, probe_batch_frames

    torch.manual_seed(0)
    m = AcousticModel(40, 30, ModelConfig(num_layers=3, hidden=256, stack=3)).cuda()
    frames = probe_batch_frames(m, 3500, torch.device("cuda"), share=0.05)
    b = frames // 3500
    assert b >= 2
    x = torch.randn(b, 3500, 40, device="cuda")
    out, n, _ = m(x, torch.full((b,), 3500, device="cuda"))
    out.sum().backward()
    assert torch.cuda.max_memory_allocated() < 0.08 * torch.cuda.get_device_properties(0).total_memory
    assert device_batch_frames(m, 3500, torch.device("cuda")) == MAX_DEVICE_BATCH_FRAMES  # 80% of a GPU: capped


def test_a_batch_that_runs_out_of_gpu_memory_trains_in_pieces(tmp_path):
    from test_train import _batch, _trainer

    batch = _batch([3000 - 10 * k for k in range(16)])
    whole, _ = _trainer(0, tmp_path / "a")
    whole.core.cuda()
    whole.device = torch.device("cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    whole._update(batch, list(whole.core.parameters()))
    need = torch.cuda.max_memory_allocated() - base
    split, logs = _trainer(0, tmp_path / "b")
    split.core.cuda()
    split.device = torch.device("cuda")
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_allocated() + 0.7 * need) / total)
    try:
        split._update(batch, list(split.core.parameters()))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert split.split_at is not None and "did not fit in cuda memory" in logs[0]
    for a, b in zip(whole.core.parameters(), split.core.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5)
