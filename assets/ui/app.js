// lanehub cashier UI: sign in to a lane, follow it live over its WebSocket, send scans and
// cashier commands. All texts for people are in TEXT so they can be translated.

const TEXT = {
  idleMessage: "Waiting for a customer",
  noLanes: "This token may not open any lane.",
  badToken: "The token was not accepted.",
  network: "lanehub cannot be reached. Check the network.",
  resynced: "Reconnected; the lane was refreshed.",
  member: "member",
  nonMember: "not a member",
  amountInvalid: "Enter an amount such as 239,90",
  online: "online",
  offline: "offline",
};

// The message families by code; unknown codes still show their server text as info.
const FAMILY = {
  member_welcomed: "ok", enrollment_completed: "ok", payment_approved: "ok",
  non_member: "info", enrollment_started: "info", payment_requested: "info", customer_identified: "info",
  enrollment_declined: "warn", enrollment_expired: "warn", payment_cancelled: "warn",
  payment_declined: "error", payment_expired: "error", payment_failed: "error",
  vipps_unavailable: "error", qr_not_recognised: "warn", enrollment_failed: "warn",
};

// Lane states in which a payment is in flight.
const PAYING_STATES = ["awaiting_payment_creation", "awaiting_payment", "awaiting_capture", "awaiting_cancel"];

const $ = (id) => document.getElementById(id);
const store = window.localStorage;
let token = store.getItem("lanehub.token") || "";
let lane = store.getItem("lanehub.lane") || "";
let socket = null;
let lastSeq = null;
// Counts snapshots rendered from WebSocket events. An HTTP answer was taken before any event
// that arrives while it travels, so it is rendered only if no event came meanwhile; otherwise
// it would put an older state back on screen.
let eventRenders = 0;
let retry = 0;
let snapshot = null;

/** "239,90" / "239.90" / "1 239" → 23990 øre, by string handling only (no floating point). */
export function parseMinorUnits(input) {
  const s = String(input).replace(/[\s\u00a0]/g, "").replace(/kr$/i, "");
  const m = /^(\d{1,9})(?:[.,](\d{1,2}))?$/.exec(s);
  if (!m) return null;
  const kroner = parseInt(m[1], 10);
  const ore = m[2] === undefined ? 0 : parseInt(m[2].padEnd(2, "0"), 10);
  const total = kroner * 100 + ore;
  return total > 0 ? total : null;
}

function formatAmount(amount) {
  if (!amount) return "";
  const major = Math.trunc(amount.value / 100);
  const minor = String(amount.value % 100).padStart(2, "0");
  try {
    // Format the integer part with the locale and append the exact minor units.
    const fmt = new Intl.NumberFormat("nb-NO", { style: "currency", currency: amount.currency, minimumFractionDigits: 0, maximumFractionDigits: 0 });
    const parts = fmt.formatToParts(major);
    const int = parts.filter((p) => p.type === "integer" || p.type === "group").map((p) => p.value).join("");
    const cur = parts.find((p) => p.type === "currency")?.value || amount.currency;
    return `${int},${minor} ${cur}`;
  } catch {
    return `${major},${minor} ${amount.currency}`;
  }
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const detail = (data && data.detail) || `${res.status} ${res.statusText}`;
    const err = new Error(detail);
    err.status = res.status;
    throw err;
  }
  return data;
}

function showMessage(code, text) {
  const el = $("message");
  el.className = `message ${FAMILY[code] || "info"}`;
  el.dataset.code = code || "";
  el.textContent = text;
}

function render(s) {
  snapshot = s;
  $("lane-title").textContent = `Lane ${s.lane}`;
  $("state").textContent = s.state.replaceAll("_", " ");
  $("state").dataset.state = s.state;
  const session = s.session || {};
  const customer = session.customer;
  const c = $("customer");
  c.textContent = customer ? customer.phoneNumber : "–";
  if (customer && customer.member !== null && customer.member !== undefined) {
    const badge = document.createElement("span");
    badge.className = `badge ${customer.member ? "member" : "non-member"}`;
    badge.textContent = customer.member ? TEXT.member : TEXT.nonMember;
    c.appendChild(badge);
  }
  $("enrollment").textContent = session.enrollment ? session.enrollment.replaceAll("_", " ") : "–";
  const p = session.payment;
  $("payment").textContent = p ? `${formatAmount(p.amount)} · ${p.state} · ${p.reference}` : "–";
  $("payment").dataset.state = p ? p.state : "";
  if (s.message) showMessage(s.message.code, s.message.text);
  else if (s.state === "idle") showMessage("", TEXT.idleMessage);
  $("scanners").textContent = (s.scanners || []).map((sc) => `${sc.role} scanner (${sc.source}): ${sc.state}`).join(" · ");
  // Offer only what the lane accepts now, so a cashier's tap is not answered with a refusal:
  // one payment per checkout; enrollment for an identified non-member before paying; reset
  // not while a payment is in flight (cancel it instead).
  const paying = PAYING_STATES.includes(s.state);
  $("enroll-button").disabled = !(s.state === "ready_for_payment" && customer && customer.member === false && !p);
  $("pay-button").disabled = !customer || !!p || paying;
  $("cancel-button").disabled = !s.session;
  $("reset-button").disabled = paying;
  if (!s.up) showMessage("lane_down", `Lane ${s.lane} is down. Use another lane or call store IT.`);
}

function addItem(data) {
  const li = document.createElement("li");
  li.textContent = data && data.barcode ? data.barcode : JSON.stringify(data);
  $("items").prepend(li);
}

function setConnection(online) {
  const el = $("connection");
  el.className = `connection ${online ? "online" : "offline"}`;
  el.textContent = online ? TEXT.online : TEXT.offline;
}

/** Renders an HTTP answer unless a WebSocket event newer than it was rendered meanwhile. */
async function renderAnswer(request) {
  const before = eventRenders;
  const s = await request;
  if (eventRenders === before) render(s);
}

async function resync(notice) {
  try {
    await renderAnswer(api("GET", `/api/v1/lanes/${encodeURIComponent(lane)}`));
    if (notice) $("notice").textContent = TEXT.resynced;
  } catch (e) {
    $("notice").textContent = e.message;
  }
}

function connect() {
  if (socket) socket.close();
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const url = `${proto}://${location.host}/api/v1/lanes/${encodeURIComponent(lane)}/events?access_token=${encodeURIComponent(token)}`;
  const ws = new WebSocket(url);
  socket = ws;
  ws.onopen = () => { retry = 0; setConnection(true); };
  ws.onmessage = (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch { return; }
    const gap = lastSeq !== null && ev.kind !== "snapshot" && ev.seq !== lastSeq + 1;
    lastSeq = ev.seq;
    if (ev.kind === "scan") addItem(ev.data);
    eventRenders += 1;
    render(ev.snapshot);
    if (gap) resync(true);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    setConnection(false);
    retry = Math.min(retry + 1, 6);
    setTimeout(connect, 250 * 2 ** retry);
  };
}

async function command(path, body) {
  try {
    await renderAnswer(api("POST", `/api/v1/lanes/${encodeURIComponent(lane)}/${path}`, body));
  } catch (e) {
    showMessage("error", e.message);
  }
}

function openLane() {
  $("sign-in").hidden = true;
  $("lane").hidden = false;
  $("sign-out").hidden = false;
  lastSeq = null;
  resync(false);
  connect();
  $("scan-input").focus();
}

async function loadLanes() {
  token = $("token-input").value.trim();
  $("sign-in-error").textContent = "";
  try {
    const lanes = await api("GET", "/api/v1/lanes");
    const picker = $("lane-picker");
    picker.replaceChildren(...lanes.map((l) => new Option(`Lane ${l.lane}`, l.lane)));
    picker.disabled = lanes.length === 0;
    $("sign-in-button").disabled = lanes.length === 0;
    if (lanes.length === 0) $("sign-in-error").textContent = TEXT.noLanes;
  } catch (e) {
    $("sign-in-error").textContent = e.status === 401 ? TEXT.badToken : e.status ? e.message : TEXT.network;
  }
}

function wire() {
  $("load-lanes").addEventListener("click", loadLanes);
  $("token-input").addEventListener("keydown", (e) => { if (e.key === "Enter") loadLanes(); });
  $("sign-in-button").addEventListener("click", () => {
    lane = $("lane-picker").value;
    store.setItem("lanehub.token", token);
    store.setItem("lanehub.lane", lane);
    openLane();
  });
  $("sign-out").addEventListener("click", () => {
    store.removeItem("lanehub.lane");
    if (socket) { const s = socket; socket = null; s.close(); }
    $("lane").hidden = true;
    $("sign-out").hidden = true;
    $("sign-in").hidden = false;
    setConnection(false);
  });
  $("scan-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("scan-input").value.trim();
    if (!text) return;
    $("scan-input").value = "";
    command("scans", { text });
  });
  $("pay-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = parseMinorUnits($("amount-input").value);
    if (value === null) { showMessage("error", TEXT.amountInvalid); return; }
    const currency = snapshot?.session?.payment?.amount?.currency || "NOK";
    command("payment", { amount: { value, currency }, description: "Purchase" });
  });
  $("enroll-button").addEventListener("click", () => command("enroll"));
  $("cancel-button").addEventListener("click", () => command("cancel"));
  $("reset-button").addEventListener("click", () => { $("items").replaceChildren(); command("reset"); });
}

wire();
if (token && lane) {
  $("token-input").value = token;
  openLane();
}
