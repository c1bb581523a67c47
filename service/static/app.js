// Posts the form's question to /v1/ask and shows the answer with its citations.
"use strict";

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function showCitation(list, c) {
  const item = el("li");
  const where = [c.title, c.section].filter(Boolean).join(" › ");
  const head = c.url ? el("a", where) : el("strong", where);
  if (c.url) head.href = c.url;
  item.append(head, el("span", ` (${c.source}${c.community ? ", community report" : ""}, ${c.date || "undated"})`, "muted"));
  item.append(el("blockquote", c.quote));
  list.append(item);
}

function show(data) {
  document.getElementById("result").hidden = false;
  document.getElementById("answer").textContent = data.answer;
  const conf = `confidence ${data.confidence.toFixed(2)}${data.abstained ? " · not covered by the material" : ""}`;
  document.getElementById("confidence").textContent = conf;
  const list = document.getElementById("citations");
  list.replaceChildren();
  document.getElementById("nearest").hidden = !(data.abstained && data.citations.length);
  data.citations.forEach((c) => showCitation(list, c));
}

async function ask(event) {
  event.preventDefault();
  const question = document.getElementById("question").value.trim();
  const key = document.getElementById("api-key").value.trim();
  const headers = { "Content-Type": "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  const button = event.target.querySelector("button");
  button.disabled = true;
  try {
    const response = await fetch("/v1/ask", { method: "POST", headers, body: JSON.stringify({ question, client: "web" }) });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
    show(data);
  } catch (err) {
    show({ answer: `Error: ${err.message}`, confidence: 0, abstained: false, citations: [] });
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("ask-form").addEventListener("submit", ask);
});
