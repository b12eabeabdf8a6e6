"""Thresholds for a target precision (or recall), checked on data not used to choose them.

Usage: python benchmarks/bench_threshold.py --select DIR --report DIR --workdir DIR
           MODEL [MODEL ...] [--precision 0.8 0.9] [--recall 0.5]

For each pipeline and target: `python -m spacy_ntk_ner calibrate MODEL SELECT
--target-precision P --output ...` fits the calibration and chooses the threshold on
the select split (95% Wilson lower bound), then `python -m spacy_ntk_ner evaluate`
measures the precision and recall of `doc.ents` and the ECE of the entity scores on
the report split, which played no part in the choice. Goal (issue 12): precision on
the report split at least the target minus 0.03, ECE at most 0.05.
Writes DIR/results.json and prints a markdown table.
"""

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List

from _common import PY, sh


def _label(model: Path) -> str:
    """A model's name: its training folder's for a `model-best`."""
    return model.parent.name if model.name in ("model-best", "model-last") else model.name


def one(model: Path, kind: str, target: float, args: argparse.Namespace) -> Dict[str, Any]:
    """Choose the threshold on the select split and measure it on the report split."""
    name = f"{_label(model)}-{kind}-{target}"
    out = args.workdir / name
    log = args.workdir / "log.txt"
    try:
        sh(
            [PY, "-m", "spacy_ntk_ner", "calibrate", str(model), str(args.select)]
            + [f"--target-{kind}", str(target), "--output", str(out)],
            log,
        )
    except SystemExit as err:
        # A target the select split cannot reach: the command says so (recorded).
        return {"model": str(model), "kind": kind, "target": target, "unreachable": str(err)}
    meta = json.loads((out / "meta.json").read_text())["ntk_ner"]["ntk_ner"]
    metrics = args.workdir / f"{name}.json"
    sh(
        [PY, "-m", "spacy_ntk_ner", "evaluate", str(out), str(args.report)]
        + ["--output", str(metrics)],
        log,
    )
    m = json.loads(metrics.read_text())
    held = m["ents_p"] if kind == "precision" else m["ents_r"]
    return {
        "model": str(model),
        "kind": kind,
        "target": target,
        "threshold": meta["threshold"],
        "select_expected": meta["dev"][kind],
        "report_precision": m["ents_p"],
        "report_recall": m["ents_r"],
        "report_ece": m["calibration"]["ntk_ner"]["ece"],
        "met": held >= target - 0.03,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--select", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--precision", type=float, nargs="*", default=[0.8, 0.9])
    parser.add_argument("--recall", type=float, nargs="*", default=[0.5])
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows: List[Dict[str, Any]] = []
    for model in args.models:
        for kind, targets in (("precision", args.precision), ("recall", args.recall)):
            rows += [one(model, kind, t, args) for t in targets]
    (args.workdir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| model | target | threshold | on select | P report | R report | ECE report | met |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        if "unreachable" in r:
            print(f"| {_label(Path(r['model']))} | {r['kind']} ≥ {r['target']} | not reachable |")
            continue
        print(
            f"| {_label(Path(r['model']))} | {r['kind']} ≥ {r['target']} | "
            f"{r['threshold']:.3f} | {r['select_expected']:.3f} | {r['report_precision']:.3f} | "
            f"{r['report_recall']:.3f} | {r['report_ece']:.3f} | {'yes' if r['met'] else 'no'} |"
        )


if __name__ == "__main__":
    main()
