"""Where the time goes: the API under load sampled by py-spy, a training run by pyinstrument.

    python -m benchmarks.profile serve [--case CASE] [--store redis|memory] [--seconds S]
        [--rate HZ] [--models DIR] [--out DIR]
    python -m benchmarks.profile train [--log PATH --format PRESET] [--evaluate] [--out DIR]

The benchmark's figures say how far a target is missed; these say why, the same way every time
instead of with scripts written for the occasion.

``serve`` starts ``personalize serve`` (1 worker; a private redis-server with ``--store redis``,
the default) on the model in ``--models`` (default: the default model trained on Online Retail),
sends the sessions the HTTP benchmark's cases read, warms up, then loads one of those cases
(``--case``, :func:`benchmarks.http_latency.engine_cases`; the same load generator, 8 in flight)
while py-spy samples the server's processes for ``--seconds`` without pausing them. It writes
the collapsed stacks (``serve-<case>.folded``: a flame graph tool's or speedscope's input) and a
summary (``serve-<case>.txt``): the server's CPU per request and req/s over the sampled load, then
the functions by their own samples (where the CPU goes: a C call such as a socket send counts
in the Python function that made it) and by inclusive samples (which layers cost what).

``train`` reads the log (``--log``/``--format``; default the shared Online Retail file) and runs
what ``benchmarks.training`` times as ``train`` (``train_model`` without the hold-out evaluation,
or with it under ``--evaluate``) after one untimed run of the same, so that numba's compiled
kernels and the file cache are warm: once under pyinstrument, whose call tree it writes as text
(``train-<log>.txt``, also printed) and as an HTML page (``train-<log>.html``); pyinstrument
follows the main thread, where work handed to the trainer's pool shows as the wait for its
result. Then once under py-spy, which samples every Python thread: the same summary as
``serve``'s (``train-<log>-threads.txt``), and the collapsed stacks.

Outputs go to ``--out`` (default ``benchmarks/results/profiles``, which git ignores: profiles
are for reading, not for the record).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import loadgen
from benchmarks.fixtures import ONLINE_RETAIL, REPO, retail_model
from benchmarks.http_latency import LoadSpec, engine_cases
from benchmarks.loadgen import Request, load
from benchmarks.servers import HOST, cpu_seconds, engine_server, free_port, private_redis

OUT = REPO / "benchmarks" / "results" / "profiles"
DEFAULT_CASE = "GET recs, known customer"  # the worst case of the throughput target
CONCURRENCY = 8  # as the HTTP benchmark's capacity runs
_LINE = re.compile(r":\d+\)$")  # py-spy's frame "function (file:line)": the line is dropped
_PROCESS = re.compile(r'^process \d+:"')  # the root frame py-spy's --subprocesses adds
NO_PYTHON_FRAME = "(no Python frame: the interpreter or a native thread)"


@dataclass(frozen=True)
class StackSummary:
    """Samples per function: its own (the stack's innermost frame) and inclusive (anywhere in
    the stack, once per sample however deep the recursion); py-spy's process frames left out."""

    total: int
    own: Counter[str]
    inclusive: Counter[str]

    def table(self, top: int = 40) -> str:
        lines = [f"{self.total} samples", "", "own samples (where the CPU goes):"]
        lines += [f"{100 * n / self.total:6.1f}%  {name}" for name, n in self.own.most_common(top)]
        lines += ["", "inclusive samples (what each layer costs, callees included):"]
        lines += [
            f"{100 * n / self.total:6.1f}%  {name}" for name, n in self.inclusive.most_common(top)
        ]
        return "\n".join(lines)


def summarize(folded: Iterator[str] | list[str]) -> StackSummary:
    """Collapsed stacks (``frame;frame;... count`` per line, outermost first, as py-spy's
    ``raw`` format and flame graph tools write them) summed per function."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in folded:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [_LINE.sub(")", f) for f in stack.split(";") if not _PROCESS.match(f)]
        frames = frames or [NO_PYTHON_FRAME]
        own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    return StackSummary(total, own, inclusive)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _py_spy() -> str:
    beside = Path(sys.executable).with_name("py-spy")  # the virtualenv's, installed by [bench]
    found = str(beside) if beside.is_file() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy not found: pip install 'personalize[bench]'")
    return found


@contextlib.contextmanager
def _served(models: Path | None, store: str, work: Path) -> Iterator[tuple[int, int, Path]]:
    """The engine's server (port, pid) on ``models`` (default: Online Retail's, trained here)."""
    if models is None:
        print("training the default model on Online Retail ...", file=sys.stderr)
        models = retail_model(work / "models")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(private_redis(work)) if store == "redis" else None
        port = free_port()
        process = stack.enter_context(engine_server(models, port, work / "serve.log", url, 1))
        yield port, process.pid, models


def profile_serve(
    case_name: str, store: str, seconds: int, rate: int, models: Path | None, out: Path
) -> Path:
    """Sample the server while one case loads it; the summary's path (module doc)."""
    from engine.model import load_model

    out.mkdir(parents=True, exist_ok=True)
    folded, summary = (out / f"serve-{_slug(case_name)}{ext}" for ext in (".folded", ".txt"))
    spec = LoadSpec(requests=1000)  # 2,200 visitors of each session size; the load cycles them
    with tempfile.TemporaryDirectory() as tmp, _served(models, store, Path(tmp)) as served:
        port, pid, models = served
        customers = np.random.default_rng(0).permutation(load_model(models, verify=False).users.ids)
        cases = engine_cases(port, [str(c) for c in customers], spec)
        if case_name not in cases:
            raise SystemExit(f"unknown case {case_name!r}; one of: {', '.join(cases)}")
        prepared = 2 * spec.requests + spec.warmup  # the visitors whose sessions were sent
        chosen = cases[case_name]

        def case(i: int) -> Request:
            return chosen(i % prepared)

        loadgen.run(load(HOST, port, case, spec.warmup, CONCURRENCY, time.monotonic() + 60))
        command = [_py_spy(), "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
                   "--rate", str(rate), "--duration", str(seconds), "--format", "raw",
                   "--output", str(folded)]  # fmt: skip
        with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as spy:
            time.sleep(0.5)  # attached
            before, started = cpu_seconds(pid), time.monotonic()
            result = loadgen.run(
                load(HOST, port, case, 10**9, CONCURRENCY, started + seconds, spec.warmup)
            )
            spent = cpu_seconds(pid) - before
            _, errors = spy.communicate(timeout=seconds + 60)
        if spy.returncode != 0 or not folded.is_file():
            raise SystemExit(f"py-spy failed ({spy.returncode}): {errors.decode().strip()}")
    requests = max(result["requests"], 1)
    head = (
        f"{case_name}, {store} store, 1 worker, {CONCURRENCY} in flight, {seconds} s sampled "
        f"at {rate} Hz\n{result['throughput_rps']:,.0f} req/s, server CPU "
        f"{spent / requests * 1e6:,.0f} µs/request, {result['errors']} errors\n"
    )
    with folded.open() as lines:
        summary.write_text(head + "\n" + summarize(lines).table() + "\n")
    return summary


def profile_train(log_path: Path, preset: str, evaluate: bool, rate: int, out: Path) -> Path:
    """pyinstrument, then py-spy, over the trainer's read and train, after a warm-up run (module
    doc); the call tree's path."""
    import sklearn.linear_model  # noqa: F401  (imported where the trainer uses it; not profiled)
    from pyinstrument import Profiler

    from training.logs import PRESETS, read_purchase_log
    from training.params import ModelParams
    from training.pipeline import train_model

    def run() -> None:
        log = read_purchase_log(log_path, PRESETS[preset])
        with tempfile.TemporaryDirectory() as models:
            train_model(log, ModelParams(), models_dir=Path(models), run_evaluation=evaluate)

    out.mkdir(parents=True, exist_ok=True)
    name = f"train-{_slug(log_path.stem)}{'-evaluated' if evaluate else ''}"
    run()  # warm: numba's kernels loaded from its cache, the file in the page cache
    profiler = Profiler(interval=0.001)
    with profiler:
        run()
    (out / f"{name}.html").write_text(profiler.output_html())
    tree = out / f"{name}.txt"
    tree.write_text(profiler.output_text(unicode=True, color=False))

    folded = out / f"{name}.folded"
    command = [_py_spy(), "record", "--pid", str(os.getpid()), "--nonblocking", "--rate",
               str(rate), "--format", "raw", "--output", str(folded)]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as spy:
        time.sleep(0.5)  # attached
        started = time.process_time(), time.perf_counter()
        run()
        cpu, wall = time.process_time() - started[0], time.perf_counter() - started[1]
        spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
        _, errors = spy.communicate(timeout=60)
    if not folded.is_file():
        raise SystemExit(f"py-spy failed ({spy.returncode}): {errors.decode().strip()}")
    with folded.open() as lines:
        table = summarize(lines).table()
    (out / f"{name}-threads.txt").write_text(
        f"{log_path.name}: read and train{' with evaluation' if evaluate else ''}, "
        f"{wall:.2f} s, {cpu:.2f} CPU-s, every Python thread sampled at {rate} Hz (implicit's "
        f"OpenMP threads are not Python threads: their sweeps show in the thread that waits on "
        f"them)\n\n{table}\n"
    )
    return tree


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="py-spy on the API under load")
    serve.add_argument("--case", default=DEFAULT_CASE, help=f"a case of the HTTP benchmark "
                       f"({DEFAULT_CASE!r})")  # fmt: skip
    serve.add_argument("--store", choices=("redis", "memory"), default="redis")
    serve.add_argument("--seconds", type=int, default=10, help="sampled seconds (10)")
    serve.add_argument("--rate", type=int, default=1000, help="samples per second (1000)")
    serve.add_argument("--models", type=Path, help="a models directory (default: train one)")
    train = commands.add_parser("train", help="pyinstrument on a training run")
    train.add_argument("--log", type=Path, default=ONLINE_RETAIL)
    train.add_argument("--format", default="online-retail", help="the log's reader preset")
    train.add_argument("--evaluate", action="store_true", help="with the hold-out evaluation")
    train.add_argument("--rate", type=int, default=250, help="py-spy's samples per second (250)")
    for command in (serve, train):
        command.add_argument("--out", type=Path, default=OUT, help=f"output folder ({OUT})")
    args = parser.parse_args(argv)
    if args.command == "serve":
        written = profile_serve(args.case, args.store, args.seconds, args.rate, args.models,
                                args.out)  # fmt: skip
    else:
        written = profile_train(args.log, args.format, args.evaluate, args.rate, args.out)
    print(written.read_text())
    print(f"written: {written} (and beside it)", file=sys.stderr)


if __name__ == "__main__":
    main()
