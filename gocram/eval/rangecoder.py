"""A range coder over integer frequencies (LZMA's carry scheme, widened to 64 bits).

The coder itself is exact integer arithmetic; everything that must match between encoder and
decoder is the frequency table, which `quantise` derives deterministically from probabilities.
With 64-bit ranges renormalised to at least 2^56 and totals below 2^33, a symbol costs at most
about 2^-23 bits more than -log2(freq / total).
"""

from __future__ import annotations

import numpy as np

WIDTH = 64
MASK = (1 << WIDTH) - 1
TOP = 1 << (WIDTH - 8)  # renormalise (shift out a byte) while the range is below this
FREQ_SCALE = 1 << 32  # probabilities are scaled to this before flooring
MAX_TOTAL = 1 << 40  # the coder's precision limit on a table's total
FLUSH_BYTES = WIDTH // 8 + 1  # a fixed cost per file, like the header


def quantise(probs: np.ndarray) -> np.ndarray:
    """Cumulative integer frequencies (V + 1,) for probabilities (V,): every symbol gets >= 1.

    Flooring float64 products is deterministic for identical inputs; the +1 keeps every symbol
    codable whatever the model says.
    """
    freq = np.floor(probs.astype(np.float64) * FREQ_SCALE).astype(np.int64) + 1
    cum = np.zeros(len(freq) + 1, dtype=np.int64)
    np.cumsum(freq, out=cum[1:])
    return cum


class RangeEncoder:
    def __init__(self):
        self.low, self.range = 0, MASK
        self.cache, self.cache_size = 0, 1
        self.out = bytearray()

    def encode(self, cum: np.ndarray, symbol: int) -> None:
        total = int(cum[-1])
        if total > MAX_TOTAL:
            raise ValueError(f"frequency total {total} exceeds {MAX_TOTAL}")
        r = self.range // total
        self.low += r * int(cum[symbol])
        self.range = r * int(cum[symbol + 1] - cum[symbol])
        while self.range < TOP:
            self.range <<= 8
            self._shift_low()

    def _shift_low(self) -> None:
        # A byte is final only once no carry can reach it: 0xFF bytes wait in cache_size.
        if self.low < (0xFF << (WIDTH - 8)) or self.low > MASK:
            carry = self.low >> WIDTH
            byte = self.cache
            while True:
                self.out.append((byte + carry) & 0xFF)
                byte = 0xFF
                self.cache_size -= 1
                if not self.cache_size:
                    break
            self.cache = (self.low >> (WIDTH - 8)) & 0xFF
        self.cache_size += 1
        self.low = (self.low << 8) & MASK

    def finish(self) -> bytes:
        for _ in range(FLUSH_BYTES):
            self._shift_low()
        return bytes(self.out)


class RangeDecoder:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0
        self.range, self.code = MASK, 0
        for _ in range(FLUSH_BYTES):
            self.code = (self.code << 8) | self._byte()

    def _byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def decode(self, cum: np.ndarray) -> int:
        total = int(cum[-1])
        r = self.range // total
        value = min(self.code // r, total - 1)
        symbol = int(np.searchsorted(cum, value, side="right")) - 1
        self.code -= r * int(cum[symbol])
        self.range = r * int(cum[symbol + 1] - cum[symbol])
        while self.range < TOP:
            self.range <<= 8
            self.code = (self.code << 8) | self._byte()
        return symbol
