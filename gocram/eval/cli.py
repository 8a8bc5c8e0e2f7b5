"""Evaluation commands: `gocram eval bpb|humaneval|heldout`, `complete`, `serve`, `export`, `finetune`,
`compress`, `decompress`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _add_sampling(p: argparse.ArgumentParser, *, temperature: float, max_new_tokens: int) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    g.add_argument("--temperature", type=float, default=temperature, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=0, help="0 = off")
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--stop", action="append", default=[], metavar="STRING",
                   help="also stop before this string (repeatable)")
    g.add_argument("--no-function-end", action="store_true",
                   help="do not stop when the braces the prompt left open are closed")
    g.add_argument("--seed", type=int, default=0)


def _sampling(args: argparse.Namespace, extra_stops: tuple[str, ...] = ()):
    from gocram.eval.generate import SamplingConfig

    return SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                          function_end=not args.no_function_end,
                          stop_strings=(*args.stop, *extra_stops))


def _add_checkpoint(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--checkpoint", required=required, help="a run directory or a ckpt-*.pt file")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint")
    evals = p.add_subparsers(dest="eval_command", required=True)
    bpb = evals.add_parser("bpb", help="bits per byte over every .go file under a directory")
    _add_checkpoint(bpb)
    bpb.add_argument("--dir", required=True, help="directory of Go files to score")
    bpb.add_argument("--batch", type=int, default=16)
    _add_scoring(bpb)
    bpb.add_argument("--stream", action="store_true",
                     help="score the files as one stream (sorted relative paths), context "
                          "carried across files")
    g = bpb.add_argument_group("score-first online adaptation (dynamic evaluation)")
    g.add_argument("--adapt", action="store_true",
                   help="score each window, then train on it, in order")
    g.add_argument("--adapt-lr", type=float, default=1e-4)
    g.add_argument("--adapt-optimizer", default="adam", help="adam or sgd")
    g.add_argument("--adapt-steps", type=int, default=1, help="optimizer steps per window")
    g.add_argument("--adapt-windows", type=int, default=1,
                   help="windows scored together, then trained on together")
    g.add_argument("--adapt-reset-per-file", action="store_true",
                   help="every file starts from the checkpoint's weights")
    bpb.add_argument("--no-comparators", action="store_true",
                     help="skip xz, zstd and PPMd on the scored bytes")
    bpb.set_defaults(handler=run_bpb)

    _add_codec_command(sub, "compress", help="compress a text file with a run's model and a range coder",
                       checkpoint_help="a run directory or a ckpt-*.pt file", handler=run_compress,
                       chooses_windows=True)
    _add_codec_command(sub, "decompress", help="decompress a file written by gocram compress",
                       checkpoint_help="the run the file was compressed with", handler=run_decompress,
                       chooses_windows=False)

    from gocram.eval.suites import SUITES

    he = evals.add_parser("humaneval", help="pass@k on a Go suite with the real go test (sandboxed)")
    he.add_argument("--suite", default="humaneval-x", choices=SUITES.names())
    he.add_argument("--data", help="the suite's JSONL file (default: evaldata/)")
    _add_checkpoint(he, required=False)
    he.add_argument("--canonical", action="store_true",
                    help="test the suite's canonical solutions instead of a model (self-check)")
    he.add_argument("--n", type=int, default=1, help="samples per task (pass@k for k <= n)")
    he.add_argument("--batch", type=int, default=20, help="samples decoded together")
    he.add_argument("--jobs", type=int, default=2, help="go tests run in parallel")
    he.add_argument("--timeout", type=float, default=15.0, help="seconds per test binary")
    he.add_argument("--limit", type=int, help="only the first N tasks")
    he.add_argument("--tasks", help="comma-separated task ids")
    he.add_argument("--out", required=True, help="directory for results.jsonl and summary.json")
    _add_sampling(he, temperature=0.2, max_new_tokens=256)
    he.set_defaults(handler=run_humaneval)

    ho = evals.add_parser("heldout", help="complete held-out Go functions: exact match, edit "
                                          "similarity, gofmt -e")
    _add_checkpoint(ho)
    ho.add_argument("--corpus", help="corpus directory (default: the run's data.corpus)")
    ho.add_argument("--max-functions", type=int, default=100)
    ho.add_argument("--out", help="write results.jsonl and summary.json here")
    _add_sampling(ho, temperature=0.0, max_new_tokens=192)
    ho.set_defaults(handler=run_heldout)

    c = sub.add_parser("complete", help="stream a completion of a Go prompt (file or stdin)")
    _add_checkpoint(c)
    c.add_argument("--prompt-file", default="-", help="a file with the prompt; '-' = stdin")
    c.add_argument("--echo", action="store_true", help="print the prompt before the completion")
    _add_sampling(c, temperature=0.2, max_new_tokens=256)
    c.set_defaults(handler=run_complete)

    s = sub.add_parser("serve", help="a local web page: paste Go, watch the completion stream")
    _add_checkpoint(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000, help="0 = any free port")
    _add_sampling(s, temperature=0.2, max_new_tokens=128)
    s.set_defaults(handler=run_serve)

    e = sub.add_parser("export", help="export a run for Hugging Face transformers (GPT-2)")
    _add_checkpoint(e)
    e.add_argument("--hf", required=True, metavar="DIR", help="new directory to write")
    e.set_defaults(handler=run_export)

    f = sub.add_parser("finetune", help="fine-tune a run on documented Go functions from its corpus")
    _add_checkpoint(f)
    f.add_argument("--out", required=True, help="new run directory")
    f.add_argument("--budget", type=float, default=60.0, help="training seconds")
    f.add_argument("--lr", type=float, default=3e-4)
    f.add_argument("--fim-rate", type=float, default=0.0,
                   help="share of examples in fill-in-the-middle form (0 = off)")
    f.add_argument("--max-examples", type=int, help="cap the curated set")
    f.add_argument("--humaneval-limit", type=int, default=0,
                   help="HumanEval-X tasks for pass@1 before/after (0 = all 164, -1 = skip)")
    f.add_argument("--jobs", type=int, default=2)
    f.set_defaults(handler=run_finetune)


def _add_scoring(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stride", type=int, default=0,
                   help="sliding windows every S tokens (0 = non-overlapping chunks)")


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; decoding needs the count used to encode")


def _add_codec_command(sub: argparse._SubParsersAction, name: str, *, help: str, checkpoint_help: str,
                       handler, chooses_windows: bool) -> None:
    """compress and decompress take the same files and thread count; the windows (--stride) are
    chosen when compressing and read back from the file's header when decompressing."""
    p = sub.add_parser(name, help=help)
    p.add_argument("--checkpoint", required=True, help=checkpoint_help)
    p.add_argument("input", metavar="IN")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    if chooses_windows:
        _add_scoring(p)
    _add_threads(p)
    p.set_defaults(handler=handler)


def _load(args):
    from gocram.eval.tree import load_run

    return load_run(args.checkpoint, args.device)


def run_bpb(args: argparse.Namespace) -> int:
    from gocram.eval.scoring import AdaptConfig, score_directory

    adapt = None
    if args.adapt:
        adapt = AdaptConfig(lr=args.adapt_lr, optimizer=args.adapt_optimizer, steps=args.adapt_steps,
                            windows_per_step=args.adapt_windows,
                            reset_per_file=args.adapt_reset_per_file)
    print(json.dumps(score_directory(args.checkpoint, args.dir, stride=args.stride,
                                     stream=args.stream, adapt=adapt, batch=args.batch,
                                     device=args.device, comparators=not args.no_comparators),
                     indent=1))
    return 0


def run_compress(args: argparse.Namespace) -> int:
    from gocram.eval.compress import compress

    print(json.dumps(compress(args.checkpoint, args.input, args.output, stride=args.stride,
                              threads=args.threads), indent=1))
    return 0


def run_decompress(args: argparse.Namespace) -> int:
    from gocram.eval.compress import decompress

    print(json.dumps(decompress(args.checkpoint, args.input, args.output, threads=args.threads),
                     indent=1))
    return 0


def run_humaneval(args: argparse.Namespace) -> int:
    from gocram.core.errors import GocramError
    from gocram.eval.gorun import Limits
    from gocram.eval.harness import evaluate, format_summary, select_tasks
    from gocram.eval.suites import load_suite

    if args.canonical == bool(args.checkpoint):
        raise GocramError("give either --checkpoint (sample a model) or --canonical (self-check)")
    if args.n < 1 or args.jobs < 1 or args.batch < 1:
        raise GocramError("--n, --batch and --jobs must be >= 1")
    tasks = select_tasks(load_suite(args.suite, args.data),
                         task_ids=[t for t in (args.tasks or "").split(",") if t], limit=args.limit)
    limits = Limits(timeout_s=args.timeout)
    if args.canonical:
        if any(t.canonical is None for t in tasks):
            raise GocramError(f"suite {args.suite} has no canonical solutions")
        meta = {"mode": "canonical", "repaired": [t.task_id for t in tasks if t.canonical_repaired]}
        source = _canonical
    else:
        from gocram.eval.sampler import model_source

        model, tok, _ = _load(args)
        cfg = _sampling(args)
        source = model_source(model, tok, cfg, n=args.n, batch=args.batch)
        meta = {"mode": "model", "checkpoint": str(args.checkpoint), "sampling": cfg.__dict__}
    summary = evaluate(tasks, source, args.out, suite=args.suite, jobs=args.jobs, limits=limits,
                       meta=meta)
    print(format_summary(summary))
    print(f"\nper-task results: {Path(args.out) / 'results.jsonl'}")
    return 0


def _canonical(task):
    return [(task.canonical, "canonical")]


def run_heldout(args: argparse.Namespace) -> int:
    from gocram.eval.heldout import run_heldout_benchmark

    model, tok, cfg = _load(args)
    summary = run_heldout_benchmark(model, tok, args.corpus or cfg.data.corpus, cfg.data,
                                    _sampling(args), max_functions=args.max_functions, out=args.out)
    print(json.dumps(summary, indent=1))
    return 0


def run_complete(args: argparse.Namespace) -> int:
    from gocram.core.errors import GocramError
    from gocram.eval.demo import complete_to

    if args.prompt_file == "-":
        prompt = sys.stdin.read()
    else:
        try:
            prompt = Path(args.prompt_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise GocramError(f"--prompt-file {args.prompt_file}: cannot read ({err})") from None
    cfg = _sampling(args)
    model, tok, _ = _load(args)
    if args.echo:
        sys.stdout.write(prompt)
    complete_to(sys.stdout, model, tok, prompt, cfg)
    sys.stdout.write("\n")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from gocram.eval.demo import make_server

    cfg = _sampling(args)
    model, tok, _ = _load(args)
    server = make_server(model, tok, host=args.host, port=args.port, base=cfg,
                         label=str(args.checkpoint))
    host, port = server.server_address[:2]
    print(f"serving on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def run_export(args: argparse.Namespace) -> int:
    from gocram.eval.export import export_hf

    out = export_hf(args.checkpoint, args.hf)
    print(f"exported to {out}: load it with transformers.AutoModelForCausalLM.from_pretrained")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    from gocram.eval.finetune import FinetuneOptions, finetune, format_report

    report = finetune(args.checkpoint, args.out, FinetuneOptions(
        budget_s=args.budget, lr=args.lr, fim_rate=args.fim_rate, max_examples=args.max_examples,
        humaneval_limit=args.humaneval_limit, jobs=args.jobs, device=args.device))
    print(format_report(report))
    return 0
