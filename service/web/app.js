// Quelle's web page: plain JavaScript, no build step, nothing fetched from anywhere but this service.
"use strict";

const $ = (id) => document.getElementById(id);
const tab = window.sessionStorage; // the key and the conversation live as long as this browser tab
const KEY = "quelle.token", TURNS = "quelle.turns", SESSION = "quelle.session", PKCE = "quelle.pkce";

let config = { auth: "keys", sso: null, agent: false };
let me = null;
let opener = null; // the element that opened the source view, focused again when it closes
let docsOffset = 0;
const DOCS_PAGE = 20;

class ApiError extends Error {
  constructor(status, text) { super(text); this.status = status; }
}

// The service's own words for what went wrong: {error, detail} (or OpenAI's {error: {message}}).
function words(body, status) {
  if (body && typeof body.error === "object" && body.error && body.error.message) return body.error.message;
  if (body && typeof body.error === "string") {
    return typeof body.detail === "string" && !body.error.includes(body.detail) ? `${body.error}: ${body.detail}`
      : body.error;
  }
  return `the service answered ${status}`;
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const token = tab.getItem(KEY);
  if (token) headers.set("Authorization", `Bearer ${token}`);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw new ApiError(0, `cannot reach the service: ${err.message}`);
  }
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, words(body, response.status));
  }
  return response;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

// lang="ja" / "zh" on text that is mostly Japanese or Chinese, so the right glyphs are used
function langOf(text) {
  const kana = (text.match(/[\u3040-\u30ff]/g) || []).length;
  const han = (text.match(/[\u3400-\u9fff]/g) || []).length;
  if (kana > 0 && kana + han > text.length * 0.2) return "ja";
  if (han > text.length * 0.2) return "zh";
  return null;
}

// ---------- signing in ----------

function b64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function startSso() {
  const sso = config.sso;
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  tab.setItem(PKCE, JSON.stringify({ verifier, state }));
  const query = new URLSearchParams({
    response_type: "code", client_id: sso.client_id, redirect_uri: `${location.origin}/`, scope: sso.scope,
    state, code_challenge: b64url(new Uint8Array(digest)), code_challenge_method: "S256",
  });
  location.assign(`${sso.authorization_endpoint}?${query}`);
}

// Back from the identity provider with ?code=&state=: trade the code for a token (PKCE), then tidy the address.
async function finishSso() {
  const params = new URLSearchParams(location.search);
  const code = params.get("code"), state = params.get("state");
  if (!code || !config.sso) return;
  const saved = JSON.parse(tab.getItem(PKCE) || "null");
  tab.removeItem(PKCE);
  history.replaceState(null, "", "/");
  if (!saved || saved.state !== state) throw new ApiError(0, "sign-in failed: the answer from the identity provider does not match this tab's request; try again");
  let response;
  try {
    response = await fetch(config.sso.token_endpoint, {
      method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code", code, redirect_uri: `${location.origin}/`, client_id: config.sso.client_id,
        code_verifier: saved.verifier,
      }),
    });
  } catch (err) {
    throw new ApiError(0, `sign-in failed: cannot reach the identity provider: ${err.message}`);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, `sign-in failed: ${body.error_description || body.error || response.status}`);
  const token = body.access_token || body.id_token;
  if (!token) throw new ApiError(0, "sign-in failed: the identity provider sent no token");
  tab.setItem(KEY, token);
}

function showSignIn(message) {
  $("sign-in").hidden = false;
  $("chat").hidden = true;
  $("admin").hidden = true;
  $("views").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("sign-in-error").textContent = message || "";
  const sso = Boolean(config.sso);
  $("sso").hidden = !sso;
  $("sso-or").hidden = !sso;
  $("api-key").focus();
}

async function signedIn() {
  const response = await api("/v1/me");
  me = await response.json();
  $("sign-in").hidden = true;
  $("views").hidden = false;
  $("show-admin").hidden = !me.admin;
  $("sign-out").hidden = config.auth === "off";
  $("who").textContent = config.auth === "off" ? "Local use (no sign-in)" : `Signed in as ${me.name}`;
  $("mode-label").hidden = !config.agent;
  show("chat");
  restoreConversation();
}

async function trySignIn() {
  try {
    await signedIn();
    return true;
  } catch (err) {
    if (err.status === 401) {
      tab.removeItem(KEY);
      showSignIn(err.message);
      return false;
    }
    throw err;
  }
}

function signOut() {
  tab.removeItem(KEY);
  clearConversation();
  me = null;
  showSignIn("");
}

function show(view) {
  const admin = view === "admin";
  $("chat").hidden = admin;
  $("admin").hidden = !admin;
  $("show-chat").setAttribute("aria-pressed", String(!admin));
  $("show-admin").setAttribute("aria-pressed", String(admin));
  if (admin) loadAdmin();
  else $("question").focus();
}

// ---------- the conversation ----------

function turns() { return JSON.parse(tab.getItem(TURNS) || "[]"); }

function clearConversation() {
  tab.removeItem(TURNS);
  tab.removeItem(SESSION);
  $("log").replaceChildren();
  showSources(null);
  $("ask-error").textContent = "";
}

function restoreConversation() {
  $("log").replaceChildren();
  for (const t of turns()) {
    const node = turnNode(t.question);
    $("log").append(node);
    finishTurn(node, t);
  }
  const all = turns();
  showSources(all.length ? all[all.length - 1] : null);
}

function turnNode(question) {
  const n = $("log").children.length + 1;
  const lang = langOf(question);
  return el("li", { class: "turn", "aria-label": `Question ${n}` },
    el("p", { class: "q", lang, text: question }),
    el("p", { class: "a" }));
}

const MARKER = /\[(\d+(?:\s*[,，]\s*\d+)*)\]/g;

// The checked answer with each [n] a link to its source.
function renderAnswer(node, t) {
  const a = node.querySelector(".a");
  a.replaceChildren();
  a.lang = langOf(t.answer) || "";
  const byN = new Map((t.citations || []).map((c) => [c.n, c]));
  const uses = new Map(); // the k-th [n] in the answer stands for the citation's k-th quote
  let last = 0;
  for (const m of t.answer.matchAll(MARKER)) {
    a.append(t.answer.slice(last, m.index));
    for (const part of m[1].split(/[,，]/)) {
      const n = Number(part.trim());
      const c = byN.get(n);
      if (!c) { a.append(`[${n}]`); continue; }
      const where = c.page ? `, page ${c.page}` : "";
      const k = uses.get(n) || 0;
      uses.set(n, k + 1);
      const quote = c.quotes && c.quotes.length > 1 && k < c.quotes.length ? c.quotes[k] : null;
      a.append(el("a", {
        class: "cite", href: `#source-${n}`, "data-n": String(n), "aria-label": `source ${n}: ${c.title}${where}`,
        text: `[${n}]`,
        onclick: (e) => {
          e.preventDefault();
          showSources(t, n);
          openPreview(quote ? { ...c, quotes: [quote] } : c, e.currentTarget);
        },
      }));
    }
    last = m.index + m[0].length;
  }
  a.append(t.answer.slice(last));
}

function finishTurn(node, t) {
  node.removeAttribute("aria-busy");
  if (t.abstained) {
    node.classList.add("abstained");
    node.querySelector(".q").after(el("span", { class: "badge", text: "Not in the documents" }));
  }
  renderAnswer(node, t);
  if (t.unsupported && t.unsupported.length) {
    node.append(el("p", { class: "meta", text: `${t.unsupported.length} sentence(s) of the model's answer were left out: no source supports them.` }));
  }
  if (t.error) node.append(el("p", { class: "error", role: "alert", text: t.error }));
  if (t.steps && t.steps.length) node.append(stepsNode(t.steps, t.fallback));
}

function stepsNode(steps, fallback) {
  const list = el("ol");
  for (const s of steps) list.append(stepItem(s));
  const details = el("details", { class: "steps" },
    el("summary", { text: `Agent steps (${steps.length})${fallback ? `, then a plain answer: ${fallback}` : ""}` }), list);
  return details;
}

function stepItem(s) {
  const head = [s.thought, s.tool ? `${s.tool}(${typeof s.input === "string" ? s.input : JSON.stringify(s.input)})` : ""]
    .filter(Boolean).join(" → ");
  return el("li", {}, el("div", { text: head }), s.observation ? el("div", { class: "obs", text: s.observation }) : null,
    s.note ? el("div", { class: "meta", text: s.note }) : null);
}

// One Server-Sent Events stream from POST /v1/ask, event by event.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const raw = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message", data = "";
      for (const line of raw.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      yield { event, data: data ? JSON.parse(data) : {} };
    }
  }
}

function nearBottom(box) { return box.scrollHeight - box.scrollTop - box.clientHeight < 40; }

async function ask(question) {
  $("ask-error").textContent = "";
  const node = turnNode(question);
  node.setAttribute("aria-busy", "true");
  $("log").append(node);
  const box = $("log");
  box.scrollTop = box.scrollHeight;
  const answerText = node.querySelector(".a");
  const t = { question, answer: "", citations: [], abstained: false, steps: [] };
  let steps = null;
  $("send").disabled = true;
  try {
    const body = { question, stream: true, mode: $("agent-mode").checked ? "agent" : "single" };
    const session = tab.getItem(SESSION);
    if (session) body.session_id = session;
    const response = await api("/v1/ask", {
      method: "POST", headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
    });
    for await (const { event, data } of events(response)) {
      const follow = nearBottom(box);
      if (event === "step") {
        t.steps.push(data);
        if (!steps) { steps = stepsNode([], null); node.append(steps); }
        steps.querySelector("ol").append(stepItem(data));
        steps.querySelector("summary").textContent = `Agent steps (${t.steps.length})`;
      } else if (event === "delta") {
        answerText.append(data.text);
      } else if (event === "citations") {
        Object.assign(t, { answer: data.answer, citations: data.citations, abstained: data.abstained,
          unsupported: data.unsupported, fallback: data.fallback, steps: data.steps || t.steps });
      } else if (event === "done") {
        tab.setItem(SESSION, data.session_id);
      } else if (event === "error") {
        t.error = words(data, 503);
      }
      if (follow) box.scrollTop = box.scrollHeight;
    }
  } catch (err) {
    t.error = err.message;
    if (err.status === 401) { signOut(); $("sign-in-error").textContent = err.message; return; }
  } finally {
    $("send").disabled = false;
  }
  if (steps) steps.remove();
  if (t.error && !t.answer) $("ask-error").textContent = t.error;
  finishTurn(node, t);
  const all = turns();
  all.push(t);
  tab.setItem(TURNS, JSON.stringify(all));
  showSources(t);
}

// ---------- sources and the page view ----------

function showSources(t, current) {
  const list = $("sources");
  list.replaceChildren();
  const cited = t ? t.citations || [] : [];
  $("sources-empty").hidden = cited.length > 0;
  if (t && t.abstained) $("sources-empty").textContent = "Not in the documents: no source answers this question.";
  else $("sources-empty").textContent = "The sources of the latest answer appear here.";
  if (t && t.abstained) $("sources-empty").hidden = false;
  for (const c of cited) {
    const open = el("button", { type: "button", class: "quiet", text: c.page ? `Show page ${c.page}` : "Show in the document",
      "aria-label": `Show source ${c.n} in ${c.title}`, onclick: (e) => openPreview(c, e.currentTarget) });
    const quotes = (c.quotes && c.quotes.length ? c.quotes : [c.quote]);
    list.append(el("li", { id: `source-${c.n}`, value: String(c.n), class: c.n === current ? "current" : null },
      el("div", {}, el("span", { class: "title", text: c.title }), c.page ? `, page ${c.page}` : ""),
      ...quotes.map((q) => el("blockquote", { lang: langOf(q), text: q })),
      c.supported ? null : el("div", { class: "unsupported", text: "This source does not support the sentence that cites it." }),
      open));
  }
}

// The letters and digits of a text, folded, with where each one stands: a quote is found whatever the spacing.
function folded(text) {
  let out = "";
  const where = [];
  for (let i = 0; i < text.length; i++) {
    for (const ch of text[i].normalize("NFKC").toLowerCase()) {
      if (/[\p{L}\p{N}]/u.test(ch)) { out += ch; where.push(i); }
    }
  }
  return [out, where];
}

function findQuote(text, quote) {
  const [hay, where] = folded(text);
  const [needle] = folded(quote);
  if (!needle) return null;
  const at = hay.indexOf(needle);
  if (at < 0) return null;
  return [where[at], where[at + needle.length - 1] + 1];
}

function markedText(text, spans) {
  const pre = el("pre", { lang: langOf(text) });
  spans = spans.filter(Boolean).sort((a, b) => a[0] - b[0]);
  let last = 0;
  for (const [s, e] of spans) {
    if (s < last) continue;
    pre.append(text.slice(last, s), el("mark", { text: text.slice(s, e) }));
    last = e;
  }
  pre.append(text.slice(last));
  return pre;
}

let shownImage = null;

async function openPreview(c, from) {
  opener = from || null;
  const dialog = $("preview");
  $("preview-title").textContent = `${c.title || "Source"}${c.page ? `, page ${c.page}` : ""}`;
  $("preview-note").textContent = "Loading…";
  const body = $("preview-body");
  body.replaceChildren();
  if (shownImage) { URL.revokeObjectURL(shownImage); shownImage = null; }
  if (!dialog.open) dialog.showModal();
  $("preview-close").focus();
  const quotes = (c.quotes && c.quotes.length ? c.quotes : [c.quote]).filter(Boolean);
  try {
    if (c.page) {
      const query = new URLSearchParams({ width: "1000" });
      let room = 12000; // the quotes ride in the address: keep it well under the service's header limit
      for (const q of quotes.slice(0, 8)) {
        const cut = q.slice(0, 2000);
        room -= encodeURIComponent(cut).length;
        if (room < 0) break;
        query.append("highlight", cut);
      }
      try {
        const response = await api(`/v1/documents/${encodeURIComponent(c.document_id)}/pages/${c.page}?${query}`);
        const found = Number(response.headers.get("X-Quelle-Highlights") || "0");
        shownImage = URL.createObjectURL(await response.blob());
        body.append(el("img", { src: shownImage, id: "preview-image",
          alt: `Page ${c.page} of ${c.title}${found ? ", the quoted passage highlighted" : ""}` }));
        $("preview-note").textContent = found ? "The quoted passage is highlighted on the page."
          : "The quoted words could not be located on this page's image (a scanned page?); the quote is below.";
        body.append(...quotes.map((q) => el("blockquote", { lang: langOf(q), text: q })));
        return;
      } catch (err) {
        if (err.status !== 404 || !/no page images/.test(err.message)) throw err;
      }
    }
    const response = await api(`/v1/documents/${encodeURIComponent(c.document_id)}/section?chunk=${encodeURIComponent(c.chunk_id)}`);
    const s = await response.json();
    if (!c.title) $("preview-title").textContent = s.title;
    const spans = quotes.map((q) => findQuote(s.text, q)).filter(Boolean);
    body.append(el("p", { class: "help", text: s.heading_path.join(" › ") }),
      markedText(s.text, spans.length ? spans : [[s.start, s.end]]));
    $("preview-note").textContent = spans.length ? "The quoted passage is marked in its section."
      : "The cited passage is marked in its section.";
  } catch (err) {
    $("preview-note").textContent = "";
    body.append(el("p", { class: "error", role: "alert", text: err.message }));
  }
}

// A link from a chat client's citation (?doc=&chunk=&page=&quote=) opens that source once signed in.
async function openFromAddress() {
  const params = new URLSearchParams(location.search);
  const doc = params.get("doc");
  if (!doc) return;
  history.replaceState(null, "", "/");
  let title = "";
  try { title = (await (await api(`/v1/documents/${encodeURIComponent(doc)}`)).json()).title; } catch (_) { /* shown below */ }
  const page = params.get("page");
  await openPreview({ document_id: doc, chunk_id: params.get("chunk") || "", page: page ? Number(page) : null,
    quote: params.get("quote") || "", title }, $("question"));
}

// ---------- administrators: documents and the last ingestion ----------

function aclList(text) { return text.split(",").map((s) => s.trim()).filter(Boolean); }

async function loadAdmin() {
  $("admin-error").textContent = "";
  await Promise.all([loadDocs(), loadReport()]);
}

async function loadDocs() {
  try {
    const got = await (await api(`/v1/documents?offset=${docsOffset}&limit=${DOCS_PAGE}`)).json();
    const rows = got.documents.map((d) => {
      const acl = el("input", { type: "text", value: (d.acl || []).join(", "), "aria-label": `Who may read ${d.title}` });
      const save = el("button", { type: "button", text: "Save", "aria-label": `Save who may read ${d.title}`,
        onclick: () => setAcl(d, acl.value) });
      const remove = el("button", { type: "button", class: "danger", text: "Delete", "aria-label": `Delete ${d.title}`,
        onclick: () => removeDoc(d) });
      return el("tr", { "data-id": d.id },
        el("td", {}, el("span", { lang: langOf(d.title), text: d.title }), el("div", { class: "help", text: d.source })),
        el("td", { text: d.kind }), el("td", { text: d.pages ? String(d.pages) : "" }),
        el("td", {}, el("div", { class: "acl" }, acl, save)), el("td", {}, remove));
    });
    $("documents").tBodies[0].replaceChildren(...rows);
    const end = Math.min(got.total, docsOffset + got.documents.length);
    $("docs-range").textContent = got.total ? `${docsOffset + 1}–${end} of ${got.total}` : "No documents yet";
    $("docs-prev").disabled = docsOffset === 0;
    $("docs-next").disabled = end >= got.total;
  } catch (err) {
    $("admin-error").textContent = err.message;
  }
}

async function loadReport() {
  try {
    const r = await (await api("/v1/ingest/report")).json();
    const failures = (r.failures || []).map((f) => `  ${f.path}: ${f.reason}`).join("\n");
    $("ingest-report").textContent = `Finished ${r.finished} (${(r.paths || []).join(", ")})\n${r.summary}` +
      (failures ? `\nFailed:\n${failures}` : "");
  } catch (err) {
    $("ingest-report").textContent = err.status === 404 ? "No ingestion report yet." : err.message;
  }
}

async function setAcl(d, text) {
  $("admin-error").textContent = "";
  try {
    await api(`/v1/documents/${encodeURIComponent(d.id)}/acl`, {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ acl: aclList(text) }),
    });
    $("admin-status").textContent = `Saved who may read ${d.title}.`;
    await loadDocs();
  } catch (err) {
    $("admin-error").textContent = err.message;
  }
}

async function removeDoc(d) {
  if (!window.confirm(`Delete ${d.title} from the index?`)) return;
  $("admin-error").textContent = "";
  try {
    await api(`/v1/documents/${encodeURIComponent(d.id)}`, { method: "DELETE" });
    $("admin-status").textContent = `Deleted ${d.title}.`;
    await loadDocs();
  } catch (err) {
    $("admin-error").textContent = err.message;
  }
}

async function upload(form) {
  $("admin-error").textContent = "";
  $("admin-status").textContent = "Uploading…";
  const data = new FormData();
  data.append("file", $("upload-file").files[0]);
  if ($("upload-acl").value.trim()) data.append("acl", aclList($("upload-acl").value).join(","));
  try {
    const r = await (await api("/v1/documents", { method: "POST", body: data })).json();
    const title = r.document ? r.document.title : $("upload-file").files[0].name;
    $("admin-status").textContent = `Uploaded ${title}: ${r.status}, ${r.chunks_written} chunks.` +
      (r.warnings.length ? ` Warnings: ${r.warnings.join("; ")}` : "");
    form.reset();
    await loadDocs();
  } catch (err) {
    $("admin-status").textContent = "";
    $("admin-error").textContent = err.message;
  }
}

// ---------- wiring ----------

function wire() {
  $("key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    tab.setItem(KEY, $("api-key").value.trim());
    $("api-key").value = "";
    try {
      await signedIn();
      await openFromAddress();
    } catch (err) {
      tab.removeItem(KEY);
      showSignIn(err.message);
    }
  });
  $("sso").addEventListener("click", () => startSso().catch((err) => { $("sign-in-error").textContent = err.message; }));
  $("sign-out").addEventListener("click", signOut);
  $("show-chat").addEventListener("click", () => show("chat"));
  $("show-admin").addEventListener("click", () => show("admin"));
  $("new-conversation").addEventListener("click", () => { clearConversation(); $("question").focus(); });
  $("ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("question").value.trim();
    if (!q || $("send").disabled) return;
    $("question").value = "";
    ask(q);
  });
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { // not while an IME composes Japanese or Chinese
      e.preventDefault();
      $("ask-form").requestSubmit();
    }
  });
  $("preview-close").addEventListener("click", () => $("preview").close());
  $("preview").addEventListener("close", () => { if (opener && opener.isConnected) opener.focus(); });
  $("upload-form").addEventListener("submit", (e) => { e.preventDefault(); upload(e.currentTarget); });
  $("docs-prev").addEventListener("click", () => { docsOffset = Math.max(0, docsOffset - DOCS_PAGE); loadDocs(); });
  $("docs-next").addEventListener("click", () => { docsOffset += DOCS_PAGE; loadDocs(); });
}

async function start() {
  wire();
  try {
    config = await (await fetch("/client-config")).json();
    await finishSso();
  } catch (err) {
    showSignIn(err.message);
    return;
  }
  if (config.auth === "keys" && !tab.getItem(KEY)) { showSignIn(""); return; }
  try {
    if (await trySignIn()) await openFromAddress();
  } catch (err) {
    showSignIn(err.message);
  }
}

document.addEventListener("DOMContentLoaded", start);
