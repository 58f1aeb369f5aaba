// personalize.js: the browser client of the personalize API (a plain ES module, no build step).
//
//   import { Personalize } from "/demo/personalize.js";
//   const p13n = new Personalize({ endpoint: "https://api.example.com" });
//   const page = await p13n.recommendations({ k: 8, explain: true });
//   p13n.track({ type: "click", item_id: "22726" });
//
// The visitor is a random id kept in localStorage: the only thing it stores about a person,
// besides the ids of the events still waiting to be delivered.
//
// Delivery: every event gets its event_id here, so sending it twice is harmless (the API
// acknowledges a known id as a duplicate). track() posts with fetch({keepalive: true}), whose
// answer it can read: on a 503, a 429 or a network error the event goes to a bounded queue in
// localStorage, retried with exponential backoff (Retry-After honoured). When the page is being
// hidden or unloaded, fetch may be cut off, so the queue (and any event tracked then) goes out
// by navigator.sendBeacon as text/plain, the one JSON-carrying type a browser sends across
// origins without a preflight; the events stay queued until a later fetch confirms them, since
// a beacon never tells whether it was stored.

const EVENTS_PATH = "/v1/events";
const RETRYABLE = new Set([429, 502, 503, 504]);
const BATCH = 100; // events per request when flushing the queue

/** A random id of `bytes` random bytes, hex: used for visitor and event ids. */
export function randomId(bytes = 16) {
  const values = new Uint8Array(bytes);
  crypto.getRandomValues(values);
  return Array.from(values, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** localStorage when the browser lets us use it (private modes may throw), else memory. */
function defaultStorage() {
  try {
    const probe = "p13n.probe";
    localStorage.setItem(probe, "1");
    localStorage.removeItem(probe);
    return localStorage;
  } catch {
    const values = new Map();
    return {
      getItem: (key) => (values.has(key) ? values.get(key) : null),
      setItem: (key, value) => values.set(key, String(value)),
      removeItem: (key) => values.delete(key),
    };
  }
}

export class Personalize {
  /**
   * @param {object} [options]
   * @param {string} [options.endpoint] base URL of the API ("" = this page's origin)
   * @param {string} [options.apiKey] sent as X-API-Key (needed for writes when the API has keys;
   *   a key in a page is public: prefer a proxy of your own that adds it). With a key, events
   *   never go by beacon, which cannot carry headers.
   * @param {Storage} [options.storage] where the visitor id and the queue live
   * @param {number} [options.maxQueue] most events kept for retry (the oldest are dropped)
   * @param {number} [options.baseDelayMs] first retry delay, doubled per failed attempt
   * @param {number} [options.maxDelayMs] longest retry delay
   */
  constructor({
    endpoint = "",
    apiKey = null,
    storage = defaultStorage(),
    maxQueue = 200,
    baseDelayMs = 1000,
    maxDelayMs = 60000,
    prefix = "p13n.",
  } = {}) {
    this.endpoint = endpoint.replace(/\/$/, "");
    this.apiKey = apiKey;
    this.storage = storage;
    this.maxQueue = maxQueue;
    this.baseDelayMs = baseDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.visitorKey = `${prefix}visitor`;
    this.queueKey = `${prefix}queue`;
    this.attempts = 0;
    this.timer = null;
    if (typeof document !== "undefined") {
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "hidden") this.beaconQueue();
        else this.flush();
      });
      addEventListener("pagehide", () => this.beaconQueue());
    }
    if (this.queue().length) this.schedule(0);
  }

  /** The visitor's id, created on first use and kept across visits. */
  get visitorId() {
    let id = this.storage.getItem(this.visitorKey);
    if (!id) {
      id = `v-${randomId(12)}`;
      this.storage.setItem(this.visitorKey, id);
    }
    return id;
  }

  /** Start over as a new anonymous visitor (e.g. after logging out); returns the new id. */
  newVisitor() {
    this.storage.removeItem(this.visitorKey);
    return this.visitorId;
  }

  /**
   * Recommendations for this visitor: GET /v1/recommendations.
   * @param {object} [opts] any query parameter of the route (k, explain, context_item, ...);
   *   arrays become repeated parameters (pin, boost, include_category, ...).
   */
  recommendations(opts = {}) {
    return this.get("/v1/recommendations", { visitor_id: this.visitorId, ...opts });
  }

  /** What is trending now: GET /v1/trending. */
  trending(k = 10) {
    return this.get("/v1/trending", { k });
  }

  /** Items bought in the same baskets as `itemId`. */
  boughtTogether(itemId, k = 10) {
    return this.get(`/v1/items/${encodeURIComponent(itemId)}/bought-together`, { k });
  }

  /** This visitor's recently viewed items, newest first. */
  recent(k = 10) {
    return this.get(`/v1/visitors/${encodeURIComponent(this.visitorId)}/recent`, { k });
  }

  /** GET a route of the API as JSON; rejects with an Error carrying `status` if not 2xx. */
  async get(path, params = {}) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value === undefined || value === null) continue;
      for (const one of Array.isArray(value) ? value : [value]) query.append(name, String(one));
    }
    const response = await fetch(`${this.endpoint}${path}?${query}`, {
      headers: this.headers(),
    });
    if (!response.ok) throw await apiError(response);
    return response.json();
  }

  /**
   * Record what the visitor did: {type, item_id[, customer_id, timestamp]}. The visitor id, an
   * event id and the time are added here. Resolves to "stored", "queued" (will be retried) or
   * "sent" (by beacon, page hidden); rejects when the API refuses the event (4xx other than 429).
   */
  async track(event) {
    const full = {
      event_id: randomId(16),
      visitor_id: this.visitorId,
      timestamp: Date.now() / 1000,
      ...event,
    };
    if (this.mustBeacon()) {
      this.enqueue([full]);
      return navigator.sendBeacon(this.eventsUrl(), JSON.stringify(full)) ? "sent" : "queued";
    }
    let response;
    try {
      response = await this.post(full);
    } catch {
      this.enqueue([full]);
      this.schedule();
      return "queued";
    }
    if (response.ok) {
      this.flush(); // the API is up again: deliver what waited
      return "stored";
    }
    if (RETRYABLE.has(response.status)) {
      this.enqueue([full]);
      this.schedule(retryAfterMs(response));
      return "queued";
    }
    throw await apiError(response);
  }

  /** Events waiting for delivery, oldest first. */
  queue() {
    try {
      const events = JSON.parse(this.storage.getItem(this.queueKey) || "[]");
      return Array.isArray(events) ? events : [];
    } catch {
      return []; // a damaged entry is dropped rather than blocking every later event
    }
  }

  /** Try to deliver the queue now (batches by fetch); resolves to the events still waiting. */
  async flush() {
    clearTimeout(this.timer);
    this.timer = null;
    for (let events = this.queue(); events.length; events = this.queue()) {
      const batch = events.slice(0, BATCH);
      let response;
      try {
        response = await this.post(batch);
      } catch {
        this.schedule();
        return this.queue().length;
      }
      if (RETRYABLE.has(response.status)) {
        this.schedule(retryAfterMs(response));
        return this.queue().length;
      }
      // Stored, or refused for good (a 4xx would be refused again): either way not retried.
      this.dequeue(batch);
      this.attempts = 0;
    }
    return 0;
  }

  // --- internals ---------------------------------------------------------------------------

  headers(extra = {}) {
    return this.apiKey ? { ...extra, "X-API-Key": this.apiKey } : extra;
  }

  eventsUrl() {
    return `${this.endpoint}${EVENTS_PATH}`;
  }

  post(body) {
    return fetch(this.eventsUrl(), {
      method: "POST",
      keepalive: true,
      headers: this.headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
  }

  mustBeacon() {
    const beacon = typeof navigator !== "undefined" && typeof navigator.sendBeacon === "function";
    const hidden = typeof document !== "undefined" && document.visibilityState === "hidden";
    return beacon && !this.apiKey && (hidden || typeof fetch !== "function");
  }

  beaconQueue() {
    const events = this.queue();
    if (!events.length || this.apiKey || typeof navigator.sendBeacon !== "function") return;
    for (let i = 0; i < events.length; i += BATCH) {
      navigator.sendBeacon(this.eventsUrl(), JSON.stringify(events.slice(i, i + BATCH)));
    }
  }

  enqueue(events) {
    const all = [...this.queue(), ...events];
    this.save(all.slice(Math.max(0, all.length - this.maxQueue)));
  }

  dequeue(events) {
    const sent = new Set(events.map((e) => e.event_id));
    this.save(this.queue().filter((e) => !sent.has(e.event_id)));
  }

  save(events) {
    if (events.length) this.storage.setItem(this.queueKey, JSON.stringify(events));
    else this.storage.removeItem(this.queueKey);
  }

  /** Retry later: `delayMs` if the server said, else exponential backoff with jitter. */
  schedule(delayMs = null) {
    if (this.timer !== null) return;
    const backoff = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** this.attempts);
    this.attempts += 1;
    const delay = delayMs ?? backoff * (0.5 + Math.random() / 2);
    this.timer = setTimeout(() => this.flush(), delay);
  }
}

function retryAfterMs(response) {
  const seconds = Number(response.headers.get("Retry-After"));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : null;
}

async function apiError(response) {
  let detail = response.statusText;
  try {
    const body = await response.json();
    detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    // not JSON: keep the status text
  }
  const error = new Error(`${response.status}: ${detail}`);
  error.status = response.status;
  return error;
}
