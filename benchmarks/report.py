"""The suite's Markdown report and PNG plots, from the one results dict ``python -m benchmarks``
writes; every figure in the report is read from that dict, so the two cannot disagree.

A section that is missing or failed is reported as such, never left out silently.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt

Table = list[list[str]]


def write(results: dict[str, Any], out: Path) -> None:
    """``out/report.md`` and one PNG per plotted section."""
    sections = results["sections"]
    parts = [_header(results), _targets(sections)]
    for name, render in RENDERERS.items():
        if name not in sections:
            continue
        data = sections[name]
        parts.append(f"## {name}\n")
        if "started" in data:  # each its own: after --only, sections come from different runs
            parts.append(f"Started {data['started']}, {data.get('seconds', 0):.0f} s.\n")
        if "error" in data:
            parts.append(f"**failed**: `{data['error']}`\n")
            continue
        parts.append(render(data, out))
    (out / "report.md").write_text("\n".join(parts))


def _md(header: list[str], rows: Table) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _header(results: dict[str, Any]) -> str:
    m = results["machine"]
    mode = "quick" if results["quick"] else "full"
    return (
        f"# Benchmark report ({mode} run, {results['started']})\n\n"
        f"Machine: {m['node']}, {m['cpus']} cpus ({m['processor']}"
        f"{', ' + m['cpu'] if m.get('cpu') else ''}), Python {m['python']}, "
        f"BLAS {', '.join(m['blas']) or 'unknown'}. Client and server share the cores; compare "
        "the ratios against the floors measured in the same run.\n"
    )


# --- targets ------------------------------------------------------------------------------------


def _targets(sections: dict[str, Any]) -> str:
    rows: Table = []

    def add(
        target: str, measured: float | None, ok: Callable[[float], bool], fmt: str, where: str = ""
    ) -> None:
        """``where``: the case a worst case was measured on."""
        if measured is None:
            rows.append([target, "not measured", "-"])
        else:
            text = fmt.format(measured) + (f" ({where})" if where else "")
            rows.append([target, text, "met" if ok(measured) else "**missed**"])

    # Every case served, 1 and 2 workers and both catalogs: the targets name no subset.
    http = [r for r in sections.get("http", {}).get("cases", []) if "throughput_vs_floor" in r]
    recs = [r for r in http if r["method"] == "GET"]
    clicks = [r for r in http if r["method"] == "POST"]
    ratio, where = _worst(recs, lambda r: r["throughput_vs_floor"], lowest=True)
    add("recommendations >= 60 % of the floor's throughput (worst case)",
        ratio, lambda v: v >= 0.6, "{:.0%}", where)  # fmt: skip
    # Latency at a fixed traffic (open loop), the same for the floor and the engine; at
    # saturation (below) p99 is mostly the queue of the requests in flight.
    rate = sections.get("http", {}).get("load", {}).get("rate")
    at = f" at {rate:.0f} req/s" if rate else ""
    at += ", median of 5 rounds" if any("floor_same_rounds" in r for r in http) else ""
    over, where = _worst(recs, _paced_over)
    add(f"recommendation p99{at} <= floor p99 + 3 ms (worst case)",
        over, lambda v: v <= 3, "{:+.1f} ms", where)  # fmt: skip
    over, where = _worst(clicks, _paced_over)
    add(f"click p99{at} <= floor p99 + 1 ms (worst case)",
        over, lambda v: v <= 1, "{:+.1f} ms", where)  # fmt: skip
    over, where = _worst(recs, lambda r: r["p99_minus_floor_ms"])
    add("recommendation p99 at saturation, 8 in flight (worst case; for reference)",
        over, lambda v: v <= 3, "{:+.1f} ms", where)  # fmt: skip
    over, where = _worst(clicks, lambda r: r["p99_minus_floor_ms"])
    add("click p99 at saturation, 8 in flight (for reference)",
        over, lambda v: v <= 1, "{:+.1f} ms", where)  # fmt: skip
    ingest = sections.get("ingestion", {}).get("cases", [])
    add("batch ingest >= 30k events/s (store level)",
        max((c["events_per_s"] for c in ingest if c["batch"] > 1), default=None),
        lambda v: v >= 30_000, "{:,.0f} events/s")  # fmt: skip
    trained = sections.get("training", {}).get("cases", {"online-retail": {}})
    for case, measured in trained.items():  # each log its own row: they tell different things
        add(
            f"training <= 1.3x the direct path (read + fit, {case})",
            measured.get("ratios", {}).get("read+train / read_direct+fit_direct"),
            lambda v: v <= 1.3,
            "{:.2f}x",
        )
    rates = sections.get("email_batch", {}).get("synthetic", {}).get("customers_per_second", {})
    add("e-mail batch >= 2,000 customers/s at 100k items, exact",
        rates.get("exact top-10, masks"), lambda v: v >= 2000, "{:,.0f}/s")  # fmt: skip
    per_visitor = sections.get("memory", {}).get("redis", {}).get("per_visitor", {})
    add(
        "Redis <= 1 KiB per active visitor (mean)",
        per_visitor.get("bytes_per_visitor", {}).get("mean"),
        lambda v: v <= 1024,
        "{:,.0f} B",
    )
    return "## Targets\n\n" + _md(["target", "measured", ""], rows)


def _worst(
    rows: list[dict[str, Any]],
    figure: Callable[[dict[str, Any]], float | None],
    *,
    lowest: bool = False,
) -> tuple[float | None, str]:
    """The worst ``figure`` of ``rows`` (the largest; with ``lowest``, the smallest) and the
    case it was measured on; (None, "") if no row has the figure."""
    measured = [(value, row) for row in rows if (value := figure(row)) is not None]
    if not measured:
        return None, ""
    value, row = (min if lowest else max)(measured, key=lambda pair: pair[0])
    workers = f"{row['workers']} worker{'s' if row['workers'] != 1 else ''}"
    return value, f"{row['server']}, {workers}: {row['case']}"  # servers name their catalog


def _paced_over(row: dict[str, Any]) -> float | None:
    """A row's open-loop p99 difference to the floor, or None if it has none: of the median
    round's p99 where the run took turns with its floor (a single host stall does not decide
    it), else of the whole run's p99."""
    paced = row.get("paced", {})
    if "p99_minus_floor_ms" not in paced:
        return None
    return float(paced.get("median_part_p99_minus_floor_ms", paced["p99_minus_floor_ms"]))


# --- sections -----------------------------------------------------------------------------------


def _quality(data: dict[str, Any], out: Path) -> str:
    text = []
    shown = {n: d for n, d in data["datasets"].items() if "metrics" in d}
    for name, d in data["datasets"].items():
        if name not in shown:
            text.append(f"{name}: skipped ({d.get('skipped')})\n")
            continue
        arms = list(d["metrics"])
        metrics = list(next(iter(d["metrics"].values())))
        rows = [[m, *(f"{d['metrics'][a][m]:.4f}" for a in arms)] for m in metrics]
        text.append(f"**{name}** ({d['users']:,} users, {d['items']:,} items, "
                    f"{d['holdout_days']}-day hold-out)\n")  # fmt: skip
        text.append(_md(["metric", *arms], rows))
    if shown:
        fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 3.5), squeeze=False)
        for ax, (name, d) in zip(axes[0], shown.items(), strict=True):
            arms = list(d["metrics"])
            for offset, metric in ((-0.2, "ndcg@10"), (0.2, "ndcg@10_new")):
                values = [d["metrics"][a][metric] for a in arms]
                ax.bar([i + offset for i in range(len(arms))], values, 0.4, label=metric)
            ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right")
            ax.set_title(name)
        axes[0][0].legend()
        _save(fig, out / "quality.png")
        text.append("![quality](quality.png)\n")
    return "\n".join(text)


def _training(data: dict[str, Any], out: Path) -> str:
    rows: Table = []
    points = []
    for name, case in data["cases"].items():
        steps = case.get("steps", {})
        if "error" in case or any("error" in step for step in steps.values()):
            rows.append([name, "failed or timed out", "", "", "", "", "", "", "", ""])
            continue
        direct, train = steps["direct"], steps["train"]
        direct_s = direct["seconds"]["read_direct"] + direct["seconds"]["fit_direct"]
        train_s = train["seconds"]["read"] + train["seconds"]["train"]
        evaluated = steps["evaluated"]["seconds"]
        ratios = case["ratios"]
        rows.append([name, f"{case['rows']:,}", f"{direct_s:.2f}", f"{train_s:.2f}",
                     f"{ratios['read+train / read_direct+fit_direct']:.2f}x",
                     f"{ratios['cpu read+train / cpu direct']:.2f}x",
                     f"{evaluated['evaluate']:.1f}", f"{evaluated['total']:.1f}",
                     f"{direct['peak_rss_mb']:,.0f}", f"{train['peak_rss_mb']:,.0f}"])  # fmt: skip
        points.append((case["rows"], direct_s, train_s, evaluated["total"]))
    header = ["case", "rows", "direct s", "read+train s", "ratio", "CPU ratio",
              "evaluate s", "with evaluation s", "direct MB", "train MB"]  # fmt: skip
    text = _md(header, rows)
    text += (
        "\ndirect: a pyarrow read and one implicit ALS fit of the same matrix; read+train: the "
        "trainer's read (parse, clean, report) and everything `personalize train --no-evaluate` "
        "fits and writes (seconds: medians of the rounds); ratio: the median over rounds of "
        "read+train against the direct run just before it; CPU ratio: the same in CPU seconds "
        "of all threads; evaluate: the "
        "hold-out evaluation (model and four baselines fitted and scored), which `personalize "
        "train` runs first unless told not to; with evaluation: all of `personalize train`, "
        "read, evaluation and a fit that reuses the hold-out's (one run)\n"
    )
    if len(points) > 1:
        points.sort()
        fig, ax = plt.subplots(figsize=(6, 4))
        series = ("direct", "read + train", "personalize train (with evaluation)")
        for column, label in enumerate(series, start=1):
            ax.plot([p[0] for p in points], [p[column] for p in points], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("log rows")
        ax.set_ylabel("seconds")
        ax.legend()
        _save(fig, out / "training_scaling.png")
        text += "\n![training scaling](training_scaling.png)\n"
    return text


def _compute(data: dict[str, Any], out: Path) -> str:
    rows = [[name, f"{c['p50_ms']:.3f}", f"{c['p99_ms']:.3f}"] for name, c in data["cases"].items()]
    text = f"{data['items']:,} items, one thread\n\n" + _md(["case", "p50 ms", "p99 ms"], rows)
    catalogs = {"candidates": "A generated shop",
                "candidates_taobao": "The Taobao click log taken as purchases"}  # fmt: skip
    for key, catalog in catalogs.items():
        large = data.get(key)
        if not large:
            continue
        text += (
            f"\n{catalog}, {large['items']:,} items, one thread: every item ranked "
            f"(exact) and the candidate lists' ({large['lists']} lists, {large['probed']} "
            f"probed per vector, made by the trainer in {large['index_build_s']:.1f} s); "
            f"{large['visitors']} visitors of each kind taking turns; overlap: the share of the "
            "exact top 10 in the candidates' top 10; counting ties: of the candidates' top 10, "
            "the items scoring (exactly) at least the exact 10th's\n\n"
        )
        rows = [[name, f"{c['exact']['p50_ms']:.3f}", f"{c['exact']['p99_ms']:.3f}",
                 f"{c['candidates']['p50_ms']:.3f}", f"{c['candidates']['p99_ms']:.3f}",
                 f"{c['top10_overlap']:.3f}",
                 f"{c['top10_overlap_ties']:.3f}" if "top10_overlap_ties" in c else ""]
                for name, c in large["cases"].items()]  # fmt: skip
        text += _md(["case", "exact p50 ms", "exact p99 ms", "candidates p50 ms",
                     "candidates p99 ms", "top-10 overlap", "counting ties"], rows)  # fmt: skip
    return text


def _http(data: dict[str, Any], out: Path) -> str:
    cases = data["cases"]
    rows = [[c["server"], str(c["workers"]), c["case"], f"{c['throughput_rps']:,.0f}",
             f"{c['p50_ms']:.2f}", f"{c['p90_ms']:.2f}", f"{c['p99_ms']:.2f}", str(c["errors"]),
             f"{c['floor_same_rounds']['throughput_rps']:,.0f}" if "floor_same_rounds" in c else "",
             f"{c['throughput_vs_floor']:.2f}" if "throughput_vs_floor" in c else "",
             f"{c['server_cpu_us']:,.0f}" if "server_cpu_us" in c else "",
             f"{c['server_cpu_vs_floor']:.2f}" if "server_cpu_vs_floor" in c else "",
             f"{c['paced']['p50_ms']:.2f}" if "paced" in c else "",
             f"{c['paced']['p90_ms']:.2f}" if "paced" in c else "",
             f"{c['paced']['p99_ms']:.2f}" if "paced" in c else "",
             f"{c['paced']['p99_ms_median_part']:.2f}"
             if "p99_ms_median_part" in c.get("paced", {}) else ""]
            for c in cases]  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(cases) + 1))
    labels = [f"{c['server']} w{c['workers']}: {c['case']}" for c in cases]
    ax.barh(labels, [c["p99_ms"] for c in cases], label="p99", color="#c44")
    ax.barh(labels, [c["p90_ms"] for c in cases], label="p90", color="#e96")
    ax.barh(labels, [c["p50_ms"] for c in cases], label="p50", color="#48c")
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    ax.legend()
    _save(fig, out / "http_latency.png")
    rate = data.get("load", {}).get("rate", 0)
    header = ["server", "workers", "case", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors",
              "floor req/s, same rounds", "x floor", "server CPU µs/request", "CPU x floor",
              f"p50 ms at {rate:.0f}/s", f"p90 ms at {rate:.0f}/s", f"p99 ms at {rate:.0f}/s",
              f"p99 ms at {rate:.0f}/s, median round"]  # fmt: skip
    return _md(header, rows) + "\n![HTTP latency](http_latency.png)\n"


def _reload(data: dict[str, Any], out: Path) -> str:
    arms = data["arms"]
    every, reloads = data["reload_every_seconds"], len(arms["reloading"]["reload_seconds"])
    head = (f"Known customers' recommendations at {data['rate_rps']:,.0f} req/s (open loop), 1 "
            f"worker, {data['rounds']} rounds of {data['seconds_per_round']:g} s per arm taking "
            f"turns; reloading: a forced reload (load, verify, swap) every {every:g} s, "
            f"{reloads} in all\n\n")  # fmt: skip
    rows = [[arm, f"{a['requests']:,}", f"{a['p50_ms']:.2f}", f"{a['p99_ms']:.2f}",
             f"{a['p999_ms']:.2f}", f"{a['max_ms']:.1f}", str(a["errors"])]
            for arm, a in arms.items()]  # fmt: skip
    return head + _md(["arm", "requests", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors"], rows)


def _email(data: dict[str, Any], out: Path) -> str:
    retail = data["online_retail"]
    synth = data["synthetic"]
    rows = [[f"Online Retail ({retail['customers']:,} customers): {k}", f"{v:.3f} s"]
            for k, v in retail["seconds"].items()]  # fmt: skip
    rows += [[f"{synth['items']:,} items: {k}", f"{v:,.0f} customers/s"]
             for k, v in synth["customers_per_second"].items()]  # fmt: skip
    return _md(["case", "measured"], rows)


def _replay(data: dict[str, Any], out: Path) -> str:
    metrics = data["metrics"]
    rows = [[m["subset"], m["arm"], str(m["events"]), f"{m['hit_rate@10']:.4f}",
             f"{m['mrr@10']:.4f}"] for m in metrics]  # fmt: skip
    subsets = list(dict.fromkeys(m["subset"] for m in metrics))
    arms = list(dict.fromkeys(m["arm"] for m in metrics))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(arms)
    for j, arm in enumerate(arms):
        values = [next(m["hit_rate@10"] for m in metrics if m["subset"] == s and m["arm"] == arm)
                  for s in subsets]  # fmt: skip
        ax.bar([i + j * width for i in range(len(subsets))], values, width, label=arm)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(subsets))], subsets)
    ax.set_ylabel("hit@10")
    ax.legend()
    _save(fig, out / "replay.png")
    head = (f"{data['events_replayed']:,} Taobao events of {data['users_replayed']} users "
            f"replayed through the API in time order\n\n")  # fmt: skip
    return (
        head + _md(["events", "arm", "n", "hit@10", "MRR@10"], rows) + "\n![replay](replay.png)\n"
    )


def _ingestion(data: dict[str, Any], out: Path) -> str:
    rows = [[c["level"], str(c["batch"]), f"{c['events_per_s']:,.0f}", f"{c['p50_ms']:.2f}",
             f"{c['p99_ms']:.2f}", f"{c['vs_floor']:.2f}" if c.get("vs_floor") else ""]
            for c in data["cases"]]  # fmt: skip
    floors = [[batch, f"{f['clicks_per_s']:,.0f}"] for batch, f in data.get("floor", {}).items()]
    return (_md(["level", "batch", "events/s", "p50 ms", "p99 ms", "x floor"], rows) + "\n"
            + _md(["redis-benchmark floor, batch", "clicks/s"], floors))  # fmt: skip


def _memory(data: dict[str, Any], out: Path) -> str:
    text = []
    per_visitor = data.get("redis", {}).get("per_visitor")
    if per_visitor:
        b = per_visitor["bytes_per_visitor"]
        text.append(f"Redis bytes per visitor over {per_visitor['visitors']:,} replayed visitors: "
                    f"mean {b['mean']:,.0f}, p50 {b['p50']:,.0f}, p99 {b['p99']:,.0f}, "
                    f"max {b['max']:,.0f}\n")  # fmt: skip
    rows = []
    for model, info in data.get("workers", {}).items():
        for worker in info.get("workers", []):
            rollup = worker["smaps_rollup"]
            rows.append([model, str(worker["pid"]), _mib(rollup["Rss"]), _mib(rollup["Pss"]),
                         _mib(rollup["Anonymous"])])  # fmt: skip
    if rows:
        text.append(_md(["model", "worker", "RSS MiB", "PSS MiB", "private anon MiB"], rows))
    return "\n".join(text)


RENDERERS: dict[str, Callable[[dict[str, Any], Path], str]] = {
    "quality": _quality,
    "training": _training,
    "compute": _compute,
    "http": _http,
    "reload": _reload,
    "email_batch": _email,
    "replay": _replay,
    "ingestion": _ingestion,
    "memory": _memory,
}


def _mib(value: int) -> str:
    return f"{value / 2**20:.1f}"


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
