// The demo storefront: a catalog grid and four live panels, all through personalize.js.
// Data from the API is written with textContent only: descriptions come from purchase logs.
import { Personalize } from "./personalize.js";

const PAGE = 12; // catalog items per page
const PANEL = 6; // items per panel
const SEGMENTS_SHOWN = 4; // customers are offered from the most valuable segments
const CUSTOMERS_PER_SEGMENT = 5;
const DONE = { view: "viewed it", click: "clicked it", add_to_cart: "put it in the cart", purchase: "bought it" };

const client = new Personalize();
const state = { offset: 0, total: 0, lastItem: null, lastName: "", customer: null, actions: 0 };
const known = new Map(); // item id -> item, from every list shown (names for "recently viewed")
const $ = (id) => document.getElementById(id);

function say(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

function price(value) {
  return value === null ? "" : value.toFixed(2);
}

function viewButton(item) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "view";
  button.textContent = item.description || item.item_id;
  button.addEventListener("click", () => click(item));
  return button;
}

function renderPanel(id, items, reasonOf, emptyText) {
  const list = $(id);
  list.replaceChildren();
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = emptyText;
    list.append(li);
    return;
  }
  for (const item of items) {
    if (item.description) known.set(item.item_id, item);
    const li = document.createElement("li");
    li.dataset.itemId = item.item_id;
    li.append(viewButton(item));
    if (item.price !== undefined && item.price !== null) li.append(` ${price(item.price)}`);
    const reason = document.createElement("span");
    reason.className = "reason";
    reason.textContent = reasonOf(item);
    li.append(reason);
    list.append(li);
  }
}

function renderCatalog(page) {
  state.total = page.total;
  const grid = $("catalog");
  grid.replaceChildren();
  for (const item of page.items) {
    known.set(item.item_id, item);
    const card = document.createElement("li");
    card.className = item.available ? "card" : "card out";
    card.dataset.itemId = item.item_id;
    const meta = document.createElement("p");
    meta.className = "meta";
    meta.textContent = `${item.item_id} · ${item.category} · ${price(item.price)}`;
    const stock = document.createElement("button");
    stock.type = "button";
    stock.className = "stock";
    stock.setAttribute("aria-pressed", String(!item.available));
    stock.textContent = item.available ? "Mark out of stock" : "Out of stock: restock";
    stock.addEventListener("click", () => setAvailable(item, !item.available));
    card.append(viewButton(item), meta, stock);
    grid.append(card);
  }
  const last = Math.min(page.offset + page.items.length, page.total);
  $("catalog-range").textContent = `(${page.offset + 1}–${last} of ${page.total}, best-selling first)`;
  $("prev").disabled = page.offset === 0;
  $("next").disabled = last >= page.total;
}

async function catalogPage() {
  return client.get("/v1/items", { offset: state.offset, k: PAGE });
}

async function togetherWith(item) {
  if (!item) return null;
  try {
    return await client.boughtTogether(item, PANEL);
  } catch (error) {
    if (error.status === 404) return { items: [] }; // an item the model does not know
    throw error;
  }
}

/** Ask every panel again. */
async function refresh() {
  const [page, recs, together, recent, trending] = await Promise.all([
    catalogPage(),
    client.recommendations({ k: PANEL, explain: true }),
    togetherWith(state.lastItem),
    client.recent(PANEL),
    client.trending(PANEL),
  ]);
  renderCatalog(page);
  $("visitor-id").textContent = client.visitorId;
  const strategy = recs.segment ? `${recs.strategy}, segment ${recs.segment}` : recs.strategy;
  $("strategy").textContent = `(${strategy})`;
  renderPanel("recommended", recs.items, (i) => i.reason || "", "nothing to recommend");
  $("together-with").textContent = state.lastItem ? `with ${state.lastName}` : "";
  renderPanel(
    "together",
    together ? together.items : [],
    (i) => i.reason,
    state.lastItem ? "no basket pairs for this item" : "click a product to see its basket pairs",
  );
  renderPanel(
    "recent",
    recent.items.map((e) => ({ ...(known.get(e.item_id) || { item_id: e.item_id }), event: e })),
    (i) => `you ${DONE[i.event.type] || i.event.type} at ${new Date(i.event.timestamp * 1000).toLocaleTimeString()}`,
    "nothing viewed yet",
  );
  renderPanel("trending", trending.items, (i) => i.reason, "nothing trending");
}

/** Do `action`, then refresh the page; `data-actions` on <body> counts finished ones
 * (succeeded or not), so that a test knows when the page has settled. */
async function run(action, done) {
  try {
    await action();
    await refresh();
    if (done) say(done);
  } catch (error) {
    say(error.status === 401 || error.status === 403
      ? `${error.message}: this server has API keys; enter one above to write`
      : `Failed: ${error.message}`, true);
  } finally {
    state.actions += 1;
    document.body.dataset.actions = String(state.actions);
  }
}

function click(item) {
  return run(async () => {
    const outcome = await client.track({ type: "click", item_id: item.item_id });
    if (outcome !== "stored") throw new Error(`the click was ${outcome}, not stored yet`);
    state.lastItem = item.item_id;
    state.lastName = item.description || item.item_id;
  }, `Clicked ${item.description || item.item_id}: panels updated.`);
}

function setAvailable(item, available) {
  return run(async () => {
    const response = await fetch("/v1/items/availability", {
      method: "PUT",
      headers: client.headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ item_ids: [item.item_id], available }),
    });
    if (!response.ok) {
      const error = new Error(`${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
  }, `${item.description || item.item_id} is now ${available ? "in stock" : "out of stock"}: it leaves every panel at once.`);
}

function logIn() {
  const customer = $("customer").value;
  if (!customer) {
    say("Choose a customer first.", true);
    return Promise.resolve();
  }
  const item = state.lastItem || $("catalog").querySelector("[data-item-id]")?.dataset.itemId;
  return run(async () => {
    // Any event carrying customer_id links this visitor's session to the customer.
    const outcome = await client.track({ type: "view", item_id: item, customer_id: customer });
    if (outcome !== "stored") throw new Error(`the login event was ${outcome}, not stored yet`);
    state.customer = customer;
    $("customer-badge").textContent = `logged in as ${customer}`;
    $("customer-badge").hidden = false;
  }, `Logged in as ${customer}: the session is merged with the customer's history.`);
}

function newVisitor() {
  client.newVisitor();
  Object.assign(state, { lastItem: null, lastName: "", customer: null });
  $("customer-badge").hidden = true;
  return run(async () => {}, "A new anonymous visitor: nothing known yet, so trending items.");
}

async function loadCustomers() {
  const select = $("customer");
  try {
    const report = await client.get("/v1/segments");
    const groups = await Promise.all(
      report.segments.slice(0, SEGMENTS_SHOWN).map(async (segment) => [
        segment.name,
        (await client.get(`/v1/segments/${encodeURIComponent(segment.name)}/customers`, {
          limit: CUSTOMERS_PER_SEGMENT,
        })).customers,
      ]),
    );
    select.replaceChildren(new Option("choose a customer", ""));
    for (const [name, customers] of groups) {
      const group = document.createElement("optgroup");
      group.label = name;
      for (const id of customers) group.append(new Option(id, id));
      select.append(group);
    }
  } catch (error) {
    select.replaceChildren(new Option(`no customers (${error.message})`, ""));
  }
}

$("new-visitor").addEventListener("click", newVisitor);
$("login").addEventListener("click", logIn);
$("api-key").addEventListener("change", (e) => { client.apiKey = e.target.value || null; });
$("prev").addEventListener("click", () => {
  state.offset = Math.max(0, state.offset - PAGE);
  run(async () => {});
});
$("next").addEventListener("click", () => {
  state.offset += PAGE;
  run(async () => {});
});

loadCustomers();
run(async () => {}, "Ready: click a product.");
