// The kefu console: one page, no build step, no third-party code. It calls the same /v1 API as
// every other client, signed in with a session cookie; every change carries the session's CSRF
// token. Text from the server is always inserted as text (textContent), never as markup; the one
// exception is the card preview, which the server renders from Markdown with raw HTML escaped.
"use strict";

const state = { session: null, lang: "en", strings: {}, route: [] };

// ---------------------------------------------------------------- text

function t(key, vars) {
  const table = state.strings[state.lang] || {};
  let s = table[key] ?? (state.strings.en || {})[key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace(`{${k}}`, String(v));
  return s;
}

// A value of one of the server's vocabularies (a status, a reason), in the interface's language.
function term(kind, value) {
  if (value === null || value === undefined || value === "") return "";
  const key = `${kind}.${value}`;
  const table = state.strings[state.lang] || {};
  return table[key] ?? value;
}

function setLang(lang) {
  state.lang = lang === "zh" ? "zh" : "en";
  localStorage.setItem("kefu.lang", state.lang);
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  const button = document.getElementById("lang");
  button.textContent = state.lang === "zh" ? "English" : "中文";
  button.setAttribute("lang", state.lang === "zh" ? "en" : "zh-CN");
  button.setAttribute("aria-label", t("lang.switch"));
}

// ---------------------------------------------------------------- DOM

// h("button", {class: "x", onclick: f}, "text", child...): attributes set as attributes, on*
// as listeners; strings become text nodes.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function field(labelKey, input) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h("div", {}, h("label", { for: id }, t(labelKey)), input);
}

function select(name, options, value) {
  return h("select", { name },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

function table(headers, rows) {
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))));
}

function toast(text) {
  const el = document.getElementById("toast");
  el.textContent = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.textContent = ""), 4000);
}

function errorText(e) {
  if (e instanceof ApiError) return `${t("error")} ${e.status}: ${e.message}`;
  return `${t("error")}: ${e.message || e}`;
}

function errorBox(e) {
  return h("p", { class: "error", role: "alert" }, errorText(e));
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
    this.details = body?.error?.details;
  }
}

// A request with the session's CSRF token; a refusal becomes an ApiError.
async function send(method, path, body) {
  const headers = {};
  const init = { method, headers, credentials: "same-origin" };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (method !== "GET" && state.session?.csrf_token) headers["X-CSRF-Token"] = state.session.csrf_token;
  const res = await fetch(path, init);
  if (!res.ok) {
    let parsed = null;
    try { parsed = await res.json(); } catch (_) { /* not JSON */ }
    const err = new ApiError(res.status, parsed);
    if (res.status === 401 && state.session && !path.startsWith("/console/session")) {
      state.session = null;
      showSignIn(t("signin.expired"));
    }
    throw err;
  }
  return res;
}

async function api(method, path, body) {
  const res = await send(method, path, body);
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.text();
}

const q = (params) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
};

// ---------------------------------------------------------------- shell

const PAGES = [
  { path: "cards", key: "nav.cards", roles: ["admin"], render: cardsPage },
  { path: "review", key: "nav.review", roles: ["admin"], render: reviewPage },
  { path: "try", key: "nav.try", roles: ["admin", "agent"], render: tryPage },
  { path: "conversations", key: "nav.conversations", roles: ["admin", "agent"], render: conversationsPage },
  { path: "analytics", key: "nav.analytics", roles: ["admin"], render: analyticsPage },
  { path: "health", key: "nav.health", roles: ["admin", "agent"], render: healthPage },
];

const allowed = () => PAGES.filter((p) => p.roles.includes(state.session?.role));

function renderNav() {
  const nav = document.getElementById("nav");
  const current = state.route[0];
  nav.replaceChildren(h("ul", {}, allowed().map((p) =>
    h("li", {}, h("a", { href: `#/${p.path}`, "aria-current": p.path === current ? "page" : null }, t(p.key))))));
  const who = document.getElementById("who");
  who.textContent = state.session ? `${state.session.name} · ${term("role", state.session.role)}` : "";
  document.getElementById("signout").hidden = !state.session || state.session.keyless;
}

function page(titleKey, ...content) {
  const main = document.getElementById("main");
  main.replaceChildren(h("h1", { id: "page-title" }, t(titleKey)), ...content);
  return main;
}

async function route() {
  if (!state.session) return showSignIn();
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const pages = allowed();
  let p = pages.find((x) => x.path === parts[0]);
  if (!p) {
    location.replace(`#/${pages[0].path}`);
    return;
  }
  state.route = parts;
  renderNav();
  try {
    await p.render(parts.slice(1));
  } catch (e) {
    if (state.session) page(p.key, errorBox(e));
  }
  // Screen-reader and keyboard users land on the new page's content.
  const main = document.getElementById("main");
  if (route.moved) main.focus();
  route.moved = true;
}

function showSignIn(message) {
  state.route = [];
  renderNav();
  const key = h("input", { type: "password", id: "key", name: "key", autocomplete: "current-password", required: true });
  const status = h("p", { id: "signin-error", class: "error", role: "alert" }, message || "");
  const form = h("form", { class: "signin", id: "signin" },
    h("h1", {}, t("signin.title")),
    h("p", { class: "muted" }, t("signin.help")),
    field("signin.key", key),
    h("div", { class: "actions" }, h("button", { type: "submit" }, t("signin.submit"))),
    status);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    status.textContent = "";
    try {
      state.session = await api("POST", "/console/session", { key: key.value });
      key.value = "";
      route.moved = false;
      if (!location.hash || location.hash === "#/") location.hash = `#/${allowed()[0].path}`;
      else route();
    } catch (e) {
      status.textContent = e.status === 401 ? t("signin.wrong") : errorText(e);
    }
  });
  document.getElementById("main").replaceChildren(form);
  key.focus();
}

async function signOut() {
  try { await api("DELETE", "/console/session"); } catch (_) { /* already gone */ }
  state.session = null;
  showSignIn();
}

// ---------------------------------------------------------------- cards

const STATUSES = ["draft", "in_review", "published", "archived"];
const CHANNELS = ["chat", "social", "email", "voice", "agent"];

function badge(kind, value) {
  return h("span", { class: `badge ${value}` }, term(kind, value));
}

async function cardsPage(rest) {
  if (rest[0]) return cardEditor(rest[0]);
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const qText = h("input", { type: "search", name: "q", value: params.get("q") || "" });
  const status = select("status", [["", t("any")], ...STATUSES.map((s) => [s, term("status", s)])], params.get("status") || "");
  const tag = h("input", { type: "text", name: "tag", value: params.get("tag") || "" });
  const language = select("language", [["", t("any")], ["en", "English"], ["zh", "中文"]], params.get("language") || "");
  const channel = select("channel", [["", t("any")], ...CHANNELS.map((c) => [c, term("channel", c)])], params.get("channel") || "");
  const results = h("div", { id: "card-results" });
  const filters = h("form", { class: "row", role: "search" },
    field("cards.search", qText), field("cards.status", status), field("cards.tag", tag),
    field("cards.language", language), field("cards.channel", channel),
    h("button", { type: "submit" }, t("filter")));
  const load = async () => {
    results.replaceChildren(h("p", { class: "muted" }, t("loading")));
    try {
      const list = await api("GET", `/v1/cards${q({ q: qText.value, status: status.value, tag: tag.value,
        language: language.value, channel: channel.value, limit: 200 })}`);
      const cards = list.cards;
      results.replaceChildren(
        h("p", { class: "muted" }, t("cards.count", { n: cards.length, total: list.total })),
        table([t("cards.title"), t("cards.status"), t("cards.language"), t("cards.tags"), t("cards.channels"), t("cards.updated")],
          cards.map((c) => [
            h("a", { href: `#/cards/${encodeURIComponent(c.id)}` }, c.title),
            badge("status", c.status), c.language, c.tags.join(", "),
            c.channels.length ? c.channels.map((x) => term("channel", x)).join(", ") : t("cards.all_channels"),
            c.updated_at.slice(0, 16).replace("T", " ")])));
    } catch (e) {
      results.replaceChildren(errorBox(e));
    }
  };
  filters.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  page("cards.heading",
    h("div", { class: "actions" }, h("a", { class: "button", href: "#/cards/new" }, t("cards.new"))),
    filters, results, importBox(load));
  await load();
}

// Import by dropping (or choosing) JSON Lines and Markdown files: per-line results.
function importBox(reload) {
  const input = h("input", { type: "file", id: "import-files", multiple: true, accept: ".jsonl,.ndjson,.md,.markdown" });
  const publish = h("input", { type: "checkbox", id: "import-publish" });
  const out = h("div", { id: "import-results", "aria-live": "polite" });
  const send = async (files) => {
    if (!files.length) return;
    const form = new FormData();
    for (const f of files) form.append("files", f, f.name);
    out.replaceChildren(h("p", { class: "muted" }, t("loading")));
    try {
      const report = await api("POST", `/v1/cards/import${q({ publish: publish.checked ? "true" : "" })}`, form);
      out.replaceChildren(
        h("p", {}, t("import.summary", { ok: report.imported, failed: report.failed })),
        table([t("import.source"), t("import.result")], report.items.map((i) => [
          i.source,
          i.error ? h("span", { class: "error" }, i.error.message) :
            h("a", { href: `#/cards/${encodeURIComponent(i.id)}` }, `${term("status", i.status)} · ${i.id}`)])));
      reload();
    } catch (e) {
      out.replaceChildren(errorBox(e));
    }
  };
  input.addEventListener("change", () => send([...input.files]));
  const zone = h("div", { class: "drop", id: "drop-zone" },
    h("p", {}, t("import.drop")),
    h("label", { for: "import-files" }, t("import.choose")), input,
    h("div", {}, publish, " ", h("label", { for: "import-publish", class: "inline" }, t("import.publish"))));
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("over");
    send([...ev.dataTransfer.files]);
  });
  return h("section", { "aria-labelledby": "import-h" }, h("h2", { id: "import-h" }, t("import.heading")), zone, out);
}

// The text with each compliance finding marked where it is (offsets are in characters).
function highlighted(text, findings) {
  const chars = Array.from(text);
  const spans = findings.slice().sort((a, b) => a.start - b.start);
  const out = [];
  let at = 0;
  for (const f of spans) {
    if (f.start < at) continue;
    out.push(chars.slice(at, f.start).join(""));
    out.push(h("mark", { class: "finding", "data-check": f.check, title: term("check", f.check) },
      chars.slice(f.start, f.end).join("")));
    at = f.end;
  }
  out.push(chars.slice(at).join(""));
  return out;
}

function findingsView(content, findings) {
  if (!findings.length) return h("p", { class: "ok", id: "compliance-ok" }, t("editor.no_findings"));
  return h("div", { id: "findings" },
    h("p", { class: "error", role: "alert" }, t("editor.findings", { n: findings.length })),
    h("ul", {}, findings.map((f) => h("li", {}, `${term("field", f.field)}: ${term("check", f.check)} (${f.excerpt})`))),
    ["title", "body"].filter((fld) => findings.some((f) => f.field === fld)).map((fld) =>
      h("div", { class: "highlighted", "data-field": fld },
        highlighted(content[fld], findings.filter((f) => f.field === fld)))));
}

async function cardEditor(id) {
  const isNew = id === "new";
  let card = isNew ? { title: "", body: "", tags: [], channels: [], language: "en", status: "draft", version: 0 } :
    await api("GET", `/v1/cards/${encodeURIComponent(id)}`);
  const title = h("input", { type: "text", name: "title", value: card.title, required: true, size: 60 });
  const body = h("textarea", { name: "body", rows: 12 }, card.body);
  const tags = h("input", { type: "text", name: "tags", value: card.tags.join(", ") });
  const language = h("input", { type: "text", name: "language", value: card.language, size: 6 });
  const boxes = CHANNELS.map((c) => h("input", { type: "checkbox", id: `ch-${c}`, value: c, checked: card.channels.includes(c) }));
  const channelBoxes = boxes.map((box) =>
    h("span", { class: "inline" }, box, " ", h("label", { for: box.id, class: "inline" }, term("channel", box.value)), " "));
  const checkOut = h("div", { id: "check-result", "aria-live": "polite" });
  const preview = h("div", { class: "preview", id: "preview" });
  const status = h("p", { id: "editor-status", role: "status" });
  const content = () => ({
    title: title.value,
    body: body.value,
    tags: tags.value.split(",").map((x) => x.trim()).filter(Boolean),
    language: language.value.trim() || undefined,
    channels: boxes.filter((b) => b.checked).map((b) => b.value),
  });
  const check = async () => {
    const c = content();
    const r = await api("POST", "/v1/cards/check", { title: c.title, body: c.body });
    checkOut.replaceChildren(findingsView(c, r.findings));
    preview.innerHTML = r.html; // rendered by the server from Markdown, raw HTML escaped
    return r.findings;
  };
  const act = (fn) => async () => {
    status.textContent = "";
    try { await fn(); } catch (e) {
      if (e.code === "compliance_failed" && Array.isArray(e.details)) {
        checkOut.replaceChildren(findingsView(content(), e.details));
      }
      status.replaceChildren(errorBox(e));
    }
  };
  const save = async () => {
    const c = content();
    if (isNew) {
      card = await api("POST", "/v1/cards", c);
      toast(t("editor.saved"));
      location.hash = `#/cards/${encodeURIComponent(card.id)}`;
      return null;
    }
    card = await api("PATCH", `/v1/cards/${encodeURIComponent(card.id)}`, { ...c, expected_version: card.version });
    toast(t("editor.saved"));
    return card;
  };
  const lifecycle = (verb) => act(async () => {
    if (!isNew && dirty()) await save();
    card = await api("POST", `/v1/cards/${encodeURIComponent(card.id)}/${verb}`);
    toast(t(`editor.done.${verb}`));
    await cardEditor(card.id);
  });
  const original = JSON.stringify(content());
  const dirty = () => JSON.stringify(content()) !== original;
  const actions = h("div", { class: "actions" },
    h("button", { type: "button", id: "check", class: "secondary", onclick: act(check) }, t("editor.check")),
    h("button", { type: "submit", id: "save" }, t("editor.save")),
    !isNew && card.status === "draft" && h("button", { type: "button", id: "submit-review", class: "secondary", onclick: lifecycle("submit") }, t("editor.submit")),
    !isNew && card.status !== "published" && h("button", { type: "button", id: "publish", onclick: lifecycle("publish") }, t("editor.publish")),
    !isNew && card.status !== "archived" && h("button", { type: "button", id: "archive", class: "danger", onclick: lifecycle("archive") }, t("editor.archive")));
  const form = h("form", { id: "editor" },
    field("cards.title", title), field("editor.body", body),
    h("div", { class: "row" }, field("cards.tags", tags), field("cards.language", language)),
    h("fieldset", {}, h("legend", {}, t("cards.channels")), channelBoxes,
      h("p", { class: "muted" }, t("editor.channels_help"))),
    actions, status);
  form.addEventListener("submit", (ev) => { ev.preventDefault(); act(async () => { if (await save()) await cardEditor(card.id); })(); });
  const heading = isNew ? [] : [h("p", {}, badge("status", card.status), " ", t("editor.version", { v: card.version }))];
  page(isNew ? "editor.new" : "editor.heading", ...heading,
    h("div", { class: "columns" }, form,
      h("section", { "aria-labelledby": "check-h" },
        h("h2", { id: "check-h" }, t("editor.compliance")), checkOut,
        h("h2", {}, t("editor.preview")), preview)),
    isNew ? null : await versionsView(card));
  if (!isNew) await act(check)();
}

async function versionsView(card) {
  const { versions } = await api("GET", `/v1/cards/${encodeURIComponent(card.id)}/versions`);
  const opts = versions.map((v) => [String(v.version), `v${v.version} · ${term("status", v.status)} · ${v.at.slice(0, 16).replace("T", " ")}`]);
  const from = select("from", opts, String(versions.length > 1 ? versions[versions.length - 2].version : versions[0]?.version));
  const to = select("to", opts, String(versions[versions.length - 1]?.version));
  from.id = "diff-from";
  to.id = "diff-to";
  const out = h("div", { id: "diff", "aria-live": "polite" });
  const show = async () => {
    try {
      const d = await api("GET", `/v1/cards/${encodeURIComponent(card.id)}/diff${q({ from: from.value, to: to.value })}`);
      const lines = (xs) => xs.map((l) => h("div", { class: l.op }, `${l.op === "insert" ? "+ " : l.op === "delete" ? "− " : "  "}${l.text}`));
      out.replaceChildren(h("div", { class: "diff" }, lines(d.title), h("hr", {}), lines(d.body)));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  };
  return h("section", { "aria-labelledby": "versions-h" },
    h("h2", { id: "versions-h" }, t("versions.heading")),
    table([t("versions.version"), t("cards.status"), t("versions.by"), t("versions.at")],
      versions.map((v) => [`v${v.version}`, badge("status", v.status), v.actor, v.at.slice(0, 19).replace("T", " ")])),
    h("div", { class: "row" }, field("versions.from", from), field("versions.to", to),
      h("button", { type: "button", id: "show-diff", onclick: show }, t("versions.compare"))),
    out);
}

// ---------------------------------------------------------------- review

async function reviewPage() {
  const { cards } = await api("GET", "/v1/review?limit=100");
  const list = h("div", { id: "review-list" });
  page("review.heading", h("p", { class: "muted" }, t("review.help")), list);
  if (!cards.length) list.append(h("p", {}, t("review.empty")));
  for (const r of cards) list.append(await reviewItem(r));
}

async function reviewItem(r) {
  const id = encodeURIComponent(r.card_id);
  const [card, ev] = await Promise.all([api("GET", `/v1/cards/${id}`), api("GET", `/v1/cards/${id}/evidence`)]);
  const check = await api("POST", "/v1/cards/check", { title: card.title, body: card.body });
  const reason = h("input", { type: "text", name: "reason", id: `reason-${r.card_id}` });
  const status = h("p", { role: "status" });
  const act = (fn) => async () => {
    try { await fn(); await reviewPage(); toast(t("review.done")); } catch (e) { status.replaceChildren(errorBox(e)); }
  };
  const approve = act(() => api("POST", `/v1/cards/${id}/publish`));
  const reject = act(() => api("POST", `/v1/cards/${id}/archive${q({ reason: reason.value })}`));
  const headingId = `rv-${r.card_id}`;
  return h("article", { class: "card-box review-item", "data-card": r.card_id, "aria-labelledby": headingId },
    h("h2", { id: headingId }, card.title, " ", badge("status", card.status)),
    h("p", {}, t("review.record", { evidence: r.evidence, flags: r.open_flags, down: r.rated_down, handoffs: r.handoffs_after })),
    h("div", { class: "preview" }, h("p", {}, card.body)),
    check.findings.length ? findingsView(card, check.findings) : h("p", { class: "ok" }, t("editor.no_findings")),
    r.flags?.length ? h("section", {}, h("h3", {}, t("review.flags")),
      h("ul", {}, r.flags.map((f) => h("li", {}, `“${f.question}” — ${f.comment || t("review.no_comment")}`)))) : null,
    ev.evidence.length ? h("section", {}, h("h3", {}, t("review.provenance")),
      h("ul", {}, ev.evidence.map((e) => h("li", {},
        h("a", { href: `#/conversations/${encodeURIComponent(e.conversation_id)}` }, e.conversation_id),
        ` · ${t("review.turns", { turns: e.turns.join(", ") })} · “${e.question}”`)))) : null,
    h("div", { class: "actions" },
      card.status !== "published" && h("button", { type: "button", class: "approve", onclick: approve }, t("review.approve")),
      h("a", { class: "button secondary", href: `#/cards/${id}` }, t("review.edit")),
      card.status !== "published" && h("span", { class: "row" }, field("review.reason", reason),
        h("button", { type: "button", class: "danger reject", onclick: reject }, t("review.reject")))),
    status);
}

// ---------------------------------------------------------------- try a question

async function tryPage() {
  const question = h("textarea", { name: "question", rows: 3, required: true });
  const channel = select("channel", CHANNELS.filter((c) => c !== "agent").map((c) => [c, term("channel", c)]), "chat");
  const language = select("language", [["", t("try.auto")], ["en", "English"], ["zh", "中文"]], "");
  const hits = h("div", { id: "try-hits" });
  const decision = h("div", { id: "try-decision" });
  const answer = h("div", { class: "answer", id: "try-answer", "aria-live": "polite" });
  const citations = h("div", { id: "try-citations" });
  const form = h("form", { id: "try-form" },
    field("try.question", question),
    h("div", { class: "row" }, field("try.channel", channel), field("try.language", language),
      h("button", { type: "submit" }, t("try.ask"))));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    for (const el of [hits, decision, answer, citations]) el.replaceChildren();
    try {
      const found = await api("POST", "/v1/search", { query: question.value, top_k: 5, filters: { channel: channel.value } });
      hits.replaceChildren(found.hits.length ? table([t("cards.title"), t("try.score"), t("try.similarity")],
        found.hits.map((x) => [x.title, x.score.toFixed(3), x.similarity.toFixed(3)])) : h("p", {}, t("try.no_hits")));
      const done = await streamAnswer({ question: question.value, channel: channel.value, language: language.value || undefined, stream: true },
        (text) => answer.append(text));
      answer.textContent = done.answer;
      decision.replaceChildren(h("p", { class: done.handoff ? "error" : "ok", id: "try-outcome" },
        done.handoff ? t("try.handoff", { reason: term("handoff", done.handoff_reason) }) : t("try.answered"),
        " ", t("try.confidence", { c: done.confidence.toFixed(2) })));
      citations.replaceChildren(done.citations.length ? h("ol", {}, done.citations.map((c) =>
        h("li", { "data-card": c.card_id }, h("a", { href: `#/cards/${encodeURIComponent(c.card_id)}` }, c.title || c.card_id)))) :
        h("p", { class: "muted" }, t("try.no_citations")));
    } catch (e) {
      decision.replaceChildren(errorBox(e));
    }
  });
  page("try.heading", h("p", { class: "muted" }, t("try.help")), form,
    h("h2", {}, t("try.hits")), hits, h("h2", {}, t("try.decision")), decision,
    h("h2", {}, t("try.answer")), answer, h("h2", {}, t("try.citations")), citations);
}

// POST /v1/answer with stream: text deltas as they come, then the whole answer.
async function streamAnswer(body, onDelta) {
  const res = await send("POST", "/v1/answer", body);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      const payload = JSON.parse(data.join("\n"));
      if (event === "delta") onDelta(payload.text);
      else if (event === "done") return payload;
      else if (event === "error") throw new ApiError(500, payload);
    }
  }
  throw new Error(t("try.cut"));
}

// ---------------------------------------------------------------- conversations

async function conversationsPage(rest) {
  if (rest[0]) return conversationView(rest[0]);
  const yesNo = (name) => select(name, [["", t("any")], ["true", t("yes")], ["false", t("no")]], "");
  const escalated = yesNo("escalated");
  const resolved = yesNo("resolved");
  const priority = select("priority", [["", t("any")], ...["low", "normal", "high", "urgent"].map((p) => [p, term("priority", p)])], "");
  const channel = select("channel", [["", t("any")], ...CHANNELS.map((c) => [c, term("channel", c)])], "");
  const intent = h("input", { type: "text", name: "intent", size: 12 });
  const queue = h("input", { type: "text", name: "queue", size: 12 });
  const out = h("div", { id: "conversation-results" });
  const form = h("form", { class: "row", role: "search" },
    field("conv.escalated", escalated), field("conv.priority", priority), field("conv.channel", channel),
    field("conv.intent", intent), field("conv.queue", queue), field("conv.resolved", resolved),
    h("button", { type: "submit" }, t("filter")));
  const load = async () => {
    try {
      const r = await api("GET", `/v1/conversations${q({ escalated: escalated.value, resolved: resolved.value, priority: priority.value,
        channel: channel.value, intent: intent.value.trim(), queue: queue.value.trim() })}`);
      out.replaceChildren(r.conversations.length ? table(
        [t("conv.id"), t("conv.customer"), t("conv.channel"), t("conv.last"), t("conv.intent"), t("conv.escalated"), t("conv.route"), t("conv.updated")],
        r.conversations.map((c) => [
          h("a", { href: `#/conversations/${encodeURIComponent(c.id)}` }, c.id),
          c.customer_id || "", term("channel", c.channel), c.last_customer_text || "", term("intent", c.intent),
          c.escalated ? badge("escalation", c.escalation_reason) : t("no"),
          c.route ? `${c.route.queue} · ${term("priority", c.route.priority)}` : "",
          c.updated_at.slice(0, 16).replace("T", " ")])) : h("p", {}, t("conv.none")));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  page("conv.heading", form, out);
  await load();
}

async function conversationView(id) {
  const enc = encodeURIComponent(id);
  const [c, handoff] = await Promise.all([api("GET", `/v1/conversations/${enc}`), api("GET", `/v1/conversations/${enc}/handoff`)]);
  const esc = c.escalation;
  const scored = c.turns.filter((x) => x.valence !== undefined);
  page("conv.one",
    h("p", {}, `${c.id} · ${c.customer_id || ""} · ${term("channel", c.channel)} · `,
      c.resolved_at ? t("conv.resolved_at", { at: c.resolved_at.slice(0, 16).replace("T", " ") }) : t("conv.open")),
    h("section", { id: "escalation", "aria-labelledby": "esc-h" },
      h("h2", { id: "esc-h" }, t("conv.escalation")),
      esc.flagged ? h("p", { class: "error" }, t("conv.flagged"), esc.priority ? ` · ${t("conv.priority_first")}` : "") :
        h("p", {}, t("conv.not_flagged")),
      esc.reasons.length ? h("ul", { id: "escalation-reasons" }, esc.reasons.map((r) =>
        h("li", { "data-reason": r.reason }, `${term("escalation", r.reason)} (${t("conv.turn", { n: r.turn })}): ${r.detail}`))) : null),
    c.route ? h("section", { id: "route" }, h("h2", {}, t("conv.route")),
      h("p", {}, `${t("conv.queue")}: ${c.route.queue} · ${t("conv.priority")}: ${term("priority", c.route.priority)} · ${t("conv.skills")}: ${c.route.skills.join(", ")}`),
      h("ul", {}, c.route.reasons.map((r) => h("li", {}, `${r.rule}: ${r.detail}`)))) : null,
    h("section", {}, h("h2", {}, t("conv.mood")),
      scored.length ? lineChart(t("conv.mood"), scored.map((x) => ({ label: `#${x.seq}`, value: x.valence })), -1, 1) :
        h("p", { class: "muted" }, t("conv.no_scores")),
      h("p", {}, t("conv.direction", { d: term("mood", c.mood.direction) }))),
    h("section", {}, h("h2", {}, t("conv.turns")),
      table([t("conv.seq"), t("conv.role"), t("conv.channel"), t("conv.text"), t("conv.sentiment"), t("conv.emotions"), t("conv.intent")],
        c.turns.map((x) => [x.seq, term("turn", x.role), term("channel", x.channel), x.text,
          x.sentiment ? `${term("sentiment", x.sentiment)} (${x.valence.toFixed(2)})` : "",
          x.emotions ? x.emotions.present.map((e) => term("emotion", e)).join(", ") : "",
          x.intent ? term("intent", x.intent.name) : ""]))),
    h("section", { id: "handoff-summary" }, h("h2", {}, t("conv.handoff")),
      h("p", {}, t("conv.asked"), " ", handoff.asked.join(" / ")),
      handoff.unresolved.length ? h("ul", {}, handoff.unresolved.map((u) => h("li", {}, `${u.text} (${term("unresolved", u.why)})`))) :
        h("p", { class: "muted" }, t("conv.nothing_open"))));
}

// ---------------------------------------------------------------- charts (SVG, drawn here: a few
// bars and lines do not justify a charting library and its build)

function barChart(name, items) {
  const w = 640, rowH = 22, labelW = 200, height = Math.max(1, items.length) * rowH + 8;
  const max = Math.max(1e-9, ...items.map((i) => i.value));
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${height}`, role: "img", "aria-label": name, width: w, height });
  items.forEach((it, k) => {
    const y = 4 + k * rowH;
    const len = ((w - labelW - 60) * it.value) / max;
    const label = svgEl("text", { x: labelW - 6, y: y + 15, "text-anchor": "end" });
    label.textContent = it.label;
    const bar = svgEl("rect", { class: "bar", x: labelW, y: y + 3, width: Math.max(1, len), height: rowH - 6,
      "data-label": it.label, "data-value": it.value });
    const tip = svgEl("title", {});
    tip.textContent = `${it.label}: ${fmt(it.value)}`;
    bar.append(tip);
    const v = svgEl("text", { x: labelW + len + 6, y: y + 15 });
    v.textContent = fmt(it.value);
    svg.append(label, bar, v);
  });
  return h("div", { class: "chart" }, svg);
}

function lineChart(name, points, lo, hi) {
  const w = 640, ht = 160, pad = 24;
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${ht}`, role: "img", "aria-label": name, width: w, height: ht });
  const x = (k) => pad + (points.length < 2 ? 0 : (k * (w - 2 * pad)) / (points.length - 1));
  const y = (v) => ht - pad - ((v - lo) / (hi - lo || 1)) * (ht - 2 * pad);
  const zero = svgEl("line", { x1: pad, x2: w - pad, y1: y(Math.max(lo, Math.min(hi, 0))), y2: y(Math.max(lo, Math.min(hi, 0))), stroke: "#8c959f" });
  svg.append(zero, svgEl("polyline", { class: "line", points: points.map((p, k) => `${x(k)},${y(p.value)}`).join(" ") }));
  points.forEach((p, k) => {
    const dot = svgEl("circle", { cx: x(k), cy: y(p.value), r: 4, fill: "#0550ae", "data-label": p.label, "data-value": p.value });
    const tip = svgEl("title", {});
    tip.textContent = `${p.label}: ${fmt(p.value)}`;
    dot.append(tip);
    const label = svgEl("text", { x: x(k), y: ht - 6, "text-anchor": "middle" });
    label.textContent = p.label;
    svg.append(dot, label);
  });
  return h("div", { class: "chart" }, svg);
}

function svgEl(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

const fmt = (v) => (Number.isInteger(v) ? String(v) : Number(v).toFixed(2));

// Rows summed by one column: [{label, value}], in first-seen order.
function sumBy(rows, key, valueKey) {
  const m = new Map();
  for (const r of rows) m.set(r[key], (m.get(r[key]) || 0) + Number(r[valueKey] || 0));
  return [...m].map(([label, value]) => ({ label: String(label), value }));
}

// ---------------------------------------------------------------- analytics

async function analyticsPage() {
  const today = new Date();
  const day = (d) => d.toISOString().slice(0, 10);
  const from = h("input", { type: "date", name: "from", value: day(new Date(today - 6 * 864e5)) });
  const to = h("input", { type: "date", name: "to", value: day(today) });
  const granularity = select("granularity", ["hour", "day", "week"].map((g) => [g, t(`granularity.${g}`)]), "day");
  const out = h("div", { id: "analytics" });
  const form = h("form", { class: "row" }, field("analytics.from", from), field("analytics.to", to),
    field("analytics.granularity", granularity), h("button", { type: "submit" }, t("analytics.show")));
  const range = () => ({
    from: `${from.value}T00:00:00Z`,
    // The end day is included: the range ends at the next midnight.
    to: new Date(Date.parse(`${to.value}T00:00:00Z`) + 864e5).toISOString().replace(".000Z", "Z"),
    granularity: granularity.value,
  });
  const load = async () => {
    out.replaceChildren(h("p", { class: "muted" }, t("loading")));
    const r = range();
    const get = (name) => api("GET", `/v1/analytics/${name}${q(r)}`);
    try {
      const [volume, deflection, handoffs, satisfaction, sentiment, topics, gaps] = await Promise.all(
        ["volume", "deflection", "handoffs", "satisfaction", "sentiment", "topics", "gaps"].map(get));
      const csv = (name) => h("a", { href: `/v1/analytics/${name}${q({ ...r, format: "csv" })}`, download: `${name}.csv`, class: "csv" },
        t("analytics.csv", { name: t(`report.${name}`) }));
      const section = (name, ...body) => h("section", { id: `report-${name}`, "aria-labelledby": `h-${name}` },
        h("h2", { id: `h-${name}` }, t(`report.${name}`)), ...body, csv(name));
      const asked = sumBy(deflection.rows, "channel", "answers");
      const rate = sumBy(deflection.rows, "channel", "answered").map((a, k) =>
        ({ label: term("channel", a.label), value: asked[k].value ? a.value / asked[k].value : 0 }));
      const empty = h("p", { class: "muted" }, t("analytics.empty"));
      const chartOr = (items, draw) => (items.length ? draw(items) : empty.cloneNode(true));
      out.replaceChildren(
        section("volume", chartOr(sumBy(volume.rows, "bucket", "conversations"), (x) => barChart(t("report.volume"), x))),
        section("deflection", chartOr(rate, (x) => barChart(t("report.deflection"), x))),
        section("handoffs", chartOr(sumBy(handoffs.rows, "reason", "handoffs").map((x) => ({ ...x, label: term("handoff", x.label) })),
          (x) => barChart(t("report.handoffs"), x))),
        section("satisfaction", chartOr(satisfaction.rows.length ? [
          { label: t("analytics.up"), value: satisfaction.rows.reduce((s, x) => s + x.up, 0) },
          { label: t("analytics.down"), value: satisfaction.rows.reduce((s, x) => s + x.down, 0) }] : [], (x) => barChart(t("report.satisfaction"), x))),
        section("sentiment", chartOr(sentiment.rows.map((x) => ({ label: x.bucket, value: x.mean_valence ?? 0 })),
          (x) => lineChart(t("report.sentiment"), x, -1, 1))),
        section("topics", chartOr(topics.rows.map((x) => ({ label: term("intent", x.intent), value: x.turns })),
          (x) => barChart(t("report.topics"), x))),
        section("gaps", gaps.rows.length ? gapsTable(gaps.rows) : empty.cloneNode(true)));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  page("analytics.heading", form, out);
  await load();
}

function gapsTable(gaps) {
  return table([t("gaps.label"), t("gaps.questions"), t("gaps.languages"), t("gaps.examples"), ""],
    gaps.map((g) => {
      const status = h("span", { role: "status" });
      const draft = async () => {
        try {
          const r = await api("POST", "/v1/gaps/draft", { answer_ids: g.answer_ids });
          status.textContent = r.card ? t("gaps.drafted") : t("gaps.queued", { n: r.queued.length });
        } catch (e) { status.replaceChildren(errorBox(e)); }
      };
      return [g.label, `${g.questions}${g.spike ? ` · ${t("gaps.spike")}` : ""}`,
        Object.entries(g.languages).map(([l, n]) => `${l} ${n}`).join(", "), g.examples.join(" / "),
        h("span", {}, h("button", { type: "button", class: "secondary", onclick: draft }, t("gaps.draft")), " ", status)];
    }));
}

// ---------------------------------------------------------------- health

async function healthPage() {
  const ready = await fetch("/readyz", { credentials: "same-origin" }).then((r) => r.json());
  const models = await api("GET", "/v1/models");
  const metrics = await fetch("/metrics", { credentials: "same-origin" }).then((r) => r.text());
  // Prometheus text: name{labels} value. Only the gauges a person watches.
  const watched = /^(kefu_model_queue_depth|kefu_generation_active|kefu_generation_slots|kefu_jobs|kefu_voice_streams_open|kefu_transcriptions_in_flight|kefu_cards)\b/;
  const gauges = metrics.split("\n").filter((l) => watched.test(l)).map((l) => {
    const cut = l.lastIndexOf(" ");
    return [l.slice(0, cut), l.slice(cut + 1)];
  });
  const parts = ["store", "embedder", "generator", "asr", "index"];
  page("health.heading",
    h("p", { class: ready.ready ? "ok" : "error", id: "readiness" }, ready.ready ? t("health.ready") : t("health.not_ready")),
    table([t("health.part"), t("health.state")], parts.map((p) => [t(`health.${p}`), ready[p]])),
    h("h2", {}, t("health.models")),
    table([t("health.model"), t("health.owner")], (models.data || []).map((m) => [m.id, m.owned_by || ""])),
    h("h2", {}, t("health.queues")),
    table([t("health.gauge"), t("health.value")], gauges));
}

// ---------------------------------------------------------------- start

async function start() {
  state.strings = await fetch("i18n.json").then((r) => r.json());
  const saved = localStorage.getItem("kefu.lang");
  setLang(saved || ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en"));
  document.getElementById("lang").addEventListener("click", () => {
    setLang(state.lang === "zh" ? "en" : "zh");
    if (state.session) route(); else showSignIn();
  });
  document.getElementById("signout").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  try {
    state.session = await api("GET", "/console/session");
  } catch (_) {
    state.session = null;
  }
  route.moved = false;
  route();
}

start();
