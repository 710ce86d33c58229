"""Grapheme-to-phoneme: pronunciations for words a dictionary lacks (names, rare words, a word list's tail).

A small BiLSTM reads a word's letters and CTC-aligns them to phones (each letter gives
:data:`UPSAMPLE` output frames, enough for ``x`` -> ``eh k s``). The toolkit trains it on CMUdict
itself (``python -m asr.text.g2p``, a few minutes on a CPU) and ships the weights in the package
(``asr/resources/g2p_cmudict.pt``, loaded with ``weights_only=True``), so it works offline from
what pip installs. Written here rather than taken from a package: ``g2p-en`` downloads NLTK data
on import, and ``gruut`` pins old versions of half a dozen packages and speaks IPA, not ARPAbet.
Its word and phone error rates on held-out dictionary words are in docs/lexicon.md.

:func:`pronounce` never fails: letters it has not seen are skipped, and a word it cannot read
gets the likeliest single phone rather than nothing.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from asr.core.ctc import greedy
from asr.text.lexicon import Lexicon, cmudict_lexicon

LETTERS = "abcdefghijklmnopqrstuvwxyz'"  # 0 is padding, 1 any other character
UPSAMPLE = 3  # output frames per letter
SHIPPED = Path(__file__).resolve().parents[1] / "resources" / "g2p_cmudict.pt"
HELD_OUT = 50  # one word in this many (by a hash of its spelling) is held out of training, for the report

log = logging.getLogger("asr.text.g2p")


@dataclass(frozen=True)
class G2PConfig:
    embed: int = 64
    hidden: int = 128
    layers: int = 2


class G2PNet(nn.Module):
    """letters ``(B, T)`` -> phone log-probabilities ``(B, T * UPSAMPLE, phones + 1)`` (unit 0: blank)."""

    def __init__(self, n_phones: int, cfg: G2PConfig):
        super().__init__()
        self.n_out = n_phones + 1
        self.embed = nn.Embedding(len(LETTERS) + 2, cfg.embed, padding_idx=0)
        self.rnn = nn.LSTM(cfg.embed, cfg.hidden, cfg.layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * cfg.hidden, UPSAMPLE * self.n_out)

    def forward(self, letters: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.embed(letters))
        b, t, _ = h.shape
        return self.out(h).view(b, t * UPSAMPLE, self.n_out).log_softmax(-1)


def _letters(word: str) -> list[int]:
    return [LETTERS.index(c) + 2 if c in LETTERS else 1 for c in word.lower()] or [1]


def _batch(words: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [_letters(w) for w in words]
    lengths = torch.tensor([len(i) for i in ids])
    out = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for k, i in enumerate(ids):
        out[k, : len(i)] = torch.tensor(i)
    return out, lengths


class G2P:
    """A trained G2P model: ``g2p.pronounce(words)`` -> ``{word: phones}``."""

    def __init__(self, net: G2PNet, phones: list[str], cfg: G2PConfig):
        self.net, self.phones, self.cfg = net.eval(), phones, cfg

    @classmethod
    def load(cls, path: str | Path = SHIPPED) -> G2P:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        cfg = G2PConfig(**ckpt["config"])
        net = G2PNet(len(ckpt["phones"]), cfg)
        net.load_state_dict({k: v.float() for k, v in ckpt["state"].items()})
        return cls(net, list(ckpt["phones"]), cfg)

    def save(self, path: str | Path) -> None:
        # half precision: the shipped file is half the size, and the pronunciations are the same (checked
        # by the report's numbers, measured with the loaded file)
        state = {k: v.half() for k, v in self.net.state_dict().items()}
        torch.save({"config": asdict(self.cfg), "phones": self.phones, "state": state}, path)

    @torch.inference_mode()
    def pronounce(self, words: Iterable[str], batch: int = 512) -> dict[str, tuple[str, ...]]:
        words = list(dict.fromkeys(words))
        out: dict[str, tuple[str, ...]] = {}
        for i in range(0, len(words), batch):
            chunk = words[i : i + batch]
            letters, lengths = _batch(chunk)
            lp = self.net(letters)
            for w, seq, frames in zip(chunk, greedy(lp, lengths * UPSAMPLE), lp):
                if not seq:  # never nothing: the likeliest phone of any frame
                    seq = [int(frames[:, 1:].max(0).values.argmax()) + 1]
                out[w] = tuple(self.phones[u - 1] for u in seq)
        return out


def split(lexicon: Lexicon) -> tuple[list[str], list[str]]:
    """Training and held-out words: plain spellings (letters and apostrophes) only, one in
    :data:`HELD_OUT` held out by a hash of the word (the same split on every machine)."""
    words = sorted(w for w in lexicon.prons if w and set(w) <= set(LETTERS))
    held = [w for w in words if zlib.crc32(w.encode()) % HELD_OUT == 0]
    return [w for w in words if zlib.crc32(w.encode()) % HELD_OUT != 0], held


def train(lexicon: Lexicon, words: list[str], cfg: G2PConfig = G2PConfig(), epochs: int = 15, seed: int = 0) -> G2P:
    """Train on ``words`` of ``lexicon`` (each word's first pronunciation), Adam with a cosine LR."""
    torch.manual_seed(seed)
    phones = sorted(lexicon.phones)
    index = {p: i + 1 for i, p in enumerate(phones)}
    net = G2PNet(len(phones), cfg)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    batch = 256
    steps = epochs * math.ceil(len(words) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps, pct_start=0.05)
    ctc = nn.CTCLoss(zero_infinity=True)
    gen = torch.Generator().manual_seed(seed)
    by_length = sorted(words, key=len)  # batches of like lengths, in a shuffled order
    for epoch in range(epochs):
        t0, total = time.perf_counter(), 0.0
        order = torch.randperm(math.ceil(len(words) / batch), generator=gen).tolist()
        net.train()
        for b in order:
            chunk = by_length[b * batch : (b + 1) * batch]
            letters, lengths = _batch(chunk)
            targets = [torch.tensor([index[p] for p in lexicon.prons[w][0]]) for w in chunk]
            lp = net(letters).transpose(0, 1)
            loss = ctc(lp, torch.cat(targets), lengths * UPSAMPLE, torch.tensor([len(t) for t in targets]))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            sched.step()
            total += loss.item()
        log.info(f"g2p: epoch {epoch + 1}/{epochs}, loss {total / len(order):.3f}, {time.perf_counter() - t0:.0f} s")
    return G2P(net, phones, cfg)


@dataclass(frozen=True)
class G2PReport:
    words: int
    word_error_rate: float  # the output is none of the word's dictionary pronunciations
    phone_error_rate: float  # edit distance to the closest dictionary pronunciation, over its phones


def evaluate(g2p: G2P, lexicon: Lexicon, words: list[str]) -> G2PReport:
    """Word and phone error rates of ``g2p`` on ``words`` against ``lexicon``, the closest variant counting."""
    import jiwer  # the scorer's library: phone edit distances

    guesses = g2p.pronounce(words)
    wrong = errors = ref = 0
    for w in words:
        guess = " ".join(guesses[w])
        best = min(
            ((jiwer.process_words(" ".join(p), guess), len(p)) for p in lexicon.prons[w]),
            key=lambda o: o[0].substitutions + o[0].deletions + o[0].insertions,
        )
        e = best[0].substitutions + best[0].deletions + best[0].insertions
        wrong += e > 0
        errors += e
        ref += best[1]
    return G2PReport(len(words), wrong / max(len(words), 1), errors / max(ref, 1))


def main(argv: list[str] | None = None) -> None:
    """Train the shipped G2P on CMUdict and report its error rates on the held-out words."""
    p = argparse.ArgumentParser(prog="python -m asr.text.g2p", description=main.__doc__)
    p.add_argument("--out", default=str(SHIPPED), help="where to write the model (default: the shipped file)")
    p.add_argument("--epochs", type=int, default=15)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    lexicon = cmudict_lexicon()
    train_words, held = split(lexicon)
    t0 = time.perf_counter()
    g2p = train(lexicon, train_words, epochs=args.epochs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    g2p.save(args.out)
    r = evaluate(G2P.load(args.out), lexicon, held)
    print(
        f"trained on {len(train_words)} CMUdict words in {time.perf_counter() - t0:.0f} s; held out "
        f"{r.words}: word error rate {100 * r.word_error_rate:.2f}%, phone error rate {100 * r.phone_error_rate:.2f}%"
    )


if __name__ == "__main__":
    main()
