import math

import numpy as np
import pytest
import torch

from gocram.core.tokens import IGNORE_INDEX
from gocram.data.batching.windows import eval_chunks
from gocram.data.tokens.prepare import xz_bits_per_byte
from gocram.eval.bpb import bits_per_byte, score_stream


class Uniform(torch.nn.Module):
    """Predicts every one of V tokens with probability 1/V."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, x, y, reduction="sum"):
        logits = torch.zeros(*x.shape, self.vocab)
        return torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX, reduction=reduction)


def test_formula_on_a_known_case():
    # 100 bytes predicted with a total NLL of 100 * ln 2 nats is exactly 1 bit per byte.
    assert bits_per_byte(100 * math.log(2), 100) == pytest.approx(1.0)


@pytest.mark.parametrize("n_tokens, seq_len", [(2, 4), (17, 4), (64, 8), (65, 8), (1000, 31)])
def test_uniform_model_scores_log2_vocab_per_token(n_tokens, seq_len):
    vocab = 16
    tokens = np.arange(n_tokens) % vocab
    token_bytes = np.array([0] + [2] * (vocab - 1))  # token 0 is special: 0 bytes
    score = score_stream(Uniform(vocab), tokens, token_bytes, seq_len=seq_len, batch=3,
                         device="cpu")
    targets = tokens[1:]
    assert score.tokens == len(targets)  # every target scored exactly once
    assert score.bytes == token_bytes[targets].sum()
    assert score.nll_nats == pytest.approx(len(targets) * math.log(vocab), rel=1e-5)
    assert score.bpb == pytest.approx(len(targets) * math.log2(vocab) / score.bytes, rel=1e-5)


def test_eval_chunks_pad_only_at_the_end():
    chunks = eval_chunks(np.arange(10), 4)
    assert [list(x) for x, _ in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 0, 0, 0]]
    assert [list(y) for _, y in chunks][-1] == [9, -1, -1, -1]


def test_xz_baseline_tracks_redundancy():
    repetitive = b"func main() { return }\n" * 500
    random_bytes = np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    assert xz_bits_per_byte(repetitive) < 0.2
    assert xz_bits_per_byte(random_bytes) > 7.9
