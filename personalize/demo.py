"""``personalize demo``: train on whatever log is at hand and serve it, in one command.

The log is, in order: ``--log``; the shared Online Retail file beside the checkout; a generated
shop. Profiles live in the embedded in-memory store unless ``--redis-url`` is given, so the demo
needs no Redis and no network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from api.cli import serve
from engine.model import load_model
from training.evaluate import format_table
from training.logs import PRESETS, PurchaseLog, read_purchase_log
from training.params import ModelParams
from training.pipeline import train_model
from training.synthetic import ShopSpec, generate_shop, write_log

SHARED_RETAIL = Path("shared/data/online-retail/online_retail.csv.gz")


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="train on a log (or a generated shop) and serve it on localhost",
        description="Train the default model on --log, else on the shared Online Retail log "
        "when it is beside this checkout, else on a generated shop; print its evaluation; then "
        "serve the API with the embedded profile store and print URLs to try.",
    )
    demo.add_argument("--log", type=Path, help="purchase log to train on")
    demo.add_argument(
        "--format", default=None, choices=sorted(PRESETS), help="log preset (with --log)"
    )
    demo.add_argument("--models", type=Path, default=Path("models"), help="models directory")
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    demo.add_argument("--redis-url", help="use Redis for profiles instead of the embedded store")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    log = _log(args)
    print(log.report.format_table(), file=sys.stderr)
    result = train_model(
        log,
        ModelParams(),
        models_dir=args.models,
        say=lambda line: print(line, file=sys.stderr),
    )
    if result.evaluation is not None:
        print(format_table(result.evaluation, 10))
    model = load_model(result.path, verify=False)
    item = model.items.ids[int(model.trending_scores.argmax())]
    base = f"http://{args.host}:{args.port}"
    print(
        f"\nServing model {result.version}. Try:\n"
        f"  {base}/demo/                                  the demo storefront\n"
        f"  {base}/docs                                   the API, documented\n"
        f"  curl '{base}/v1/recommendations?visitor_id=v1&k=5&explain=true'\n"
        f"  curl -X POST {base}/v1/events -H 'content-type: application/json' \\\n"
        f'       -d \'{{"visitor_id": "v1", "item_id": "{item}", '
        f'"type": "click"}}\'\n'
        f"  curl '{base}/v1/recommendations?visitor_id=v1&k=5&explain=true'   (changed)\n"
        f"  curl '{base}/v1/segments'                       customer value segments\n",
        flush=True,
    )
    return serve(models_dir=args.models, host=args.host, port=args.port, redis_url=args.redis_url)


def _log(args: argparse.Namespace) -> PurchaseLog:
    if args.log is not None:
        return read_purchase_log(args.log, PRESETS[args.format or "generic"])
    for root in (Path.cwd(), Path.cwd().parent, Path(__file__).resolve().parents[2]):
        if (root / SHARED_RETAIL).is_file():
            print(f"training on {root / SHARED_RETAIL}", file=sys.stderr)
            return read_purchase_log(root / SHARED_RETAIL, PRESETS["online-retail"])
    generated = args.models.parent / "data" / "generated-shop.parquet"
    print(f"no purchase log at hand: training on a generated shop ({generated})", file=sys.stderr)
    write_log(generate_shop(ShopSpec()), generated)
    return read_purchase_log(generated, PRESETS["generic"])
