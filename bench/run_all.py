"""Run every benchmark in bench/ in sequence and say which failed.

    .venv/bin/python bench/run_all.py            # every bench with its report arguments
    .venv/bin/python bench/run_all.py --quick    # smaller sets where a bench has them
    .venv/bin/python bench/run_all.py --only reference accuracy
    .venv/bin/python bench/run_all.py --list     # the commands, without running them

Every ``bench/*_bench.py`` is found at run time (a new bench is included without touching
this file) and run as its own process from the repository root with the Python running
this script, one after another (they measure time; running them side by side would spoil
that). Their output goes straight through; a summary of exit statuses and wall times comes
last, and the exit status is 1 if any bench failed (exited non-zero or could not start).

The full run takes the better part of an hour on two cores (the reuse bench inserts a
million photos, the soak bench runs ten minutes, several others run minutes each);
``--quick`` takes roughly ten minutes and is for checking that every bench still runs, not
for numbers to record in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

#: Arguments per bench (the name without ``_bench.py``): the report run, and the quick run.
#: A bench not listed runs with no arguments in both. The report arguments are the ones
#: docs/benchmarks.md records; the quick ones use each bench's own smaller options.
ARGUMENTS: dict[str, tuple[list[str], list[str]]] = {
    "accuracy": ([], ["--limit-genuine", "30"]),
    "forensics": ([], ["--quick"]),
    "intake": ([], ["--duration", "5", "--photos", "small", "--analysis", "0"]),
    "reference": (["--split", "report"], ["--split", "report", "--per-reference", "1",
                                          "--unrelated", "50"]),
    "reuse": (["--stores", "file,sqlite,postgresql"],
              ["--photos", "100000", "--queries", "200", "--stores", "sqlite,postgresql",
               "--store-photos", "10000"]),
    "soak": ([], ["--minutes", "1", "--kill-every", "20"]),
    "speed": ([], ["--runs", "3", "--photos", "8"]),
    "visible_label": ([], ["--per-text", "2"]),
    "watermark": ([], ["--quick"]),
}


def benches() -> list[str]:
    """Names of the benches in bench/, sorted."""
    return sorted(p.name[:-len("_bench.py")] for p in BENCH.glob("*_bench.py"))


def command(name: str, *, quick: bool) -> list[str]:
    report, fast = ARGUMENTS.get(name, ([], []))
    return [sys.executable, str(BENCH / f"{name}_bench.py"), *(fast if quick else report)]


def run(name: str, *, quick: bool) -> tuple[int, float]:
    """Exit status and wall seconds of one bench; its output goes to ours."""
    cmd = command(name, quick=quick)
    print(f"\n===== {name}: {' '.join(cmd[1:])}", flush=True)
    start = time.monotonic()
    try:
        status = subprocess.run(cmd, cwd=ROOT, check=False).returncode
    except OSError as exc:  # could not start: a failure like any other, reported
        print(f"{name}: cannot start {cmd[0]}: {exc}", file=sys.stderr, flush=True)
        status = 127
    return status, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="quick options where a bench has them (checks, not numbers)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these benches (names without _bench.py)")
    parser.add_argument("--list", action="store_true", help="print the commands and stop")
    args = parser.parse_args(argv)

    names = benches()
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown bench {', '.join(unknown)}; expected one of "
                         f"{', '.join(names)}")
        names = [n for n in names if n in args.only]
    if args.list:
        for name in names:
            print(" ".join(command(name, quick=args.quick)))
        return 0

    results = {}
    for name in names:
        results[name] = run(name, quick=args.quick)
    print("\n===== summary")
    for name, (status, seconds) in results.items():
        print(f"{name:14} {'ok' if status == 0 else f'FAILED (exit {status})':18} "
              f"{seconds:8.1f} s")
    failed = [name for name, (status, _) in results.items() if status != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
