"""The fuzz properties of tests/test_fuzz.py, run long: every generated data file loads (or
fits) or is refused with one SeqcastError line; any other outcome is a failure.

    python benchmarks/fuzz.py --examples 5000 --out benchmarks/fuzz.json
    options: --properties loader,cli  --seed 0

Two properties, each over `--examples` generated files (the strategies of tests/test_fuzz.py:
tables in many encodings, separators and quotings with odd cells, mutated bytes, binary garbage
behind real formats' magic bytes, Parquet under a CSV name or truncated):

- `loader`  `seqcast.data.load_frame(path)`: a long frame, or SeqcastError with a one-line
            message;
- `cli`     `seqcast fit <file> --model naive --horizon 2 --window 3 --out DIR`, in process:
            exit 0 with a model directory written, or exit 2 with one `error:` line.

Unlike the test, a failing example does not stop the run: each is recorded (exception type,
first line of its message, the file's name and first bytes) and the run goes on, so one run
counts every failure. JSON (`--out`): {"settings": {...}, "properties": {name: {"examples",
"outcomes", "failures", "seconds"}}}; a short table is printed last. Exit status 1 when any
example failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_fuzz  # noqa: E402  (the strategies and checks the CI test uses)

CHECKS = {"loader": test_fuzz.check_loader, "cli": test_fuzz.check_cli}
KEPT_FAILURES = 20  # failures kept in the JSON per property (all are counted)


def run_property(name: str, examples: int, random_seed: int) -> dict[str, Any]:
    """Run one property over `examples` generated files; count outcomes, keep failures."""
    check = CHECKS[name]
    outcomes: collections.Counter[str] = collections.Counter()
    failures: list[dict[str, Any]] = []

    @seed(random_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # no shrinking: a failure is recorded, not raised
        suppress_health_check=list(HealthCheck),
    )
    @given(test_fuzz.files)
    def explore(file: tuple[str, bytes]) -> None:
        file_name, data = file
        try:
            outcomes[check(file_name, data)] += 1
        except Exception as err:  # the property's failures: anything but the two outcomes
            outcomes["failed"] += 1
            if len(failures) < KEPT_FAILURES:
                frame = traceback.extract_tb(err.__traceback__)[-1]
                failures.append(
                    {
                        "error": type(err).__name__,
                        "message": (str(err).strip().splitlines() or [""])[0][:300],
                        "raised_at": f"{Path(frame.filename).name}:{frame.lineno}",
                        "file": file_name,
                        "head": repr(data[:120]),
                    }
                )

    start = time.perf_counter()
    explore()
    return {
        "examples": sum(outcomes.values()),
        "outcomes": dict(outcomes),
        "failures": failures,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=5000, help="files per property")
    parser.add_argument("--properties", default="loader,cli", help="comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/fuzz.json"))
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.properties.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        parser.error(f"unknown properties {unknown}; expected some of {sorted(CHECKS)}")
    logging.disable(logging.WARNING)  # the readers' encoding notes, once per example
    results = {name: run_property(name, args.examples, args.seed) for name in names}
    report = {
        "settings": {
            "examples": args.examples,
            "seed": args.seed,
            "python": platform.python_version(),
            "command": " ".join(["python", "benchmarks/fuzz.py", *(argv or sys.argv[1:])]),
        },
        "properties": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'property':<10} {'examples':>8} {'loaded/fitted':>13} {'refused':>8} "
          f"{'failed':>6} {'seconds':>8}")  # fmt: skip
    for name, r in results.items():
        ok = r["outcomes"].get("loaded", 0) + r["outcomes"].get("fitted", 0)
        print(
            f"{name:<10} {r['examples']:>8} {ok:>13} {r['outcomes'].get('refused', 0):>8} "
            f"{r['outcomes'].get('failed', 0):>6} {r['seconds']:>8}"
        )
        for failure in r["failures"][:5]:
            print(f"  {failure['error']} at {failure['raised_at']}: {failure['message'][:100]}")
    return int(any(r["outcomes"].get("failed", 0) for r in results.values()))


if __name__ == "__main__":
    sys.exit(main())
