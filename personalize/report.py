"""``personalize report``: one self-contained HTML page about a trained model.

For people who do not read manifests: quality against the baselines (if the model was
evaluated), the customer value segments, the 80/20 curves, the strongest basket pairs, catalog
coverage and the latest benchmark figures. Plots are inline SVG and the page loads nothing from
anywhere, so it can be mailed or archived as one file.
"""

from __future__ import annotations

import argparse
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.model import Model, load_model
from training.crm.pairs import bought_together, top_pairs
from training.crm.segments import SEGMENTS

BENCHMARK_RESULTS = Path("benchmarks/results/results.json")
TOP_PAIRS = 10
MAX_CASES = 30  # rows per benchmark table: the report is a summary, results.json has them all
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #1d232a;
       padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #d5dae0; padding: 0.25rem 0.6rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f5f7; }
.note { color: #4d5763; }
svg { max-width: 100%; height: auto; }
.wide { overflow-x: auto; }
"""


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report",
        help="write one self-contained HTML report about a model",
        description="Quality against the baselines, segments, 80/20 curves, top bought-together "
        "pairs, catalog coverage and the latest benchmark figures, as one HTML file with "
        "inline plots (needs matplotlib: pip install 'personalize[bench]').",
    )
    report.add_argument("--models", type=Path, default=Path("models"), help="models directory")
    report.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file")
    report.add_argument(
        "--benchmarks",
        type=Path,
        default=BENCHMARK_RESULTS,
        help=f"benchmark results to include when present (default {BENCHMARK_RESULTS})",
    )
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    model = load_model(args.models)
    results = None
    if args.benchmarks.is_file():
        results = json.loads(args.benchmarks.read_text())
    args.out.write_text(render(model, results))
    print(f"wrote {args.out}")
    return 0


def render(model: Model, benchmarks: Mapping[str, Any] | None) -> str:
    """The whole page; ``benchmarks`` is the dict ``python -m benchmarks`` writes, if any."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ValueError(
            "the report's plots need matplotlib: pip install 'personalize[bench]'"
        ) from exc
    matplotlib.use("Agg")  # files only: no display needed
    manifest = model.manifest
    evaluation = manifest.get("evaluation")
    parts = [
        _summary(model),
        _quality(evaluation),
        _segments(manifest.get("segments")),
        _rfm_map(model),
        _pareto(model, manifest.get("segments")),
        _pairs(model),
        _coverage(evaluation),
        _benchmarks(benchmarks),
    ]
    title = f"Model {model.version}"
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>\n"
        f"<h1>{_e(title)}</h1>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


# --- sections -----------------------------------------------------------------------------------


def _summary(model: Model) -> str:
    manifest = model.manifest
    data = manifest.get("input", {})
    rows = [
        ["created", str(manifest.get("created", ""))],
        ["trained up to", str(manifest.get("as_of_iso", ""))],
        ["log lines read / kept", f"{data.get('rows_read', 0):,} / {data.get('rows_kept', 0):,}"],
        ["customers x items", f"{len(model.users):,} x {len(model.items):,}"],
        ["baskets", f"{model.baskets:,}"],
    ]
    return "<h2>The model</h2>\n" + _table(["", ""], rows, header=False)


def _quality(evaluation: Mapping[str, Any] | None) -> str:
    head = "<h2>Quality against the baselines</h2>\n"
    if not evaluation:
        return head + _note("This model was trained without an evaluation (--no-evaluate).")
    arms = {"model": evaluation["model"], **evaluation["baselines"]}
    metrics = [m for m in evaluation["model"] if not m.startswith("users")]  # counts, not scores
    table = _table(
        ["metric", *arms], [[m, *(_num(arms[a].get(m), 4) for a in arms)] for m in metrics]
    )
    plotted = [m for m in metrics if m.startswith(("ndcg", "hit_rate"))]
    fig, ax = _figure(8, 3.2)
    width = 0.8 / len(arms)
    for i, (arm, values) in enumerate(arms.items()):
        xs = np.arange(len(plotted)) + i * width
        ax.bar(xs, [values.get(m, 0.0) for m in plotted], width, label=arm)
    ax.set_xticks(np.arange(len(plotted)) + 0.4 - width / 2, plotted)
    ax.legend(fontsize=8, ncols=len(arms))
    ax.set_ylabel("on the hold-out")
    split = evaluation.get("split", {})
    note = _note(
        f"Last {evaluation.get('holdout_days', '?')} days held out; "
        f"{split.get('test_users', 0):,} test customers. "
        "“_new”: scored on items the customer had never bought."
    )
    return head + note + _svg(fig) + table


def _segments(report: Mapping[str, Any] | None) -> str:
    head = "<h2>Customer value segments (RFM)</h2>\n"
    if not report:
        return head + _note("No segments stored with this model.")
    segments = report["segments"]
    names = [n for n in SEGMENTS if n in segments] + sorted(set(segments) - set(SEGMENTS))
    fig, ax = _figure(8, 0.3 * len(names) + 1)
    ax.barh(names[::-1], [segments[n]["customers"] for n in names[::-1]], color="#0b5cad")
    ax.set_xlabel("customers")
    rows = [
        [
            n,
            f"{segments[n]['customers']:,}",
            f"{segments[n]['revenue']:,.0f}",
            f"{segments[n]['revenue_share']:.1%}",
            f"{segments[n]['win_back']:,}",
        ]
        for n in names
    ]
    table = _table(["segment", "customers", report.get("monetary", "revenue"), "share",
                    "win-back"], rows)  # fmt: skip
    return head + _svg(fig) + table


def rfm_grid(model: Model) -> tuple[np.ndarray, list[list[str]]]:
    """The RFM segment map: customers per (frequency, recency) score cell, 5 x 5 (row F - 1,
    column R - 1), and each cell's most common segment ('' for an empty cell)."""
    recency, frequency = model.rfm[:, 0].astype(np.int64), model.rfm[:, 1].astype(np.int64)
    scored = (recency >= 1) & (frequency >= 1)
    rows, columns, segments = frequency[scored] - 1, recency[scored] - 1, model.segments[scored]
    counts = np.zeros((5, 5), dtype=np.int64)
    np.add.at(counts, (rows, columns), 1)
    names = [[""] * 5 for _ in range(5)]
    for row, column in zip(*np.nonzero(counts), strict=True):
        values, n = np.unique(segments[(rows == row) & (columns == column)], return_counts=True)
        names[row][column] = str(values[np.argmax(n)])
    return counts, names


def _rfm_map(model: Model) -> str:
    counts, names = rfm_grid(model)
    if not counts.sum():
        return ""
    fig, ax = _figure(8, 6)
    ax.imshow(counts, origin="lower", cmap="Blues")
    for row in range(5):
        for column in range(5):
            if counts[row, column]:
                dark = counts[row, column] > counts.max() / 2
                ax.text(column, row, f"{names[row][column]}\n{counts[row, column]:,}",
                        ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")  # fmt: skip
    ax.set_xticks(range(5), [str(score) for score in range(1, 6)])
    ax.set_yticks(range(5), [str(score) for score in range(1, 6)])
    ax.set_xlabel("recency score (5: bought most recently)")
    ax.set_ylabel("frequency score (5: most baskets)")
    note = _note(
        "Customers per recency and frequency score, each cell named by its most common "
        "segment (the monetary score, the third, is not drawn)."
    )
    return "<h3>Segment map</h3>\n" + note + _svg(fig)


def _pareto(model: Model, segments: Mapping[str, Any] | None) -> str:
    """Lorenz-style curves: what share of purchases the top x % of customers and items hold."""
    customers = np.asarray(model.scorer.history.counts.sum(axis=1)).ravel()
    items = np.asarray(model.scorer.popularity, dtype=np.float64)
    fig, ax = _figure(6, 3.6)
    lines = []
    for label, values in (("customers (purchase lines)", customers), ("items (sales)", items)):
        xs, ys = _lorenz(values)
        ax.plot(xs, ys, label=label)
        lines.append(f"the top 20 % of {label.split()[0]} hold {np.interp(0.2, xs, ys):.1%}")
    ax.axvline(0.2, color="#888", linewidth=0.8, linestyle="--")
    ax.set_xlabel("share of customers / items, largest first")
    ax.set_ylabel("cumulative share")
    ax.legend(fontsize=8)
    text = "; ".join(lines)
    if segments and "top20_share" in segments:
        text += f"; the top 20 % of customers bring {segments['top20_share']:.1%} of the revenue"
    return "<h2>The 80/20 view</h2>\n" + _note(text[0].upper() + text[1:] + ".") + _svg(fig)


def _pairs(model: Model) -> str:
    table = top_pairs(bought_together(model), TOP_PAIRS).to_pylist()
    rows = [
        [
            r["item_description"] or r["item"],
            r["partner_description"] or r["partner"],
            f"{r['support']:,}",
            _num(r["confidence"], 2),
            _num(r["lift"], 1),
        ]
        for r in table
    ]
    head = f"<h2>Top {TOP_PAIRS} bought-together pairs</h2>\n"
    if not rows:
        return head + _note("No basket pairs were kept (see train --min-support).")
    return head + _table(["item", "partner", "baskets", "confidence", "lift"], rows)


def _coverage(evaluation: Mapping[str, Any] | None) -> str:
    head = "<h2>Catalog coverage</h2>\n"
    if not evaluation:
        return head + _note("Not measured: the model was trained without an evaluation.")
    arms = {"model": evaluation["model"], **evaluation["baselines"]}
    key = next((m for m in evaluation["model"] if m.startswith("coverage@")), None)
    if key is None:
        return head + _note("The stored evaluation has no coverage figure.")
    fig, ax = _figure(6, 2.8)
    ax.bar(list(arms), [arms[a].get(key, 0.0) for a in arms], color="#0b5cad")
    ax.set_ylabel(f"{key}: share of items shown")
    note = _note(
        f"Share of the catalog that appears in at least one test customer's top "
        f"{key.split('@')[1]}: the model {arms['model'][key]:.1%}."
    )
    return head + note + _svg(fig)


def _benchmarks(results: Mapping[str, Any] | None) -> str:
    head = "<h2>Latest benchmark figures</h2>\n"
    if not results:
        return head + _note("No benchmark results found (python -m benchmarks writes them).")
    mode = "quick" if results.get("quick") else "full"
    parts = [head, _note(f"A {mode} run started {results.get('started', '?')}.")]
    for name, section in results.get("sections", {}).items():
        cases = section.get("cases") if isinstance(section, dict) else None
        if isinstance(section, dict) and "error" in section:
            parts.append(f"<h3>{_e(name)}</h3>\n" + _note(f"failed: {section['error']}"))
        elif isinstance(cases, list) and cases and all(isinstance(c, dict) for c in cases):
            columns = list(dict.fromkeys(k for c in cases for k, v in c.items() if _scalar(v)))
            rows = [[_cell(c.get(k)) for k in columns] for c in cases[:MAX_CASES]]
            parts.append(f"<h3>{_e(name)}</h3>\n" + _table(columns, rows))
    return "\n".join(parts)


# --- helpers ------------------------------------------------------------------------------------


def _lorenz(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ordered = np.sort(values)[::-1]
    total = ordered.sum()
    shares = np.cumsum(ordered) / total if total > 0 else np.zeros(len(ordered))
    xs = np.arange(1, len(ordered) + 1) / max(len(ordered), 1)
    return np.concatenate([[0.0], xs]), np.concatenate([[0.0], shares])


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _svg(fig: Any) -> str:
    """The figure as inline SVG (text drawn as paths: no font is needed to show it)."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :] + "\n"


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, header: bool = True) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in columns) + "</tr>" if header else ""
    body = "".join(
        "<tr>" + "".join(f"<td{_class(v)}>{_e(v)}</td>" for v in row) + "</tr>" for row in rows
    )
    return f'<div class="wide"><table>{head}{body}</table></div>\n'


def _class(value: str) -> str:
    return ' class="n"' if value[:1].isdigit() or value[:1] in "-+" else ""


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>\n'


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def _e(text: str) -> str:
    return html.escape(str(text))
