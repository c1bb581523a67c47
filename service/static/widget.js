/* kbq chat widget. Embed with one tag:
 *   <script src="https://kbq.example.com/widget.js" data-kbq-token="…"></script>
 * Optional data attributes: data-kbq-api (API base URL; default: where this script came from),
 * data-kbq-token-endpoint (a URL of the wiki that returns {token, expires_in}), data-kbq-lang (en|zh;
 * default: the page's <html lang>; the language of the interface and of the answers: without either,
 * answers come in the question's language), data-kbq-position (bottom-right|bottom-left).
 * Everything renders in a shadow root; no inline script, eval or style attributes, so it runs under a
 * strict Content-Security-Policy. */
(function () {
  "use strict";
  const script = document.currentScript;
  if (!script || document.querySelector("kbq-widget")) return;
  const data = script.dataset;
  const api = (data.kbqApi || new URL(".", script.src).href).replace(/\/+$/, "");
  const config = /*kbq:config*/{};  // the service's settings, filled in when it serves this script
  const pageLang = (data.kbqLang || document.documentElement.lang || "").toLowerCase();
  const lang = pageLang.startsWith("zh") ? "zh" : "en";
  const answerLang = /^(en|zh)\b/.exec(pageLang)?.[1];  // undefined: the question's language
  const position = data.kbqPosition === "bottom-left" ? "bottom-left" : "bottom-right";
  const tokenEndpoint = data.kbqTokenEndpoint || "";
  let token = data.kbqToken || "";

  const STRINGS = /*kbq:strings*/{};  // widget.strings.json, filled in when the service serves this script
  const t = STRINGS[lang];
  const ICONS = {
    chat: "M21 11.5a8.38 8.38 0 0 1-.9 3.8 8.5 8.5 0 0 1-7.6 4.7 8.38 8.38 0 0 1-3.8-.9L3 21l1.9-5.7a8.38 8.38 0 0 1-.9-3.8 8.5 8.5 0 0 1 4.7-7.6 8.38 8.38 0 0 1 3.8-.9h.5a8.48 8.48 0 0 1 8 8v.5z",
    close: "M18 6 6 18M6 6l12 12",
    up: "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3",
    down: "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3zm7-13h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17",
  };
  const ui = {};
  let busy = false;

  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    el.append(...kids.flat().filter((kid) => kid !== null && kid !== undefined && kid !== false));
    return el;
  }

  function icon(name) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", ICONS[name]);
    svg.append(path);
    return svg;
  }

  function applyStyles(root) {
    const css = /*kbq:css*/"";
    if (css && "adoptedStyleSheets" in ShadowRoot.prototype) {
      // Constructed stylesheets are not inline <style>, so style-src 'self' does not block them.
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(css);
      root.adoptedStyleSheets = [sheet];
    } else {
      root.append(h("link", { rel: "stylesheet", href: api + "/static/widget.css" }));
    }
  }

  // --- talking to kbq ---------------------------------------------------------------------------
  function tokenExpiry(value) {
    const parts = value.split(".");
    return parts.length === 4 ? Number(parts[2]) * 1000 : Infinity;
  }

  async function currentToken(force) {
    if (tokenEndpoint && (force || !token || tokenExpiry(token) - Date.now() < 30000)) {
      try {
        const response = await fetch(tokenEndpoint, { method: "POST", credentials: "same-origin" });
        if (response.ok) token = (await response.json()).token || token;
      } catch (err) { /* keep the token we have; the request will say if it fails */ }
    }
    return token;
  }

  async function post(path, body, retried) {
    const headers = { "Content-Type": "application/json" };
    const credential = await currentToken(false);
    if (credential) headers.Authorization = "Bearer " + credential;
    const response = await fetch(api + path, {
      method: "POST", headers, body: JSON.stringify(body), credentials: "omit", signal: AbortSignal.timeout(60000),
    });
    if (response.status === 401 && tokenEndpoint && !retried) {
      await currentToken(true);
      return post(path, body, true);
    }
    return response;
  }

  async function failure(response) {
    let message = "";
    try { message = (await response.json()).error.message; } catch (err) { /* not JSON */ }
    return Object.assign(new Error(message || response.statusText), { status: response.status });
  }

  function parseEvent(block) {
    let event = "message";
    const lines = [];
    for (const line of block.split("\n")) {
      const colon = line.indexOf(":");
      if (colon === 0) continue;
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "data") lines.push(value);
    }
    return lines.length ? { event, data: JSON.parse(lines.join("\n")) } : null;
  }

  // Server-sent events over fetch (EventSource cannot POST): split the byte stream at blank lines.
  async function* events(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done }).replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (event) yield event;
      }
      if (done) return;
    }
  }

  function sourceUrl(c) {
    const path = c.doc_id.split("/").map(encodeURIComponent).join("/");
    const query = new URLSearchParams({ start: c.start, end: c.end, lang });
    if (token) query.set("t", token);
    return `${api}/docs/${path}?${query}#kbq-quote`;
  }

  // --- rendering -------------------------------------------------------------------------------
  function sourceLink(c, props, ...kids) {
    const attrs = { href: sourceUrl(c), target: "_blank", rel: "noopener", "data-doc": c.doc_id };
    attrs["data-start"] = c.start;
    attrs["data-end"] = c.end;
    return h("a", Object.assign(attrs, props), ...kids);
  }

  function withMarkers(text, citations) {
    const out = [];
    let last = 0;
    for (const match of text.matchAll(/\[(\d+)\]/g)) {
      const c = citations.get(Number(match[1]));
      if (!c) continue;
      out.push(text.slice(last, match.index));
      const label = `[${c.n}] ${c.title}${c.section ? " › " + c.section : ""} (${t.newTab})`;
      out.push(h("sup", {}, sourceLink(c, { "aria-label": label, title: label }, `[${c.n}]`)));
      last = match.index + match[0].length;
    }
    out.push(text.slice(last));
    return out;
  }

  // Official source, community report, or a community reply correcting an earlier claim (linked when it can be).
  function trust(c) {
    const label = t.labels[c.label] ? c.label : c.community || c.source === "thread" ? "community" : "official";
    const { author, url } = (label === "correction" && c.corrects) || {};
    const note = label === "correction" && t.corrects.replace("{whose}", author ? t.whose.replace("{author}", author) : t.earlier);
    const fix = /^https?:\/\//.test(url || "") ? h("a", { class: "corrected", href: url, target: "_blank", rel: "noopener", text: note }) : note;
    return h("span", { class: "trust " + label }, t.labels[label], fix ? [" (", fix, ")"] : []);
  }

  function sourceItem(c) {
    const meta = [c.section, t.kinds[c.source] || c.source].filter(Boolean).join(" · ");
    return h("li", { "data-label": c.label },
      sourceLink(c, { class: "src" }, h("span", { class: "num", text: c.n }), h("span", { class: "title", text: c.title })),
      h("span", { class: "meta" }, meta, " · ", trust(c), " · ", c.date || t.undated),
      h("blockquote", { class: "quote", lang: c.lang, text: c.quote }));
  }

  function sourcesList(citations, abstained) {
    const items = [...citations.values()].sort((a, b) => a.n - b.n).map(sourceItem);
    return h("div", { class: "sources" }, h("h3", { text: abstained ? t.nearest : t.sources }), h("ol", {}, items));
  }

  function feedback(answerId) {
    const status = h("span", { role: "status" });
    const buttons = [];
    async function vote(helpful, button) {
      if (button.getAttribute("aria-disabled") === "true") return;
      buttons.forEach((b) => b.setAttribute("aria-disabled", "true"));
      button.setAttribute("aria-pressed", "true");
      try {
        const response = await post("/v1/feedback", { answer_id: answerId, helpful });
        if (!response.ok) throw await failure(response);
        status.textContent = t.thanks;
      } catch (err) {
        buttons.forEach((b) => { b.removeAttribute("aria-disabled"); b.setAttribute("aria-pressed", "false"); });
        status.textContent = t.voteFailed;
      }
    }
    for (const [helpful, name, label] of [[true, "up", t.yes], [false, "down", t.no]]) {
      const button = h("button", { type: "button", class: "vote " + name, "aria-label": label, "aria-pressed": "false", title: label }, icon(name));
      button.addEventListener("click", () => vote(helpful, button));
      buttons.push(button);
    }
    return h("div", { class: "feedback" }, h("span", { text: t.helpful }), buttons, status);
  }

  function exchange(question, replacing) {
    ui.log.querySelector(".empty-state")?.remove();
    const text = h("p", { class: "text pending", text: t.thinking });
    const answer = h("div", { class: "a", "aria-busy": "true" }, text);
    const article = h("article", { class: "qa" }, h("p", { class: "q", text: question }), answer);
    if (replacing) replacing.replaceWith(article);
    else ui.log.append(article);
    ui.log.scrollTop = ui.log.scrollHeight;
    return { article, answer, text };
  }

  // Show a finished exchange from its question down, or all of it when it fits.
  function reveal(article) {
    const fits = article.offsetHeight <= ui.log.clientHeight - 16;
    ui.log.scrollTop = fits ? ui.log.scrollHeight : article.offsetTop - 8;
  }

  function finish(ex, state) {
    const abstained = Boolean(state.done.abstained);
    ex.answer.classList.toggle("abstain", abstained);
    if (abstained) ex.answer.prepend(h("span", { class: "badge", text: t.notCovered }));
    const tag = t.langs[state.lang] || state.lang, tagLabel = `${t.answerLang}: ${tag}`;
    if (tag) ex.text.setAttribute("lang", state.lang);
    if (tag) ex.answer.prepend(h("span", { class: "lang-tag", lang: state.lang, title: tagLabel, "aria-label": tagLabel, text: tag }));
    if (state.citations.size) ex.answer.append(sourcesList(state.citations, abstained));
    ex.answer.append(feedback(state.id));
    ex.answer.setAttribute("aria-busy", "false");
    ex.article.classList.add("done");
    ui.live.textContent = (abstained ? t.notCovered + ". " : "") + state.text.replace(/\s*\[\d+\]/g, "");
  }

  function fail(ex, err, retry) {
    const status = err.status || 0;
    const message = status === 429 ? t.busy : status === 401 || status === 403 ? t.denied
      : status === 422 ? err.message : status ? t.failed : t.offline;
    ex.answer.classList.add("failed");
    ex.answer.setAttribute("aria-busy", "false");
    ex.text.classList.remove("pending");
    ex.text.textContent = message;
    if (status !== 422) {
      ex.answer.append(h("button", { type: "button", class: "retry", text: t.retry, onclick: () => { ui.input.focus(); retry(); } }));
    }
    ui.live.textContent = message;
  }

  async function ask(question, replacing) {
    if (busy) return;
    busy = true;
    ui.send.disabled = true;
    const ex = exchange(question, replacing);
    const state = { id: "", lang: "", text: "", citations: new Map(), done: null };
    try {
      const response = await post("/v1/ask/stream", { question, client: "widget", lang: answerLang });
      if (!response.ok) throw await failure(response);
      for await (const { event, data: payload } of events(response.body)) {
        if (event === "meta") Object.assign(state, { id: payload.id, lang: payload.lang || "" });
        else if (event === "citation") state.citations.set(payload.n, payload);
        else if (event === "delta") {
          state.text += payload.text;
          ex.text.classList.remove("pending");
          ex.text.replaceChildren(...withMarkers(state.text, state.citations));
        } else if (event === "done") state.done = payload;
      }
      if (!state.done) throw new Error("the answer stream ended early");
      finish(ex, state);
    } catch (err) {
      fail(ex, err, () => ask(question, ex.article));
    } finally {
      busy = false;
      ui.send.disabled = false;
      reveal(ex.article);
    }
  }

  // --- the widget itself -----------------------------------------------------------------------
  function setOpen(open) {
    ui.panel.hidden = !open;
    ui.launcher.setAttribute("aria-expanded", String(open));
    (open ? ui.input : ui.launcher).focus();
  }

  function submit(event) {
    event.preventDefault();
    const question = ui.input.value.trim();
    if (!question || busy) return;
    ui.input.value = "";
    ask(question);
  }

  function build() {
    ui.input = h("textarea", { id: "kbq-question", rows: "2", maxlength: config.maxQuestionChars, placeholder: t.placeholder, autocomplete: "off" });
    ui.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        ui.form.requestSubmit();
      }
    });
    ui.send = h("button", { type: "submit", class: "send", text: t.send });
    ui.form = h("form", { class: "ask", onsubmit: submit },
      h("label", { class: "sr", for: "kbq-question", text: t.question }), ui.input, ui.send);
    const examples = t.examples.map((q) => h("li", {}, h("button", { type: "button", class: "example", text: q, onclick: () => ask(q) })));
    ui.log = h("div", { class: "log", tabindex: "-1" },
      h("div", { class: "empty-state" }, h("p", { class: "empty", text: t.empty }), h("ul", { class: "examples" }, examples)));
    ui.log.addEventListener("click", (event) => {  // links carry the newest token when they are followed
      const link = event.target.closest?.("a[data-doc]");
      if (link) link.href = sourceUrl({ doc_id: link.dataset.doc, start: link.dataset.start, end: link.dataset.end });
    });
    const head = h("div", { class: "head" },
      h("div", {}, h("h2", { id: "kbq-title", text: t.title }), h("p", { text: t.subtitle })),
      h("button", { type: "button", class: "close", "aria-label": t.close, title: t.close, onclick: () => setOpen(false) }, icon("close")));
    ui.panel = h("section", { class: "panel", id: "kbq-panel", role: "dialog", "aria-labelledby": "kbq-title", hidden: true },
      head, ui.log, ui.form, h("p", { class: "foot", text: t.foot }));
    ui.launcher = h("button", { type: "button", class: "launcher", "aria-expanded": "false", "aria-controls": "kbq-panel", "aria-label": t.launcherLabel },
      icon("chat"), h("span", { text: t.launcher }));
    ui.launcher.addEventListener("click", () => setOpen(ui.panel.hidden));
    ui.live = h("div", { class: "sr", "aria-live": "polite", "aria-atomic": "true" });
    const wrapper = h("div", { class: "kbq", lang }, ui.panel, ui.launcher, ui.live);
    wrapper.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !event.isComposing && !ui.panel.hidden) {
        event.preventDefault();
        setOpen(false);
      }
    });
    return wrapper;
  }

  function mount() {
    const host = document.createElement("kbq-widget");
    host.setAttribute("data-position", position);
    const root = host.attachShadow({ mode: "open" });
    applyStyles(root);
    root.append(build());
    document.body.append(host);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount);
  else mount();
})();
