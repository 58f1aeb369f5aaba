"""personalize.js's delivery rules under Node, with a scripted fetch: what a browser cannot be
made to meet on demand (a 503 with Retry-After, a refused event, a full queue)."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from api.browser import DEMO_DIR

NODE = shutil.which("node")

# Each scenario gets a client whose fetch answers from `answers` in turn and whose timers are
# recorded, not run; the script prints what the scenarios observed as one JSON object.
HARNESS = """
const { Personalize } = await import(process.argv[1]);
const memory = () => { const m = new Map(); return { getItem: (k) => m.get(k) ?? null,
  setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) }; };
const delays = [];
globalThis.setTimeout = (fn, ms) => { delays.push(ms); return delays.length; };
globalThis.clearTimeout = () => {};
function scripted(answers) {
  const sent = [];
  globalThis.fetch = async (url, init) => {
    sent.push({ url, body: JSON.parse(init.body), keepalive: init.keepalive,
                headers: init.headers });
    const next = answers.shift();
    if (next === "down") throw new TypeError("network error");
    return new Response(JSON.stringify({ detail: "x" }), { status: next.status,
      headers: next.retryAfter ? { "Retry-After": String(next.retryAfter) } : {} });
  };
  return sent;
}
const out = {};

// A 503 with Retry-After: queued, retried after the server's delay, then delivered once.
let sent = scripted([{ status: 503, retryAfter: 2 }, { status: 202 }]);
let c = new Personalize({ storage: memory(), endpoint: "http://api/" });
out.outcome503 = await c.track({ type: "click", item_id: "sku1" });
out.delay503 = delays.at(-1);
out.queued503 = c.queue().length;
out.left = await c.flush();
out.sameId = sent[0].body.event_id === sent[1].body[0].event_id;
out.firstRequest = sent[0];

// Network errors: exponential backoff (with jitter: between half and all of the delay).
delays.length = 0;
sent = scripted(["down", "down", "down"]);
c = new Personalize({ storage: memory(), baseDelayMs: 1000 });
await c.track({ type: "view", item_id: "a" });
c.timer = null; await c.flush();
c.timer = null; await c.flush();
out.backoff = [...delays];

// A refused event (422) is not queued: it would be refused again.
sent = scripted([{ status: 422 }]);
c = new Personalize({ storage: memory() });
try { await c.track({ type: "nope", item_id: "a" }); out.refused = "resolved"; }
catch (e) { out.refused = e.status; }
out.queuedAfterRefusal = c.queue().length;

// The queue is bounded: the oldest events are dropped.
sent = scripted(Array(5).fill("down"));
c = new Personalize({ storage: memory(), maxQueue: 3 });
for (const item of ["a", "b", "c", "d", "e"]) await c.track({ type: "view", item_id: item });
out.kept = c.queue().map((e) => e.item_id);

// The visitor id persists in the storage, and an API key travels as a header.
const storage = memory();
const first = new Personalize({ storage }).visitorId;
out.sameVisitor = new Personalize({ storage }).visitorId === first;
out.visitor = first;
sent = scripted([{ status: 202 }]);
await new Personalize({ storage, apiKey: "k1" }).track({ type: "view", item_id: "a" });
out.keyHeader = sent[0].headers["X-API-Key"];
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def observed() -> dict[str, Any]:
    if NODE is None:
        pytest.skip("node not found (apt-get install nodejs): personalize.js not run under Node")
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", HARNESS, (DEMO_DIR / "personalize.js").as_uri()],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_503_queues_the_event_and_retries_it_after_retry_after(observed: dict[str, Any]) -> None:
    assert observed["outcome503"] == "queued" and observed["queued503"] == 1
    assert observed["delay503"] == 2000
    assert observed["left"] == 0
    assert observed["sameId"]  # the retry carries the id made at track(): idempotent
    first = observed["firstRequest"]
    assert first["url"] == "http://api/v1/events" and first["keepalive"] is True
    assert set(first["body"]) == {"event_id", "visitor_id", "timestamp", "type", "item_id"}


def test_network_errors_back_off_exponentially(observed: dict[str, Any]) -> None:
    first, second, third = observed["backoff"]
    assert 500 <= first <= 1000 and 1000 <= second <= 2000 and 2000 <= third <= 4000


def test_a_refused_event_is_not_retried(observed: dict[str, Any]) -> None:
    assert observed["refused"] == 422 and observed["queuedAfterRefusal"] == 0


def test_the_queue_keeps_only_the_newest_events(observed: dict[str, Any]) -> None:
    assert observed["kept"] == ["c", "d", "e"]


def test_the_visitor_id_is_kept_and_the_key_is_sent_as_a_header(observed: dict[str, Any]) -> None:
    assert observed["sameVisitor"] and observed["visitor"].startswith("v-")
    assert observed["keyHeader"] == "k1"
