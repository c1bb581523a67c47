"""Cold-start cost of ``kbq ask``: wall time and peak RSS of fresh processes, against ``import numpy``.

    python -m benchmarks.cold_ask                     # temp index built from corpus/
    KB_INDEX_DIR=.kbq/index python -m benchmarks.cold_ask
    python -m benchmarks.cold_ask --cmd "python /tmp/patched_kbq.py"   # try another entry point

Every sample is a fresh child process (``kbq ask "which regions have C5?" --json``, exactly as a user
runs it), timed from spawn to exit; its peak RSS comes from ``os.wait4``. One unmeasured warm-up run
per command first fills the OS page cache (and whatever on-disk caches the command keeps, e.g. the USE
model cache beside the index). Samples of the different commands are interleaved, so drifting load on
the machine hits them alike. The ``load_use + encode`` row is the query-embedder start-up alone
(``kb.use_cache`` with a warm cache), for comparison. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "which regions have C5?"
RUNS = 5


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``cmd`` once; returns (wall seconds, peak RSS in MiB). Fails unless it exits 0 or 3 (abstained)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in (0, 3):
            err.seek(0)
            raise RuntimeError(
                f"{shlex.join(cmd)} exited {proc.returncode}:\n{err.read().decode(errors='replace')}"
            )
        if "--json" in cmd:
            out.seek(0)
            json.loads(out.read())  # a real answer came out, not just a fast failure
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def ensure_index(index_dir: Path, env: dict[str, str]) -> None:
    if (index_dir / "manifest.json").exists():
        return
    print(f"building an index in {index_dir} …", file=sys.stderr)
    kbq = str(Path(sys.executable).parent / "kbq")
    subprocess.run([kbq, "ingest", "corpus"], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def run(index_dir: Path, ask_cmd: list[str], workdir: Path) -> None:
    env = {**os.environ, "KB_INDEX_DIR": str(index_dir)}
    ensure_index(index_dir, env)
    use_cache = workdir / "use-cache"
    commands = {
        "`python -c 'import numpy'` (baseline)": [sys.executable, "-c", "import numpy"],
        f'`kbq ask "{QUESTION}" --json`': [*ask_cmd, "ask", QUESTION, "--json"],
        "`load_use(cache) + encode` (kb.use_cache)": [
            sys.executable,
            "-c",
            "import numpy\nfrom kb.use_cache import load_use\n"
            f"load_use({str(use_cache)!r}, threads=1).encode([{QUESTION!r}])",
        ],
    }
    for cmd in commands.values():  # warm-up: page cache, on-disk caches
        measure(cmd, env)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(RUNS):
        for name, cmd in commands.items():
            samples[name].append(measure(cmd, env))

    base = statistics.median(w for w, _ in samples[next(iter(commands))])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{RUNS} fresh processes per row (after one warm-up each), interleaved; CPU count {os.cpu_count()}, "
        f"load average {load}; index {index_dir}\n"
    )
    print("| command | median wall s | median peak RSS MiB | wall vs baseline | wall − baseline s |")
    print("|---|---:|---:|---:|---:|")
    for name, rows in samples.items():
        wall = statistics.median(w for w, _ in rows)
        rss = statistics.median(r for _, r in rows)
        print(f"| {name} | {wall:.3f} | {rss:.0f} | {wall / base:.1f}× | {wall - base:+.3f} |")
    print("\nraw samples (wall s / peak RSS MiB):\n")
    for name, rows in samples.items():
        print(f"- {name}: " + ", ".join(f"{w:.3f}/{r:.0f}" for w, r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cmd", help="command that stands for `kbq` (default: the kbq beside this python)")
    args = parser.parse_args()
    ask_cmd = shlex.split(args.cmd) if args.cmd else [str(Path(sys.executable).parent / "kbq")]
    with tempfile.TemporaryDirectory(prefix="kbq-cold-") as tmp:
        index_dir = Path(os.environ.get("KB_INDEX_DIR") or Path(tmp) / "index")
        run(index_dir.absolute(), ask_cmd, Path(tmp))


if __name__ == "__main__":
    main()
