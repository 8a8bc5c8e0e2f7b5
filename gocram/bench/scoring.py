"""Every scoring mode and classical compressor for one checkpoint, as a markdown + JSON table.

    python -m gocram.bench.scoring RUN_DIR [--dir D] --out results/scoring/NAME \\
        [--compress-bytes 1000000]

Sets: the run's own validation set (rebuilt from its config: data.corpus must be there; skip
with --no-val) and, with --dir, every readable .go file under D. Each set is scored as chunked
per-file (the headline's mode), sliding per-file, chunked and sliding as one stream, and sliding
stream with score-first adaptation; beside them xz -9e, zstd -19 --long and PPMd on exactly the
same bytes, per file and concatenated. With --compress-bytes N, the first N bytes of the --dir
set (files joined in the stream order, cut at a character boundary) make a real
compress / decompress round trip: exactness, file size against the scored bits, bytes/s.
Not a test: timings depend on the machine; the tests train a tiny run and check the files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gocram.core.errors import GocramError

STREAM_XZ = ("xz -9e", "concatenated_bpb")


def _modes(seq_len: int, stride_divs: list[int], adapt_div: int) -> list[dict]:
    modes = [{"name": "chunked, per file (headline)", "stride": 0, "stream": False, "adapt": False}]
    for div in stride_divs:
        modes.append({"name": f"sliding S=T/{div}, per file", "stride": seq_len // div,
                      "stream": False, "adapt": False})
    modes.append({"name": "chunked, stream", "stride": 0, "stream": True, "adapt": False})
    for div in stride_divs:
        modes.append({"name": f"sliding S=T/{div}, stream", "stride": seq_len // div,
                      "stream": True, "adapt": False})
    modes.append({"name": f"sliding S=T/{adapt_div}, stream, adapt", "stride": seq_len // adapt_div,
                  "stream": True, "adapt": True})
    return modes


def score_set(model, docs: list[np.ndarray], blobs: list[bytes], token_bytes: np.ndarray, *,
              modes: list[dict], adapt_cfg, batch: int) -> dict:
    from gocram.eval.comparators import compare
    from gocram.eval.scoring import document_windows, score_adaptive, score_documents

    seq_len = model.cfg.seq_len
    comparators = compare(blobs)
    rows = []
    for mode in modes:
        t0 = time.perf_counter()
        windows = document_windows(docs, seq_len, stride=mode["stride"], stream=mode["stream"])
        if mode["adapt"]:
            score, _ = score_adaptive(model, windows, token_bytes, adapt_cfg)
        else:
            score = score_documents(model, windows, token_bytes, batch=batch)
        rows.append({**mode, "bpb": score.bpb, "tokens": score.tokens, "bytes": score.bytes,
                     "seconds": time.perf_counter() - t0})
        print(f"[scoring]   {mode['name']}: {score.bpb:.4f} bpb "
              f"({rows[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
    if rows[0]["bytes"] != comparators["bytes"]:
        raise GocramError(f"scored {rows[0]['bytes']} bytes but the comparators saw "
                          f"{comparators['bytes']}: the tokenizer does not round-trip this text")
    stream_xz = comparators[STREAM_XZ[0]][STREAM_XZ[1]]
    for row in rows:
        row["vs_stream_xz"] = row["bpb"] / stream_xz
    return {"files": len(blobs), "bytes": comparators["bytes"], "modes": rows,
            "comparators": comparators}


def validation_set(cfg, tok):
    from gocram.data.tokens.prepare import prepare_data

    data = prepare_data(cfg.data, cfg.eval, cfg.model.vocab_size)
    offsets = data.val_offsets
    docs = [np.asarray(data.val[offsets[i]:offsets[i + 1]], dtype=np.int64)
            for i in range(len(offsets) - 1)]
    blobs = [tok.decode(d[1:].tolist(), skip_special_tokens=False).encode("utf-8") for d in docs]
    return docs, blobs


def directory_set(tok, directory):
    from gocram.eval.scoring import encode_documents, read_go_files

    files = read_go_files(directory)
    return encode_documents(tok, files.texts), files.blobs, files


def round_trip(run_dir, text: str, *, stride: int, threads: int) -> dict:
    from gocram.eval.compress import compress, decompress
    from gocram.eval.rangecoder import FLUSH_BYTES

    with tempfile.TemporaryDirectory() as tmp:
        source, packed, unpacked = Path(tmp) / "in.go", Path(tmp) / "in.gcz", Path(tmp) / "out.go"
        source.write_text(text, encoding="utf-8")
        encoded = compress(run_dir, source, packed, stride=stride, threads=threads)
        decoded = decompress(run_dir, packed, unpacked, threads=threads)
        exact = unpacked.read_bytes() == source.read_bytes()
    return {**encoded, "exact": exact, "decode_seconds": decoded["seconds"],
            "decode_bytes_per_s": decoded["bytes_per_s"],
            # the coder's fixed flush is overhead like the header, not a per-token cost
            "payload_over_scored_bits": 8 * (encoded["payload_bytes"] - FLUSH_BYTES)
            / encoded["scored_bits"]}


def markdown(report: dict) -> str:
    lines = [f"# Scoring modes and compressors: {report['checkpoint']}", "",
             f"Written by `python -m gocram.bench.scoring` at {report['timestamp']} "
             f"(seq_len {report['seq_len']}; adaptation: {report['adapt']}) on "
             f"{report.get('device', '?')}, commit {report.get('git_sha') or '?'}, config "
             f"{report.get('config_hash', '?')}.", ""]
    for set_name, result in report["sets"].items():
        lines += [f"## {set_name}: {result['files']} files, {result['bytes']:,} bytes", "",
                  "| mode | bpb | x stream xz -9e | tokens scored | seconds |", "|---|---|---|---|---|"]
        for row in result["modes"]:
            lines.append(f"| {row['name']} | {row['bpb']:.4f} | {row['vs_stream_xz']:.3f} | "
                         f"{row['tokens']:,} | {row['seconds']:.1f} |")
        lines += ["", "| compressor | per file bpb | concatenated bpb |", "|---|---|---|"]
        for name, value in result["comparators"].items():
            if isinstance(value, dict) and value.get("skipped"):
                lines.append(f"| {name} | skipped: {value['skipped']} | |")
            elif isinstance(value, dict):
                lines.append(f"| {name} | {value['per_file_bpb']:.4f} | "
                             f"{value['concatenated_bpb']:.4f} |")
        lines.append("")
    if report.get("round_trip"):
        rt = report["round_trip"]
        lines += ["## compress / decompress round trip", "",
                  f"- input: the first {rt['input_bytes']:,} bytes of the directory set "
                  f"({rt['tokens']:,} tokens), stride {rt['stride']}, {rt['threads']} thread(s)",
                  f"- exact: {rt['exact']}",
                  f"- file: {rt['file_bytes']:,} bytes ({rt['header_bytes']} header), "
                  f"{rt['file_bpb']:.4f} bpb; payload less the coder's flush / scored bits = "
                  f"{rt['payload_over_scored_bits']:.5f}",
                  f"- encode {rt['bytes_per_s']:,.0f} bytes/s, decode "
                  f"{rt['decode_bytes_per_s']:,.0f} bytes/s", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    from gocram.data.tokens.tokenizer import token_byte_lengths
    from gocram.eval.scoring import AdaptConfig
    from gocram.eval.tree import load_run

    if args.no_val and not args.dir:
        raise GocramError("nothing to score: give --dir, or drop --no-val")
    if args.no_modes and not args.compress_bytes:
        raise GocramError("--no-modes leaves only the round trip; give --compress-bytes (and --dir)")
    if args.compress_bytes and not args.dir:
        raise GocramError("--compress-bytes cuts its input from the --dir set; give --dir")
    if args.threads < 1:
        raise GocramError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)  # scoring and the round trip alike
    model, tok, cfg = load_run(args.run_dir, "cpu")
    seq_len = cfg.model.seq_len
    stride_divs = [int(d) for d in args.stride_divs.split(",") if d]
    if any(d < 1 or seq_len // d < 1 for d in [*stride_divs, args.adapt_stride_div]):
        raise GocramError(f"--stride-divs/--adapt-stride-div must divide seq_len={seq_len} into "
                          "strides >= 1")
    adapt = AdaptConfig(lr=args.adapt_lr, optimizer=args.adapt_optimizer, steps=args.adapt_steps)
    modes = _modes(seq_len, stride_divs, args.adapt_stride_div)
    token_bytes = token_byte_lengths(tok)
    sets, files = {}, None
    if not (args.no_val or args.no_modes):
        sets["validation set"] = validation_set(cfg, tok)
    if args.dir:
        docs, blobs, files = directory_set(tok, args.dir)
        sets[f"directory {args.dir}"] = (docs, blobs)
    from gocram.core.env import device_name, git_sha, versions

    report = {"checkpoint": str(args.run_dir), "seq_len": seq_len,
              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "device": device_name(torch.device("cpu")), "git_sha": git_sha(),
              "versions": versions(), "config_hash": cfg.hash(),
              "adapt": {"lr": adapt.lr, "optimizer": adapt.optimizer, "steps": adapt.steps},
              "sets": {}}
    for name, (docs, blobs) in ({} if args.no_modes else sets).items():
        print(f"[scoring] {name}: {len(blobs)} files", file=sys.stderr, flush=True)
        report["sets"][name] = score_set(model, docs, blobs, token_bytes, modes=modes,
                                         adapt_cfg=adapt, batch=args.batch)
    if args.compress_bytes:
        joined = "".join(files.texts).encode("utf-8")[:args.compress_bytes]
        text = joined.decode("utf-8", errors="ignore")  # drops a character cut in half
        report["round_trip"] = round_trip(args.run_dir, text, stride=args.compress_stride,
                                          threads=args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scoring.json").write_text(json.dumps(report, indent=1))
    (out / "scoring.md").write_text(markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gocram.bench.scoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--dir", help="also score every .go file under this directory")
    parser.add_argument("--no-val", action="store_true", help="skip the run's validation set")
    parser.add_argument("--out", required=True, help="directory for scoring.md and scoring.json")
    parser.add_argument("--stride-divs", default="2,8", help="sliding strides as T/div")
    parser.add_argument("--adapt-stride-div", type=int, default=2)
    parser.add_argument("--adapt-lr", type=float, default=1e-4)
    parser.add_argument("--adapt-optimizer", default="adam")
    parser.add_argument("--adapt-steps", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--compress-bytes", type=int, default=0,
                        help="round-trip this many bytes of the --dir set (0 = skip)")
    parser.add_argument("--compress-stride", type=int, default=0)
    parser.add_argument("--no-modes", action="store_true",
                        help="score no mode: only the round trip (with --compress-bytes and --dir)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for scoring and the round trip")
    args = parser.parse_args(argv)
    try:
        print(markdown(run(args)))
    except GocramError as err:
        print(f"gocram: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
