"""How well decontamination works: copies of the benchmarks caught, and idioms wrongly matched.

    python -m gocram.data.corpus.decontam_eval [--corpus corpus/sample | --no-corpus] [--tree DIR ...]
                                               [--out results/decontam]

For the plain n-gram rule (`decontam.min_identifier_len=0`) and the build's default rule, it
writes OUT/summary.json:

- recall: a training file that copies a benchmark's text must be dropped. Each HumanEval-X Go
  task's declaration + canonical solution (what a solution repository holds, without the prompt's
  doc comment) and each MultiPL-E prompt is matched as if it were a file; caught / total per set,
  and the tasks missed.
- false hits: the files of real Go that match, on the corpus and on each `--tree` (e.g. Go's own
  `strings` package), one list entry per tree, named by `where`. These trees copy no benchmark,
  so every hit there is an idiom the rule mistook for contamination; each hit names the file, the
  task and the n-gram.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gocram.core.errors import GocramError
from gocram.data.corpus.decontam import (
    HUMANEVAL_GLOB,
    MULTIPLE_GLOB,
    Decontaminator,
    eval_texts,
    read_jsonl,
)
from gocram.data.corpus.docs import iter_parquet_rows
from gocram.data.corpus.options import build_options

REPO_ROOT = Path(__file__).resolve().parents[3]


def copies(eval_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """Per benchmark set: (task, the text a contaminated training file would hold)."""
    sets: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(eval_dir.glob(HUMANEVAL_GLOB)):
        sets.setdefault("humaneval-x declaration+solution", []).extend(
            (row["task_id"], row["declaration"] + row["canonical_solution"]) for row in read_jsonl(path))
    for path in sorted(eval_dir.glob(MULTIPLE_GLOB)):
        sets[f"multipl-e {path.name.split('.')[0].removeprefix('multiple_')} prompt"] = [
            (row["name"], row["prompt"]) for row in read_jsonl(path)]
    return sets


def recall(rule: Decontaminator, texts: list[tuple[str, str]]) -> dict:
    missed = [task for task, text in texts if rule.match(text) is None]
    return {"total": len(texts), "caught": len(texts) - len(missed), "missed": missed}


def false_hits(rule: Decontaminator, where: str, files: list[tuple[str, str]]) -> dict:
    hits = [{"file": name, "task": m.task, "ngram": m.ngram}
            for name, text in files if (m := rule.match(text)) is not None]
    return {"where": where, "files": len(files), "hit": len(hits), "hits": hits}


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def corpus_files(corpus: Path) -> list[tuple[str, str]]:
    chunks = sorted(corpus.glob("chunk-*.parquet"))
    if not chunks:
        raise GocramError(f"--corpus {corpus}: no chunk-*.parquet there (a `gocram data build` output)")
    return [(f"{row['max_stars_repo_name']}/{row['max_stars_repo_path']}", row["content"])
            for path in chunks for row in iter_parquet_rows(path)]


def tree_files(tree: Path) -> list[tuple[str, str]]:
    if not tree.is_dir():
        raise GocramError(f"--tree {tree}: not a directory")
    return [(str(p.relative_to(tree)), p.read_text(errors="replace")) for p in sorted(tree.rglob("*.go"))]


def evaluate(corpus: Path | None, trees: list[Path], eval_dir: Path) -> dict:
    default = build_options().decontam
    protected = eval_texts(eval_dir)
    sets = copies(eval_dir)
    real = {_shown(corpus): corpus_files(corpus)} if corpus else {}
    real.update({_shown(tree): tree_files(tree) for tree in trees})
    report: dict = {"ngram": default.ngram, "eval_dir": str(eval_dir), "rules": {}}
    for name, min_len in (("plain", 0), ("default", default.min_identifier_len)):
        t0 = time.perf_counter()
        rule = Decontaminator(protected, default.ngram, min_identifier_len=min_len)
        report["rules"][name] = {
            "min_identifier_len": min_len,
            "recall": {set_name: recall(rule, texts) for set_name, texts in sets.items()},
            "false_hits": [false_hits(rule, where, files) for where, files in real.items()],
            "seconds": round(time.perf_counter() - t0, 2)}
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gocram.data.corpus.decontam_eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=REPO_ROOT / "corpus" / "sample")
    parser.add_argument("--no-corpus", action="store_true", help="measure only the --tree directories")
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="a directory of Go that copies no benchmark (repeatable)")
    parser.add_argument("--eval-dir", type=Path, default=REPO_ROOT / "evaldata")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "decontam")
    args = parser.parse_args(argv)
    report = evaluate(None if args.no_corpus else args.corpus, args.tree, args.eval_dir)
    from gocram.core.files import atomic_write_json

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "summary.json", report)
    for name, rule in report["rules"].items():
        caught = ", ".join(f"{k}: {v['caught']}/{v['total']}" for k, v in rule["recall"].items())
        hits = ", ".join(f"{v['where']}: {v['hit']}/{v['files']}" for v in rule["false_hits"])
        print(f"{name}: caught {caught}; false hits {hits}")


if __name__ == "__main__":
    main()
