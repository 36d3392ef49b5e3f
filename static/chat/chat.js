// The chat page's client: one WebSocket, the transcript, the composer.
// Model and tool text is untrusted: this plain version renders it with textContent only.

const $ = (sel) => document.querySelector(sel);
const transcript = $("#transcript");
const input = $("#message");
const sendButton = $("#send");
const stopButton = $("#stop");
const connection = $("#connection");

let conversationId = JSON.parse($("#conversation-id").textContent) || null;
let socket = null;
let retryDelay = 500;
const messages = new Map(); // message id -> {el, data}
let streamingId = null;
// Messages typed but not yet confirmed by the server, resent after a reconnect.
const outbox = [];

function setConnection(text, state) {
  connection.textContent = text;
  connection.dataset.state = state;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/chat/`);
  setConnection("Connecting…", "connecting");
  socket.addEventListener("open", () => {
    retryDelay = 500;
    setConnection("Connected", "open");
    if (conversationId) send({ type: "watch", conversation: conversationId });
    for (const frame of outbox) send(frame);
  });
  socket.addEventListener("close", () => {
    setConnection("Disconnected. Reconnecting…", "closed");
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000);
  });
  socket.addEventListener("message", (e) => handle(JSON.parse(e.data)));
}

function send(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(frame));
}

function renderMessage(data) {
  let entry = messages.get(data.id);
  if (!entry) {
    const el = document.createElement("article");
    el.className = `message ${data.role}`;
    el.dataset.id = data.id;
    const reasoning = document.createElement("details");
    reasoning.className = "reasoning";
    reasoning.hidden = true;
    const summary = document.createElement("summary");
    summary.textContent = "Reasoning";
    const reasoningBody = document.createElement("div");
    reasoning.append(summary, reasoningBody);
    const body = document.createElement("div");
    body.className = "content";
    const tools = document.createElement("div");
    tools.className = "tools";
    const status = document.createElement("p");
    status.className = "status";
    el.append(reasoning, tools, body, status);
    transcript.append(el);
    entry = { el, data: { ...data }, body, reasoning, reasoningBody, tools, status };
    messages.set(data.id, entry);
  }
  entry.data = { ...entry.data, ...data };
  const d = entry.data;
  entry.body.textContent = d.content || "";
  entry.reasoningBody.textContent = d.reasoning || "";
  entry.reasoning.hidden = !d.reasoning;
  entry.tools.replaceChildren(...(d.tool_calls || []).map(toolCard));
  entry.el.dataset.status = d.status;
  entry.status.textContent =
    d.status === "failed" ? `Failed: ${d.error}` :
    d.status === "stopped" ? "Stopped." :
    d.status === "interrupted" ? d.error :
    d.status === "pending" ? (d.detail || "Waiting for the model…") : "";
  return entry;
}

function toolCard(call) {
  const card = document.createElement("details");
  card.className = "tool-call";
  const summary = document.createElement("summary");
  summary.textContent = `${call.name} · ${call.status}`;
  const body = document.createElement("pre");
  body.textContent = `${JSON.stringify(call.arguments, null, 2)}\n\n${call.result || ""}`;
  card.append(summary, body);
  return card;
}

function setStreaming(id) {
  streamingId = id;
  stopButton.hidden = !id;
  sendButton.disabled = !!id;
}

function handle(frame) {
  switch (frame.type) {
    case "conversation":
      transcript.replaceChildren();
      messages.clear();
      setStreaming(null);
      for (const m of frame.messages) {
        renderMessage(m);
        if (m.status === "pending" || m.status === "streaming") setStreaming(m.id);
      }
      break;
    case "ack": {
      const i = outbox.findIndex((f) => f.client_key === frame.client_key);
      if (i >= 0) outbox.splice(i, 1);
      if (!conversationId) {
        conversationId = frame.conversation.id;
        history.pushState({}, "", `/c/${conversationId}/`);
      }
      renderMessage(frame.user_message);
      renderMessage(frame.assistant_message);
      setStreaming(frame.assistant_message.id);
      break;
    }
    case "turn": {
      const ev = frame.event;
      const entry = messages.get(frame.message) || renderMessage({ id: frame.message, role: "assistant", content: "", status: "pending" });
      const d = entry.data;
      if (ev.kind === "text") renderMessage({ id: d.id, content: (d.content || "") + ev.text, status: "streaming" });
      else if (ev.kind === "reasoning") renderMessage({ id: d.id, reasoning: (d.reasoning || "") + ev.text, status: "streaming" });
      else if (ev.kind === "started") { renderMessage(ev.message); setStreaming(d.id); }
      else if (ev.kind === "status") renderMessage({ id: d.id, detail: ev.detail });
      else if (ev.kind === "tool_call_started" || ev.kind === "tool_call_finished") {
        const calls = (d.tool_calls || []).filter((c) => c.id !== ev.call.id);
        renderMessage({ id: d.id, tool_calls: [...calls, ev.call] });
      } else if (ev.kind === "finished") {
        renderMessage(ev.message);
        setStreaming(null);
      }
      break;
    }
    case "error":
      connection.textContent = frame.message;
      connection.dataset.state = "error";
      break;
  }
}

$("#composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value;
  if (!text.trim() || streamingId) return;
  const frame = { type: "send", conversation: conversationId, text, client_key: crypto.randomUUID() };
  outbox.push(frame);
  send(frame);
  input.value = "";
});

input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("#composer").requestSubmit();
  }
});

stopButton.addEventListener("click", () => send({ type: "stop", conversation: conversationId }));
$("#new-chat").addEventListener("click", () => { location.href = "/"; });

connect();
