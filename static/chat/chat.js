// The chat page: one WebSocket (frames documented in conversations/consumers.py), the
// transcript, the composer and the conversation list.
//
// Untrusted text (model, tool, reasoning, titles) reaches the DOM only through textContent or
// through markdown.js (markdown-it without HTML, then DOMPurify). Nothing here uses innerHTML.
// A typed message is never lost: it sits in a localStorage outbox, shown as "Sending…", and is
// sent again after every reconnect until the server's ack (the server de-duplicates by
// client_key).

import { reconnectDelay, STABLE_AFTER_MS } from "./backoff.js";
import { copyText, renderInto } from "./markdown.js";

const $ = (sel, root = document) => root.querySelector(sel);
const boot = JSON.parse($("#boot").textContent);

// --- small DOM helper -----------------------------------------------------------------------

function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function newKey() {
  if (window.crypto && crypto.randomUUID && window.isSecureContext) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const csrfToken = $('meta[name="csrf-token"]').content;

async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `The server answered ${response.status}.`);
  return data;
}

// --- elements --------------------------------------------------------------------------------

const transcript = $("#transcript");
const emptyState = $("#empty");
const input = $("#message");
const composer = $("#composer");
const composerError = $("#composer-error");
const sendButton = $("#send");
const stopButton = $("#stop");
const connection = $("#connection");
const connectionText = $("#connection-text");
const titleEl = $("#conversation-title");
const live = $("#live");
const contextMeter = $("#context-meter");
const contextText = $("#context-text");

// --- state -----------------------------------------------------------------------------------

const state = {
  conversationId: boot.conversation || null,
  title: boot.title || "",
  messages: new Map(), // id -> message data (as message_dict / snapshot, plus client-side fields)
  order: [], // ids on the shown branch: its newest part, older pages prepended as they come
  older: false, // the branch has messages before order[0] (not loaded yet)
  olderPending: null, // the "before" of the older page asked for, until it comes
  siblings: {}, // id -> [ids of it and its siblings]
  lastSeq: new Map(), // message id -> last turn seq applied
  streamingId: null,
  loading: false,
  contextWindow: null, // tokens the conversation's main model holds (conversation payload)
};
const views = new Map(); // message id -> {el, ...parts}

// --- outbox ------------------------------------------------------------------------------------

const OUTBOX_KEY = `chat.outbox.v1.${boot.user}`;

function loadOutbox() {
  try {
    const stored = JSON.parse(localStorage.getItem(OUTBOX_KEY) || "[]");
    return Array.isArray(stored) ? stored.filter((f) => f && f.type === "send" && f.client_key) : [];
  } catch {
    return [];
  }
}

let outbox = loadOutbox();

function saveOutbox() {
  try {
    if (outbox.length) localStorage.setItem(OUTBOX_KEY, JSON.stringify(outbox));
    else localStorage.removeItem(OUTBOX_KEY);
  } catch {
    // Storage full or disabled: the outbox still lives in memory for this tab.
  }
}

// Another tab of the same user may take an entry out (its ack) or add one.
window.addEventListener("storage", (e) => {
  if (e.key === OUTBOX_KEY) {
    outbox = loadOutbox();
    renderPending();
    updateComposer();
  }
});

function pendingHere() {
  return outbox.filter((f) => (f.conversation || null) === state.conversationId);
}

// --- connection ------------------------------------------------------------------------------

let socket = null;
// Failed or short-lived connections in a row: the next wait grows with it (backoff.js).
let attempt = 0;
let reconnectTimer = null;
let stableTimer = null;
let heartbeat = null;
let lastFrameAt = 0;
let countdown = null;
let gaveUp = false;

function setConnection(kind, text) {
  connection.dataset.state = kind;
  connectionText.textContent = text;
  const old = $("#reconnect", connection);
  if (old) old.remove();
  if (kind === "closed") {
    connection.append(h("button", { type: "button", id: "reconnect", class: "link", onclick: () => connect() }, "Retry now"));
  }
  renderPending();
}

function connect() {
  clearTimeout(reconnectTimer);
  clearInterval(countdown);
  if (socket && (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING)) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws/chat/`);
  socket = ws;
  setConnection("connecting", attempt ? "Reconnecting…" : "Connecting…");
  ws.addEventListener("open", () => {
    // Not back to the first, short delay yet: only a connection that stays up has worked.
    // (Resetting here made a server that accepts and then drops sockets see every tab again
    // every 0.25 to 0.5 s, for ever.)
    clearTimeout(stableTimer);
    stableTimer = setTimeout(() => { attempt = 0; }, STABLE_AFTER_MS);
    lastFrameAt = Date.now();
    setConnection("open", "Connected");
    if (state.conversationId) {
      // The branch shown, not the conversation's newest: a reconnect keeps the reader's place.
      const leaf = state.loading ? undefined : state.order[state.order.length - 1];
      sendFrame({ type: "watch", conversation: state.conversationId, ...(leaf ? { leaf } : {}) });
    }
    flushOutbox();
    clearInterval(heartbeat);
    heartbeat = setInterval(() => {
      // No frame at all for a while (not even the pong): the connection is dead even if the
      // browser has not noticed; close it and reconnect.
      if (Date.now() - lastFrameAt > 45000) ws.close();
      else sendFrame({ type: "ping" });
    }, 20000);
  });
  const parts = new PartJoiner(handle);
  ws.addEventListener("message", (e) => {
    lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(e.data);
    } catch {
      return;
    }
    parts.receive(frame);
  });
  ws.addEventListener("close", (e) => {
    if (socket !== ws) return;
    clearInterval(heartbeat);
    clearTimeout(stableTimer);
    socket = null;
    if (state.olderPending !== null) {
      // Its answer went with the socket; ask again once connected.
      state.olderPending = null;
      renderOlder();
    }
    if (e.code === 4401 || e.code === 4403) {
      gaveUp = true;
      setConnection("error", "Your session has ended. Reload the page to log in again.");
      return;
    }
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  const delay = reconnectDelay(attempt);
  attempt += 1;
  let left = Math.ceil(delay / 1000);
  const say = () => setConnection("closed", navigator.onLine === false
    ? "Offline. Waiting for the network…"
    : `Disconnected. Reconnecting in ${left} s…`);
  connection.dataset.attempt = String(attempt);
  connection.dataset.delay = String(delay);
  say();
  clearInterval(countdown);
  countdown = setInterval(() => { left = Math.max(0, left - 1); say(); }, 1000);
  reconnectTimer = setTimeout(connect, delay);
}

window.addEventListener("online", () => { if (!socket && !gaveUp) connect(); });
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && !socket && !gaveUp) connect();
});

function sendFrame(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function flushOutbox() {
  for (const frame of pendingHere()) sendFrame(frame);
}

// --- frames in ---------------------------------------------------------------------------------

// A frame too large for one WebSocket message arrives as "part" frames (slices of its JSON
// text, in order). Frames that arrive while one is being joined wait behind it, so every frame
// is handled in the order the server sent it.
class PartJoiner {
  constructor(deliver) {
    this.deliver = deliver;
    this.joining = null;
  }

  receive(frame) {
    if (frame.type === "part") {
      if (!this.joining || this.joining.id !== frame.id) this.joining = { id: frame.id, data: [], held: [] };
      this.joining.data.push(String(frame.data));
      if (!frame.last) return;
      const { data, held } = this.joining;
      this.joining = null;
      let whole = null;
      try {
        whole = JSON.parse(data.join(""));
      } catch {
        whole = null;
      }
      if (whole) this.deliver(whole);
      for (const next of held) this.receive(next);
      return;
    }
    if (this.joining) this.joining.held.push(frame);
    else this.deliver(frame);
  }
}

function handle(frame) {
  switch (frame.type) {
    case "conversation": return onConversation(frame);
    case "older_messages": return onOlderMessages(frame);
    case "ack": return onAck(frame);
    case "turn": return onTurn(frame);
    case "error": return onError(frame);
    case "conversations_changed": return sidebar.changed(frame.conversation);
    default: return undefined; // hello, pong
  }
}

function onConversation(frame) {
  if (frame.conversation.id !== state.conversationId) return;
  // The server sends the newest page of the branch. When that page starts inside what is shown
  // (a reconnect, a re-sync), the messages above it are still right (a message's ancestors
  // never change): they stay, and so does the reader's place.
  const first = frame.messages.length ? frame.messages[0].id : null;
  const at = state.loading || first === null ? -1 : state.order.indexOf(first);
  const stick = at <= 0 || nearEnd();
  if (at > 0) {
    for (const id of state.order.slice(at)) dropMessage(id);
    state.order = state.order.slice(0, at);
  } else {
    clearTranscript();
    state.older = Boolean(frame.older);
  }
  state.loading = false;
  state.olderPending = null;
  state.contextWindow = frame.conversation.context_window || null;
  Object.assign(state.siblings, frame.siblings || {});
  state.streamingId = null;
  for (const m of frame.messages) {
    state.messages.set(m.id, { ...m });
    state.order.push(m.id);
    state.lastSeq.set(m.id, m.seq || 0);
    if (m.status === "pending" || m.status === "streaming") state.streamingId = m.id;
  }
  for (const id of state.order.slice(Math.max(at, 0))) renderMessage(id);
  renderOlder();
  setTitle(frame.conversation.title);
  renderPending();
  updateComposer();
  updateMeter();
  if (stick) scrollToEnd(true);
  moreIfNearTop();
}

// --- older messages ------------------------------------------------------------------------------

// Above the first message shown, while the branch has older ones: they load as the reader
// scrolls up to here (or presses the button).
const olderBox = h("div", { id: "older", class: "older", role: "status" });

function renderOlder() {
  if (!state.older || !state.order.length) {
    olderBox.remove();
    return;
  }
  if (transcript.firstChild !== olderBox) transcript.prepend(olderBox);
  const loading = state.olderPending !== null;
  olderBox.dataset.state = loading ? "loading" : "idle";
  if (loading) olderBox.replaceChildren(h("span", { class: "notice-text" }, "Loading earlier messages…"));
  else if (olderBox.dataset.error) {
    olderBox.replaceChildren(h("span", { class: "notice-text", text: olderBox.dataset.error }),
      h("button", { type: "button", class: "link", onclick: loadOlder }, "Try again"));
  } else olderBox.replaceChildren(h("button", { type: "button", class: "link", onclick: loadOlder }, "Show earlier messages"));
}

function loadOlder() {
  const before = state.order[0];
  if (!state.older || state.loading || state.olderPending !== null || !before || !state.conversationId) return;
  delete olderBox.dataset.error;
  if (!sendFrame({ type: "older", conversation: state.conversationId, before, ref: `older-${before}` })) return;
  state.olderPending = before;
  renderOlder();
}

// Within a screen of the top: the next page is wanted (a short page that does not fill the
// screen asks for the next at once).
function moreIfNearTop() {
  if (state.older && state.olderPending === null && transcript.scrollTop < transcript.clientHeight) loadOlder();
}

transcript.addEventListener("scroll", moreIfNearTop, { passive: true });

function onOlderMessages(frame) {
  if (frame.conversation !== state.conversationId || frame.before !== state.olderPending) return;
  state.olderPending = null;
  if (state.order[0] !== frame.before) {
    renderOlder(); // another branch is shown now
    return;
  }
  // Keep the reader's place: the message that was first stays where it is on the screen.
  const anchor = views.get(frame.before)?.el;
  const y = anchor ? anchor.getBoundingClientRect().top : 0;
  const ids = [];
  for (const m of frame.messages) {
    if (state.messages.has(m.id)) continue;
    state.messages.set(m.id, { ...m });
    state.lastSeq.set(m.id, m.seq || 0);
    ids.push(m.id);
  }
  state.order = ids.concat(state.order);
  Object.assign(state.siblings, frame.siblings || {});
  state.older = Boolean(frame.older) && ids.length > 0;
  for (const id of ids) renderMessage(id);
  renderOlder();
  if (anchor) transcript.scrollTop += anchor.getBoundingClientRect().top - y;
  if (!state.title) setTitle("");
  moreIfNearTop();
}

function onAck(frame) {
  const i = outbox.findIndex((f) => f.client_key && f.client_key === frame.client_key);
  const sent = i >= 0 ? outbox[i] : null;
  if (i >= 0) {
    outbox.splice(i, 1);
    saveOutbox();
  }
  const id = frame.conversation.id;
  if (!state.conversationId && (sent || frame.client_key === null)) {
    // The first message of a new conversation: it now has an address (which replaces the
    // empty page's in the history: Back goes to the conversation before).
    state.conversationId = id;
    history.replaceState({ conversation: id }, "", `/c/${id}/`);
    setTitle(frame.conversation.title);
    sidebar.setCurrent(id);
  }
  if (id !== state.conversationId) {
    // A resent message of another conversation: the socket now watches that one; come back.
    if (state.conversationId) sendFrame({ type: "watch", conversation: state.conversationId });
    return;
  }
  removePending(frame.client_key);
  if (frame.conversation.context_window) state.contextWindow = frame.conversation.context_window;
  if (frame.duplicate) {
    // Stored earlier (before a reconnect): the server follows with the conversation's state.
    updateComposer();
    return;
  }
  const user = frame.user_message;
  const reply = frame.assistant_message;
  const tail = state.order[state.order.length - 1];
  const continues = user.id === tail || (!state.messages.has(user.id) && user.parent === (tail ?? null));
  if (!continues) {
    // An edit or a regeneration: a new branch. Fetch it (with its sibling counts) from the
    // server; live events wait for that state.
    state.streamingId = reply.id;
    state.loading = true;
    updateComposer();
    sendFrame({ type: "watch", conversation: id, leaf: reply.id });
    return;
  }
  for (const m of [user, reply]) {
    if (!state.messages.has(m.id)) {
      state.messages.set(m.id, { ...m });
      state.order.push(m.id);
      state.lastSeq.set(m.id, m.seq || 0);
    }
    renderMessage(m.id);
  }
  state.streamingId = reply.id;
  if (!state.title) setTitle("");
  updateComposer();
  scrollToEnd(true);
}

function onTurn(frame) {
  if (frame.conversation !== state.conversationId || state.loading) return;
  const id = frame.message;
  const ev = frame.event;
  const last = state.lastSeq.get(id);
  if (last !== undefined && frame.seq <= last) return; // already in what we were sent
  if (!state.messages.has(id)) {
    const parent = ev.message ? ev.message.parent : undefined;
    const tail = state.order[state.order.length - 1];
    if (ev.kind === "started" && parent !== undefined && parent === tail) {
      state.messages.set(id, { ...ev.message });
      state.order.push(id);
    } else {
      // A turn we know nothing about (started in another tab, or we joined late): ask for the
      // state; the server sends the text so far, then the rest live.
      resync();
      return;
    }
  } else if (last !== undefined && last > 0 && frame.seq > last + 1) {
    resync(); // a gap: never show a hole
    return;
  }
  state.lastSeq.set(id, frame.seq);
  const m = state.messages.get(id);
  switch (ev.kind) {
    case "started":
      Object.assign(m, ev.message);
      state.streamingId = id;
      break;
    case "text":
      if (m.reasoningStartedAt && !m.reasoningEndedAt) m.reasoningEndedAt = performance.now();
      m.content = (m.content || "") + ev.text;
      m.status = "streaming";
      m.detail = "";
      break;
    case "reasoning":
      if (!m.reasoningStartedAt) m.reasoningStartedAt = performance.now();
      m.reasoning = (m.reasoning || "") + ev.text;
      m.status = "streaming";
      m.detail = "";
      break;
    case "tool_call_started":
    case "tool_call_updated":
    case "tool_call_finished": {
      if (m.reasoningStartedAt && !m.reasoningEndedAt) m.reasoningEndedAt = performance.now();
      const calls = (m.tool_calls || []).filter((c) => c.id !== ev.call.id);
      m.tool_calls = [...calls, ev.call];
      m.status = "streaming";
      break;
    }
    case "model":
      m.model = ev.model;
      break;
    case "status":
      m.detail = ev.detail;
      break;
    case "finished":
      Object.assign(m, ev.message);
      m.detail = "";
      if (state.streamingId === id) state.streamingId = null;
      announce(m.status === "complete" ? "The answer is complete." : `The answer ${m.status === "failed" ? "failed" : "was " + m.status}.`);
      break;
    default:
      break;
  }
  if (state.streamingId === null && (m.status === "pending" || m.status === "streaming")) state.streamingId = id;
  scheduleRender(id);
  if (ev.kind === "finished") {
    // Only the newest answer offers "Regenerate": the one before may need to drop it.
    for (const other of state.order) if (other !== id) scheduleRender(other);
    updateMeter();
  }
  updateComposer();
}

let resyncTimer = null;
function resync() {
  if (!state.conversationId || resyncTimer) return;
  resyncTimer = setTimeout(() => { resyncTimer = null; }, 300);
  const leaf = state.order[state.order.length - 1];
  sendFrame({ type: "watch", conversation: state.conversationId, ...(leaf ? { leaf } : {}) });
}

function onError(frame) {
  if (typeof frame.ref === "string" && frame.ref.startsWith("older-")) {
    // Earlier messages could not be read: say so where they would be, with another try.
    if (frame.ref === `older-${state.olderPending}`) {
      state.olderPending = null;
      olderBox.dataset.error = `Could not load earlier messages: ${frame.message || "the server refused."}`;
      renderOlder();
    }
    return;
  }
  const i = frame.ref ? outbox.findIndex((f) => f.client_key === frame.ref) : -1;
  if (i >= 0) {
    // Refused for good (busy, too long, no such conversation): give the text back, not lost.
    const [sent] = outbox.splice(i, 1);
    saveOutbox();
    removePending(sent.client_key);
    if (!input.value.trim()) input.value = sent.text;
    autosize();
  }
  if (frame.code === "not_found" && state.loading) {
    state.loading = false;
    clearTranscript();
    transcript.append(h("p", { class: "notice", role: "alert" }, "That conversation does not exist, or it was deleted."));
  }
  showComposerError(frame.message || "Something went wrong.");
  updateComposer();
}

// --- rendering ---------------------------------------------------------------------------------

function firstLine(text) {
  const line = (text || "").split("\n").find((l) => l.trim()) || "";
  return line.length > 80 ? `${line.slice(0, 80)}…` : line;
}

// Until the model has named the conversation, its first question stands in for the title.
function setTitle(title) {
  state.title = title || "";
  // The first question, when it is loaded; else the list's preview of it.
  const first = state.older ? null : state.order.map((id) => state.messages.get(id)).find((m) => m && m.role === "user");
  const preview = state.older && state.conversationId ? sidebar.item(state.conversationId)?.preview : "";
  const shown = state.title || (first && firstLine(first.content)) || (preview && firstLine(preview)) || "New conversation";
  titleEl.textContent = state.conversationId ? shown : "New chat";
  document.title = state.conversationId ? `${shown} · Chat` : "Chat";
}

function clearTranscript() {
  state.messages.clear();
  state.order = [];
  state.older = false;
  state.olderPending = null;
  delete olderBox.dataset.error;
  state.lastSeq.clear();
  state.siblings = {};
  views.clear();
  transcript.replaceChildren();
  dirty.clear();
}

function dropMessage(id) {
  views.get(id)?.el.remove();
  views.delete(id);
  state.messages.delete(id);
  state.lastSeq.delete(id);
  dirty.delete(id);
}

function showEmpty() {
  clearTranscript();
  transcript.append(emptyState);
}

const dirty = new Set();
let frameRequested = false;

// Streaming deltas arrive far faster than a screen refreshes: render at most once a frame.
function scheduleRender(id) {
  dirty.add(id);
  if (frameRequested) return;
  frameRequested = true;
  const run = () => {
    frameRequested = false;
    const ids = Array.from(dirty);
    dirty.clear();
    const stick = nearEnd();
    for (const d of ids) renderMessage(d);
    if (stick) scrollToEnd();
  };
  // Hidden tabs get no animation frames; keep them current at a slower pace anyway.
  if (document.visibilityState === "hidden") setTimeout(run, 250);
  else requestAnimationFrame(run);
}

function nearEnd() {
  return transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 80;
}

function scrollToEnd(force = false) {
  if (force || nearEnd()) transcript.scrollTop = transcript.scrollHeight;
}

function announce(text) {
  live.textContent = text;
}

function seconds(ms) {
  return `${Math.max(1, Math.round(ms / 1000))} s`;
}

function formatDuration(ms) {
  if (ms === null || ms === undefined) return "";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function renderMessage(id) {
  const m = state.messages.get(id);
  if (!m) return;
  let view = views.get(id);
  if (!view) {
    view = m.role === "user" ? buildUser(m) : buildAssistant(m);
    views.set(id, view);
    const index = state.order.indexOf(id);
    const next = state.order.slice(index + 1).map((o) => views.get(o)).find(Boolean);
    if (next) transcript.insertBefore(view.el, next.el);
    else {
      const firstPending = $(".message.pending", transcript);
      transcript.insertBefore(view.el, firstPending);
    }
  }
  view.el.dataset.status = m.status || "";
  if (m.role === "user") updateUser(view, m);
  else updateAssistant(view, m);
  updateActions(view, m);
}

function buildUser(m) {
  const text = h("div", { class: "bubble" });
  const actions = h("div", { class: "actions" });
  const el = h("article", { class: "message user", dataset: { id: String(m.id) }, "aria-label": "You" }, text, actions);
  return { el, text, actions };
}

function updateUser(view, m) {
  if (view.editing) return;
  view.text.textContent = m.content || "";
}

function buildAssistant(m) {
  const summary = h("summary", {}, h("span", { class: "reasoning-label" }));
  const reasoningBody = h("div", { class: "md reasoning-body" });
  const reasoning = h("details", { class: "reasoning", hidden: true }, summary, reasoningBody);
  const parts = h("div", { class: "parts" });
  const status = h("p", { class: "turn-status", hidden: true });
  const error = h("div", { class: "turn-error", role: "alert", hidden: true });
  const actions = h("div", { class: "actions" });
  const el = h("article", { class: "message assistant", dataset: { id: String(m.id) }, "aria-label": "Assistant" },
    reasoning, parts, status, error, actions);
  const view = { el, reasoning, summary, reasoningBody, parts, status, error, actions, keys: new Map(), reasoningText: null };
  reasoning.addEventListener("toggle", () => {
    const text = state.messages.get(m.id)?.reasoning || "";
    if (reasoning.open && view.reasoningText !== text) {
      renderInto(reasoningBody, text);
      view.reasoningText = text;
    }
  });
  return view;
}

function updateAssistant(view, m) {
  const running = m.status === "pending" || m.status === "streaming";
  // Reasoning, collapsed, with how long it took.
  const hasReasoning = Boolean(m.reasoning);
  view.reasoning.hidden = !hasReasoning;
  if (hasReasoning) {
    const thinking = running && !m.content && !(m.tool_calls || []).length && !m.reasoningEndedAt;
    let label;
    if (thinking) label = "Thinking…";
    else if (m.reasoning_ms !== null && m.reasoning_ms !== undefined) label = `Thought for ${seconds(m.reasoning_ms)}`;
    else if (m.reasoningStartedAt && m.reasoningEndedAt) label = `Thought for ${seconds(m.reasoningEndedAt - m.reasoningStartedAt)}`;
    else label = "Thoughts";
    view.summary.firstChild.textContent = label;
    view.reasoning.classList.toggle("thinking", thinking);
    // The reasoning is rendered only while it is open (it can be long, and is mostly skipped).
    if (view.reasoning.open && view.reasoningText !== m.reasoning) {
      renderInto(view.reasoningBody, m.reasoning);
      view.reasoningText = m.reasoning;
    }
  }
  // Text and tool calls in the order they happened: each call sits at the point of the text
  // where the model made it (text_offset).
  const content = m.content || "";
  const calls = [...(m.tool_calls || [])].sort((a, b) => (a.text_offset - b.text_offset) || (a.round - b.round));
  const pieces = [];
  let at = 0;
  let n = 0;
  for (const call of calls) {
    const offset = Math.min(Math.max(call.text_offset || 0, at), content.length);
    if (offset > at) pieces.push({ key: `t${n++}`, text: content.slice(at, offset) });
    at = offset;
    pieces.push({ key: `c:${call.id}`, call });
  }
  if (content.length > at || !pieces.length) pieces.push({ key: `t${n++}`, text: content.slice(at) });
  const wanted = [];
  for (const piece of pieces) {
    let node = view.keys.get(piece.key);
    if (piece.call) {
      if (!node) node = buildToolCard();
      updateToolCard(node, piece.call);
    } else {
      if (!node) node = h("div", { class: "md" });
      if (node.__text !== piece.text) {
        renderInto(node, piece.text);
        node.__text = piece.text;
      }
    }
    view.keys.set(piece.key, node);
    wanted.push(node);
  }
  const wantedSet = new Set(wanted);
  for (const [key, node] of view.keys) if (!wantedSet.has(node)) { node.remove(); view.keys.delete(key); }
  wanted.forEach((node, i) => {
    if (view.parts.children[i] !== node) view.parts.insertBefore(node, view.parts.children[i] || null);
  });
  view.parts.classList.toggle("streaming", running);
  // Status line: waiting, retrying, stopped.
  let status = "";
  if (m.status === "pending") status = m.detail || "Waiting for the model…";
  else if (m.status === "streaming" && m.detail) status = m.detail;
  else if (m.status === "stopped") status = "Stopped.";
  view.status.hidden = !status;
  view.status.textContent = status;
  view.status.classList.toggle("waiting", running);
  // Errors in place, with Retry.
  const failed = m.status === "failed" || m.status === "interrupted";
  view.error.hidden = !failed;
  if (failed) {
    view.error.replaceChildren(
      h("span", { text: m.error || "The answer failed." }),
      h("button", { type: "button", class: "retry", disabled: Boolean(state.streamingId), onclick: () => regenerate(m.id) }, "Retry"),
    );
  }
}

function buildToolCard() {
  const name = h("span", { class: "tool-name" });
  const server = h("span", { class: "tool-server" });
  const status = h("span", { class: "tool-status" });
  const duration = h("span", { class: "tool-duration" });
  const summary = h("summary", {}, h("span", { class: "tool-icon", "aria-hidden": "true" }, "⚙"), name, server, status, duration);
  const args = h("pre", { class: "tool-args" });
  const resultLabel = h("h4", {});
  const result = h("pre", { class: "tool-result" });
  const note = h("p", { class: "tool-note" });
  // A call paused for approval: the tool, its server and its full arguments are on the card
  // (opened), and nothing runs until the owner decides.
  const approve = h("button", { type: "button", class: "approve", onclick: () => decide(card, "approve") }, "Approve");
  const deny = h("button", { type: "button", class: "deny", onclick: () => decide(card, "deny") }, "Deny");
  const decision = h("div", { class: "tool-decision", role: "group", "aria-label": "Approve this tool call?" },
    h("span", {}, "Run this tool?"), approve, deny);
  const card = h("details", { class: "tool-call" }, summary,
    h("div", { class: "tool-body" }, decision, h("h4", {}, "Arguments"), args, resultLabel, result, note));
  card.__parts = { name, server, status, duration, args, resultLabel, result, note, decision, approve, deny };
  return card;
}

function decide(card, decision) {
  const call = card.__call;
  if (!call || !state.conversationId) return;
  card.__parts.approve.disabled = card.__parts.deny.disabled = true;
  sendFrame({ type: "decide", conversation: state.conversationId, call_id: call.id, decision, ref: `decide-${call.id}` });
}

function updateToolCard(card, call) {
  const p = card.__parts;
  const wasAwaiting = card.__call && card.__call.status === "awaiting_approval";
  card.__call = call;
  const awaiting = call.status === "awaiting_approval";
  p.decision.hidden = !awaiting;
  if (awaiting && !wasAwaiting) {
    card.open = true;
    p.approve.disabled = p.deny.disabled = false;
  }
  p.name.textContent = call.name;
  p.server.textContent = call.server ? `on ${call.server}` : "";
  const statusText = {
    running: "running…", pending: "waiting…", awaiting_approval: "awaiting approval",
    complete: "done", failed: "failed", cancelled: "cancelled", denied: "denied",
    client: "run by the API client",
  }[call.status] || call.status;
  p.status.textContent = statusText;
  card.dataset.status = call.status;
  p.duration.textContent = formatDuration(call.duration_ms);
  const args = JSON.stringify(call.arguments ?? {}, null, 2);
  if (p.args.textContent !== args) p.args.textContent = args;
  const done = !["running", "pending", "awaiting_approval"].includes(call.status);
  p.resultLabel.textContent = done ? (call.is_error ? "Error" : "Result") : "";
  p.resultLabel.hidden = !done;
  p.result.hidden = !done;
  if (p.result.textContent !== (call.result || "")) p.result.textContent = call.result || "";
  p.result.classList.toggle("is-error", Boolean(call.is_error));
  const notes = [];
  if (call.approval === "approved") notes.push("Approved.");
  if (call.approval === "timed_out") notes.push("No decision in time.");
  if (call.truncated) notes.push("The result was cut to the size limit before the model saw it.");
  p.note.textContent = notes.join(" ");
  p.note.hidden = !notes.length;
}

function lastAssistantId() {
  for (let i = state.order.length - 1; i >= 0; i--) {
    const m = state.messages.get(state.order[i]);
    if (m && m.role === "assistant") return m.id;
  }
  return null;
}

function updateActions(view, m) {
  const nodes = [];
  const running = m.status === "pending" || m.status === "streaming";
  const siblings = state.siblings[String(m.id)] || [];
  if (siblings.length > 1) {
    const i = siblings.indexOf(m.id);
    nodes.push(h("span", { class: "branches", role: "group", "aria-label": "Versions" },
      h("button", { type: "button", class: "icon-button", "aria-label": "Previous version", disabled: i <= 0 || Boolean(state.streamingId), onclick: () => showBranch(siblings[i - 1]) }, "‹"),
      h("span", { class: "branch-count" }, `${i + 1} / ${siblings.length}`),
      h("button", { type: "button", class: "icon-button", "aria-label": "Next version", disabled: i >= siblings.length - 1 || Boolean(state.streamingId), onclick: () => showBranch(siblings[i + 1]) }, "›"),
    ));
  }
  if (m.role === "user") {
    nodes.push(h("button", { type: "button", class: "link", disabled: Boolean(state.streamingId), onclick: () => startEdit(m.id) }, "Edit"));
  } else if (!running) {
    if (m.content) {
      nodes.push(h("button", { type: "button", class: "link copy-answer", "aria-label": "Copy answer", onclick: (e) => copyWithFeedback(e.currentTarget, m.content) }, "Copy"));
    }
    if (m.id === lastAssistantId() && m.status !== "failed" && m.status !== "interrupted") {
      nodes.push(h("button", { type: "button", class: "link", disabled: Boolean(state.streamingId), onclick: () => regenerate(m.id) }, "Regenerate"));
    }
    if (m.model) nodes.push(h("span", { class: "model", title: "Model" }, m.model));
    const usage = usageLine(m);
    if (usage) nodes.push(usage);
  }
  view.actions.replaceChildren(...nodes);
  view.actions.hidden = !nodes.length;
}

async function copyWithFeedback(button, text) {
  const ok = await copyText(text);
  const old = button.textContent;
  button.textContent = ok ? "Copied" : "Copy failed";
  announce(ok ? "Copied to the clipboard." : "Could not copy.");
  setTimeout(() => { button.textContent = old; }, 1500);
}

// Copy buttons of code blocks (added by markdown.js) work through one delegated listener.
transcript.addEventListener("click", (e) => {
  const button = e.target.closest("button.copy-code");
  if (!button) return;
  const code = button.closest(".code-block")?.querySelector("code");
  if (code) copyWithFeedback(button, code.textContent.replace(/\n$/, ""));
});

// Pending (unconfirmed) messages of this conversation, after the transcript.
function renderPending() {
  if (!transcript) return;
  const here = pendingHere();
  const keys = new Set(here.map((f) => f.client_key));
  for (const el of transcript.querySelectorAll(".message.pending")) {
    if (!keys.has(el.dataset.clientKey)) el.remove();
  }
  if (here.length && emptyState.isConnected) emptyState.remove();
  const online = socket && socket.readyState === WebSocket.OPEN;
  for (const frame of here) {
    let el = transcript.querySelector(`.message.pending[data-client-key="${CSS.escape(frame.client_key)}"]`);
    if (!el) {
      el = h("article", { class: "message user pending", dataset: { clientKey: frame.client_key }, "aria-label": "You (not yet sent)" },
        h("div", { class: "bubble", text: frame.text }),
        h("p", { class: "pending-status" }));
      transcript.append(el);
    }
    $(".pending-status", el).textContent = online ? "Sending…" : "Not sent yet: it will be sent when the connection is back.";
  }
}

function removePending(clientKey) {
  if (!clientKey) return;
  const el = transcript.querySelector(`.message.pending[data-client-key="${CSS.escape(clientKey)}"]`);
  if (el) el.remove();
}

// --- usage -------------------------------------------------------------------------------------

const numbers = new Intl.NumberFormat();
let money = null;
try {
  money = new Intl.NumberFormat(undefined, { style: "currency", currency: boot.currency || "USD", minimumFractionDigits: 2, maximumFractionDigits: 6 });
} catch {
  // Not an ISO 4217 code (COST_CURRENCY may be "credits"): the number, then the name.
}

function formatCost(text) {
  const n = Number(text);
  if (money) return money.format(n);
  return `${n.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 6 })} ${boot.currency}`;
}

function usedTokens(m) {
  const u = m.usage || {};
  return (u.input_tokens || 0) + (u.output_tokens || 0);
}

// 950, 3.2k, 32.8k, 128k, 1M: the meter's short form (its title has the exact numbers).
function shortTokens(n) {
  const trim = (v) => (v < 100 ? String(Number(v.toFixed(1))) : String(Math.round(v)));
  if (n >= 1e6) return `${trim(n / 1e6)}M`;
  if (n >= 1e3) return `${trim(n / 1e3)}k`;
  return String(n);
}

// A finished answer's tokens and (when it cost anything) its cost, under it.
function usageLine(m) {
  const used = usedTokens(m);
  if (!used) return null;
  const u = m.usage;
  const cost = Number(u.cost || 0);
  const detail = `${numbers.format(u.input_tokens || 0)} input (${numbers.format(u.cached_tokens || 0)} cached), `
    + `${numbers.format(u.output_tokens || 0)} output${u.reasoning_tokens ? ` (${numbers.format(u.reasoning_tokens)} reasoning)` : ""}`;
  return h("span", { class: "usage", title: detail },
    cost ? `${numbers.format(used)} tokens · ${formatCost(u.cost)}` : `${numbers.format(used)} tokens`);
}

// The context meter: roughly what the next request will carry, the newest answer's input (the
// history it was sent) and output (now part of that history), against the window of the
// conversation's main model. An answer that took tool rounds reports every round's input, so
// the meter then reads high: it warns early rather than late. Hidden until an answer reports.
function updateMeter() {
  let used = 0;
  for (let i = state.order.length - 1; i >= 0 && !used; i--) {
    const m = state.messages.get(state.order[i]);
    if (m && m.role === "assistant") used = usedTokens(m);
  }
  const size = state.contextWindow;
  contextMeter.hidden = !(state.conversationId && size && used);
  if (contextMeter.hidden) return;
  const share = used / size;
  contextText.textContent = `${shortTokens(used)} / ${shortTokens(size)} tokens`;
  contextMeter.title = `${numbers.format(used)} of the model's ${numbers.format(size)} tokens of context (${Math.round(share * 100)} %), as of the last answer`;
  contextMeter.dataset.level = share >= 1 ? "over" : share >= 0.8 ? "high" : "ok";
}

// --- actions -----------------------------------------------------------------------------------

function showComposerError(text) {
  composerError.textContent = text;
  composerError.hidden = !text;
}

function busy() {
  return Boolean(state.streamingId) || pendingHere().length > 0;
}

function updateComposer() {
  const streaming = Boolean(state.streamingId);
  stopButton.hidden = !streaming;
  sendButton.hidden = streaming;
  sendButton.disabled = pendingHere().length > 0;
}

function queueSend(text, { parent } = {}) {
  const key = newKey();
  const frame = { type: "send", conversation: state.conversationId, text, client_key: key, ref: key };
  if (parent !== undefined) frame.parent = parent;
  if (!state.conversationId) {
    const agent = sidebar.selectedAgent();
    if (agent) frame.agent = agent;
  }
  outbox.push(frame);
  saveOutbox();
  renderPending();
  sendFrame(frame);
  updateComposer();
  scrollToEnd(true);
}

composer.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value;
  if (!text.trim()) return;
  if (busy()) {
    showComposerError(state.streamingId ? "An answer is still being written: wait for it, or press Stop." : "Your last message is still being sent.");
    return;
  }
  showComposerError("");
  queueSend(text);
  input.value = "";
  autosize();
});

input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
    e.preventDefault();
    composer.requestSubmit();
  } else if (e.key === "Escape" && state.streamingId) {
    e.preventDefault();
    stop();
  }
});

function autosize() {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, Math.round(window.innerHeight * 0.4))}px`;
}
input.addEventListener("input", () => { autosize(); if (!composerError.hidden) showComposerError(""); });

function stop() {
  if (state.conversationId) sendFrame({ type: "stop", conversation: state.conversationId });
}
stopButton.addEventListener("click", () => { stop(); input.focus(); });

function regenerate(messageId) {
  if (!state.conversationId || state.streamingId) return;
  showComposerError("");
  sendFrame({ type: "regenerate", conversation: state.conversationId, message: messageId, ref: `regenerate-${messageId}` });
}

function showBranch(messageId) {
  if (!state.conversationId) return;
  sendFrame({ type: "watch", conversation: state.conversationId, leaf: messageId });
}

function startEdit(id) {
  const m = state.messages.get(id);
  const view = views.get(id);
  if (!m || !view || view.editing || busy()) return;
  view.editing = true;
  const area = h("textarea", { class: "edit-box", rows: 3, "aria-label": "Edit message" });
  area.value = m.content;
  const save = () => {
    const text = area.value;
    if (!text.trim() || busy()) return;
    view.editing = false;
    queueSend(text, { parent: m.parent ?? null });
    renderMessage(id);
  };
  const cancel = () => { view.editing = false; view.text.classList.remove("editing"); renderMessage(id); };
  area.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); save(); }
    if (e.key === "Escape") { e.preventDefault(); cancel(); }
  });
  view.text.classList.add("editing");
  view.text.replaceChildren(area, h("div", { class: "edit-actions" },
    h("button", { type: "button", class: "primary", onclick: save }, "Save and send"),
    h("button", { type: "button", onclick: cancel }, "Cancel")));
  area.focus();
}

// --- navigation ----------------------------------------------------------------------------------

function openConversation(id, { push = true } = {}) {
  if (push) history.pushState({ conversation: id }, "", id ? `/c/${id}/` : "/");
  state.conversationId = id;
  state.streamingId = null;
  state.contextWindow = null;
  showComposerError("");
  sidebar.setCurrent(id);
  if (!id) {
    state.loading = false;
    setTitle("");
    showEmpty();
    renderPending();
    updateComposer();
    updateMeter();
    return;
  }
  const item = sidebar.item(id);
  setTitle(item ? item.title : "");
  clearTranscript();
  state.loading = true;
  transcript.append(h("p", { class: "notice loading" }, "Loading…"));
  sendFrame({ type: "watch", conversation: id });
  renderPending();
  updateComposer();
  updateMeter();
}

window.addEventListener("popstate", () => {
  const m = /^\/c\/([0-9a-f-]{36})\/$/.exec(location.pathname);
  const id = m ? m[1] : null;
  if (id !== state.conversationId) openConversation(id, { push: false }); // not a #fragment
});

// The skip link focuses the box without touching the address.
$(".skip-link").addEventListener("click", (e) => { e.preventDefault(); input.focus(); });

// --- sidebar -------------------------------------------------------------------------------------

const sidebar = (() => {
  const nav = $("#sidebar");
  const list = $("#conversation-list");
  const status = $("#list-status");
  const search = $("#search");
  const toggle = $("#sidebar-toggle");
  const scrim = $("#scrim");
  const agentChoice = $("#agent-choice");
  const agentSelect = $("#agent");
  let items = boot.sidebar.items.slice();
  let nextCursor = boot.sidebar.next_cursor;
  let query = "";
  let loadingMore = false;
  let generation = 0;

  $("#who").textContent = boot.user;

  // Agents: a choice only when there is one to make.
  const agents = boot.agents || [];
  for (const agent of agents) {
    agentSelect.append(h("option", { value: String(agent.id), title: agent.description || "" }, agent.name));
  }
  agentChoice.hidden = agents.length < 2;
  const describeAgent = () => {
    const agent = agents.find((a) => String(a.id) === agentSelect.value);
    $("#empty-agent").textContent = agent ? `Agent: ${agent.name}${agent.description ? ` — ${agent.description}` : ""}` : "";
  };
  agentSelect.addEventListener("change", describeAgent);
  describeAgent();

  function label(item) {
    return item.title || item.preview || "New conversation";
  }

  function row(item) {
    const link = h("a", { href: `/c/${item.id}/`, class: "conversation-link", dataset: { id: item.id } },
      h("span", { class: "title", text: label(item) }),
      item.snippet ? h("span", { class: "snippet", text: item.snippet }) : null);
    if (item.id === state.conversationId) link.setAttribute("aria-current", "page");
    const name = label(item);
    const li = h("li", { dataset: { id: item.id } }, link,
      h("span", { class: "row-actions" },
        h("button", { type: "button", class: "icon-button rename", "aria-label": `Rename “${name}”`, title: "Rename", onclick: () => startRename(li, item) }, "✎"),
        h("button", { type: "button", class: "icon-button delete", "aria-label": `Delete “${name}”`, title: "Delete", onclick: () => confirmDelete(li, item) }, "×")));
    return li;
  }

  function render() {
    list.replaceChildren(...items.map(row));
    if (!items.length) status.textContent = query ? "No conversation matches." : "No conversations yet.";
    else status.textContent = nextCursor ? "" : (items.length > 20 ? "The end." : "");
  }

  async function fetchPage(cursor) {
    const params = new URLSearchParams();
    if (query) params.set("q", query);
    if (cursor) params.set("cursor", cursor);
    const response = await fetch(`/api/conversations/?${params}`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`The server answered ${response.status}.`);
    return response.json();
  }

  async function reload() {
    const mine = ++generation;
    try {
      const page = await fetchPage(null);
      if (mine !== generation) return;
      if (items.length > page.items.length && nextCursor !== null && !query) {
        // Keep what was loaded further down; the first page replaces the top.
        const ids = new Set(page.items.map((i) => i.id));
        const oldest = page.items.length ? page.items[page.items.length - 1].updated_at : null;
        const rest = items.filter((i) => !ids.has(i.id) && oldest && i.updated_at < oldest);
        items = page.items.concat(rest);
        if (!page.next_cursor) nextCursor = null;
      } else {
        items = page.items;
        nextCursor = page.next_cursor;
      }
      render();
    } catch (err) {
      status.textContent = `Could not load the conversations: ${err.message}`;
    }
  }

  async function more() {
    if (!nextCursor || loadingMore) return;
    loadingMore = true;
    const mine = generation;
    status.textContent = "Loading…";
    try {
      const page = await fetchPage(nextCursor);
      if (mine !== generation) return;
      const ids = new Set(items.map((i) => i.id));
      items = items.concat(page.items.filter((i) => !ids.has(i.id)));
      nextCursor = page.next_cursor;
      render();
    } catch (err) {
      status.textContent = `Could not load more: ${err.message}`;
    } finally {
      loadingMore = false;
    }
  }

  // Infinite scroll: the status line under the list is the sentinel.
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) more();
  }, { root: nav, rootMargin: "200px" }).observe(status);

  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      query = search.value.trim();
      nextCursor = null;
      reload();
    }, 250);
  });
  search.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && search.value) {
      e.preventDefault();
      search.value = "";
      query = "";
      reload();
    }
  });

  list.addEventListener("click", (e) => {
    const link = e.target.closest("a.conversation-link");
    if (!link || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    close();
    if (link.dataset.id !== state.conversationId) openConversation(link.dataset.id);
    input.focus();
  });

  function startRename(li, item) {
    const field = h("input", { type: "text", class: "rename-input", value: item.title || label(item), "aria-label": "New title", maxlength: "200" });
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const title = field.value.trim();
      if (save && title && title !== item.title) {
        try {
          const data = await postJSON(`/api/conversations/${item.id}/rename/`, { title });
          item.title = data.conversation.title;
          if (item.id === state.conversationId) setTitle(item.title);
        } catch (err) {
          status.textContent = `Could not rename: ${err.message}`;
        }
      }
      render();
      list.querySelector(`li[data-id="${item.id}"] .rename`)?.focus();
    };
    field.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); finish(true); }
      if (e.key === "Escape") { e.preventDefault(); finish(false); }
    });
    field.addEventListener("blur", () => finish(true));
    li.replaceChildren(field);
    field.focus();
    field.select();
  }

  function confirmDelete(li, item) {
    const yes = h("button", { type: "button", class: "danger", onclick: async () => {
      try {
        await postJSON(`/api/conversations/${item.id}/delete/`);
        items = items.filter((i) => i.id !== item.id);
        render();
        if (item.id === state.conversationId) openConversation(null);
        announce("Conversation deleted.");
      } catch (err) {
        status.textContent = `Could not delete: ${err.message}`;
        render();
      }
    } }, "Delete");
    const no = h("button", { type: "button", onclick: () => { render(); list.querySelector(`li[data-id="${item.id}"] .delete`)?.focus(); } }, "Cancel");
    li.replaceChildren(h("div", { class: "confirm", role: "group", "aria-label": "Delete this conversation?" },
      h("span", { text: `Delete “${label(item)}”?` }), yes, no));
    no.focus();
  }

  // Phone width: the list slides over the page.
  function open() {
    document.body.classList.add("sidebar-open");
    toggle.setAttribute("aria-expanded", "true");
    toggle.setAttribute("aria-label", "Hide conversations");
    scrim.hidden = false;
    $("#new-chat").focus();
  }
  function close() {
    if (!document.body.classList.contains("sidebar-open")) return;
    document.body.classList.remove("sidebar-open");
    toggle.setAttribute("aria-expanded", "false");
    toggle.setAttribute("aria-label", "Show conversations");
    scrim.hidden = true;
  }
  toggle.addEventListener("click", () => (document.body.classList.contains("sidebar-open") ? (close(), toggle.focus()) : open()));
  scrim.addEventListener("click", close);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && document.body.classList.contains("sidebar-open")) { close(); toggle.focus(); }
  });

  $("#new-chat").addEventListener("click", () => {
    close();
    openConversation(null);
    input.focus();
  });

  render();

  return {
    item: (id) => items.find((i) => i.id === id),
    selectedAgent: () => (agents.length ? Number(agentSelect.value) : null),
    setCurrent(id) {
      for (const link of list.querySelectorAll("a.conversation-link")) {
        if (link.dataset.id === id) link.setAttribute("aria-current", "page");
        else link.removeAttribute("aria-current");
      }
    },
    async changed(id) {
      await reload();
      if (id && id === state.conversationId) {
        const item = items.find((i) => i.id === id);
        if (item && item.title !== state.title) setTitle(item.title);
      }
    },
  };
})();

// --- start ---------------------------------------------------------------------------------------

setTitle(state.title);
if (state.conversationId) {
  clearTranscript();
  state.loading = true;
  transcript.append(h("p", { class: "notice loading" }, "Loading…"));
} else {
  showEmpty();
}
renderPending();
updateComposer();
connect();
// On a wide screen the message box is where the user wants to be.
if (window.matchMedia("(min-width: 801px)").matches) input.focus();
