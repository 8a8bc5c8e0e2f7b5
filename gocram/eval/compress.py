"""`gocram compress` / `gocram decompress`: the model's probabilities drive a range coder.

The file is [EOS, tokens of IN] coded in the same windows `eval bpb --stride S` scores, so its
size is the scored bits plus the coder's few bytes and the header. Encoder and decoder compute
each distribution the same way (fp32 on the CPU, one sequence, a KV cache filled token by token,
a fixed torch thread count): bit-identical probabilities give identical frequency tables. Hence
decoding refuses a different checkpoint, torch version, thread count or CPU.

Layout: MAGIC, a 4-byte big-endian header length, the header (JSON), the coded bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gocram.core.env import cpu_name
from gocram.core.errors import GocramError
from gocram.core.files import atomic_write_bytes, sha256_file
from gocram.data.tokens.tokenizer import token_byte_lengths
from gocram.eval.bpb import score_chunks
from gocram.eval.kvcache import KVCache
from gocram.eval.rangecoder import RangeDecoder, RangeEncoder, quantise
from gocram.eval.scoring import encode_documents, windows_for
from gocram.train.checkpoint import latest_checkpoint

MAGIC = b"GOCRAMZ\x01"
FORMAT = 1


def checkpoint_file(checkpoint: str | Path) -> Path:
    path = Path(checkpoint)
    ckpt = path if path.is_file() else latest_checkpoint(path / "checkpoint")
    if ckpt is None or not ckpt.is_file():
        raise GocramError(f"no checkpoint found at {checkpoint}")
    return ckpt


def _load(checkpoint, threads: int):
    from gocram.eval.tree import load_run

    if threads < 1:
        raise GocramError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    model, tok, cfg = load_run(checkpoint, "cpu")
    return model.float().eval(), tok, cfg


def _environment(checkpoint, threads: int) -> dict:
    return {"checkpoint_sha256": sha256_file(checkpoint_file(checkpoint)), "torch": torch.__version__,
            "threads": threads, "cpu": cpu_name()}


@torch.inference_mode()
def walk_windows(model, ids: np.ndarray, *, seq_len: int, stride: int,
                 code: Callable[[np.ndarray, int], int]) -> None:
    """Visit every target ids[1:] in scoring order; code(cumulative frequencies, i) returns ids[i].

    ids[0] (EOS) is known; the encoder's `code` writes ids[i] and returns it, the decoder's
    decodes it; ids[i] is filled in before anything after it is computed.
    """
    step = stride or seq_len
    n_targets = len(ids) - 1
    scored_end, start = 0, 0
    while scored_end < n_targets:
        end = min(start + seq_len, n_targets)  # this window holds targets [start, end)
        cache = KVCache(model, 1, seq_len)
        context = torch.from_numpy(ids[start:scored_end + 1])[None]  # tokens already known
        hidden = model.hidden_states(context, kv_cache=cache)
        for target in range(scored_end, end):
            probs = torch.softmax(model.logits(hidden[0, -1]).float(), dim=-1).numpy()
            ids[target + 1] = code(quantise(probs), target + 1)
            if target + 1 < end:
                hidden = model.hidden_states(torch.from_numpy(ids[target + 1:target + 2])[None],
                                             kv_cache=cache)
        scored_end, start = end, start + step


def compress(checkpoint, source: str | Path, out: str | Path, *, stride: int = 0,
             threads: int = 1) -> dict:
    source, out = Path(source), Path(out)
    try:
        data = source.read_bytes()
        text = data.decode("utf-8")
    except OSError as err:
        raise GocramError(f"{source}: cannot read ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise GocramError(f"{source}: not UTF-8 text (byte {err.start})") from err
    if not data:
        raise GocramError(f"{source}: empty file, nothing to compress")
    model, tok, cfg = _load(checkpoint, threads)
    seq_len = cfg.model.seq_len
    windows_for(np.zeros(2, dtype=np.int64), seq_len, stride)  # checks the stride
    ids = encode_documents(tok, [text])[0]
    if tok.decode(ids[1:].tolist(), skip_special_tokens=False) != text:
        raise GocramError(f"{source}: the tokenizer does not reproduce this text byte for byte")
    t0 = time.perf_counter()
    encoder = RangeEncoder()
    ideal_bits = 0.0

    def encode(cum, i):
        nonlocal ideal_bits
        symbol = int(ids[i])
        encoder.encode(cum, symbol)
        ideal_bits -= math.log2((cum[symbol + 1] - cum[symbol]) / cum[-1])
        return symbol

    walk_windows(model, ids.copy(), seq_len=seq_len, stride=stride, code=encode)
    payload = encoder.finish()
    seconds = time.perf_counter() - t0
    header = {"format": FORMAT, "seq_len": seq_len, "stride": stride, "tokens": int(len(ids)),
              "input_bytes": len(data), "input_sha256": hashlib.sha256(data).hexdigest(),
              **_environment(checkpoint, threads)}
    blob = json.dumps(header, sort_keys=True).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, MAGIC + struct.pack(">I", len(blob)) + blob + payload)
    score = score_chunks(model, windows_for(ids, seq_len, stride), token_byte_lengths(tok),
                         batch=16, device="cpu")
    header_bytes = len(MAGIC) + 4 + len(blob)
    return {"input_bytes": len(data), "tokens": int(len(ids) - 1),
            "file_bytes": header_bytes + len(payload), "header_bytes": header_bytes,
            "payload_bytes": len(payload), "scored_bits": score.nll_nats / math.log(2),
            "scored_bpb": score.bpb, "quantised_bits": ideal_bits,
            "file_bpb": 8.0 * (header_bytes + len(payload)) / len(data),
            "seconds": seconds, "bytes_per_s": len(data) / seconds if seconds else None,
            "stride": stride, "threads": threads}


def read_header(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    if not raw.startswith(MAGIC) or len(raw) < len(MAGIC) + 4:
        raise GocramError(f"{path}: not a file written by gocram compress")
    (size,) = struct.unpack(">I", raw[len(MAGIC):len(MAGIC) + 4])
    try:
        header = json.loads(raw[len(MAGIC) + 4:len(MAGIC) + 4 + size])
    except ValueError as err:
        raise GocramError(f"{path}: damaged header") from err
    if header.get("format") != FORMAT:
        raise GocramError(f"{path}: format {header.get('format')}, this gocram reads {FORMAT}")
    return header, raw[len(MAGIC) + 4 + size:]


def check_environment(header: dict, here: dict) -> None:
    """One-line refusal naming the first thing that differs from when the file was written."""
    for key, what in (("checkpoint_sha256", "checkpoint"), ("torch", "torch version"),
                      ("threads", "thread count (--threads)"), ("cpu", "CPU")):
        if header[key] != here[key]:
            raise GocramError(f"cannot decode deterministically: the {what} differs "
                              f"(file: {header[key]}, here: {here[key]})")


def decompress(checkpoint, source: str | Path, out: str | Path, *, threads: int = 1) -> dict:
    source, out = Path(source), Path(out)
    if not source.is_file():
        raise GocramError(f"{source}: no such file")
    header, payload = read_header(source)
    check_environment(header, _environment(checkpoint, threads))
    model, tok, cfg = _load(checkpoint, threads)
    if cfg.model.seq_len != header["seq_len"]:
        raise GocramError(f"{source}: written with seq_len {header['seq_len']}, the model has "
                          f"{cfg.model.seq_len}")
    t0 = time.perf_counter()
    decoder = RangeDecoder(payload)
    ids = np.zeros(header["tokens"], dtype=np.int64)
    ids[0] = encode_documents(tok, [""])[0][0]  # EOS
    walk_windows(model, ids, seq_len=header["seq_len"], stride=header["stride"],
                 code=lambda cum, i: decoder.decode(cum))
    data = tok.decode(ids[1:].tolist(), skip_special_tokens=False).encode("utf-8")
    seconds = time.perf_counter() - t0
    if hashlib.sha256(data).hexdigest() != header["input_sha256"]:
        raise GocramError(f"{source}: decoded bytes do not match the recorded sha256 (damaged file?)")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, data)
    return {"output_bytes": len(data), "seconds": seconds,
            "bytes_per_s": len(data) / seconds if seconds else None}
