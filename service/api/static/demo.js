// tagserve demo page: calls POST /tag like any client and renders the answer.
// User text only ever reaches the page through textContent / createElement, never innerHTML.
"use strict";

(() => {
  const EXAMPLES = [
    { model: "ner", text: "Harry Potter and Hermione Granger invented a new spell" },
    { model: "ner", text: "Angela Merkel met Emmanuel Macron in Paris to discuss the European Union budget." },
    { model: "slots", text: "show me flights from boston to denver on november second after 5 pm" },
  ];

  // displaCy's colours for the CoNLL types; anything else gets a hue from its name.
  const FIXED_COLOURS = {
    PER: "#aa9cfc",
    ORG: "#7aecec",
    LOC: "#ff9561",
    MISC: "#e4e7d2",
  };

  const form = document.getElementById("tag-form");
  const textBox = document.getElementById("text");
  const modelBox = document.getElementById("model");
  const modelInfo = document.getElementById("model-info");
  const submitButton = document.getElementById("submit");
  const examplesBox = document.getElementById("examples");
  const errorBox = document.getElementById("error");
  const output = document.getElementById("output");
  const stats = document.getElementById("stats");
  const doc = document.getElementById("doc");
  const intentLine = document.getElementById("intent");
  const legend = document.getElementById("legend");
  const tokenRows = document.querySelector("#tokens tbody");

  let models = {};
  let inFlight = null;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function hashHue(label) {
    // FNV-1a over UTF-16 units: stable across sessions and browsers.
    let hash = 0x811c9dc5;
    for (let i = 0; i < label.length; i++) {
      hash ^= label.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    return hash % 360;
  }

  function labelColour(label) {
    return FIXED_COLOURS[label] || `hsl(${hashHue(label)} 75% 80%)`;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.textContent = "";
    errorBox.hidden = true;
  }

  function describeModel(name) {
    const info = models[name];
    if (!info) {
      modelInfo.textContent = "";
      return;
    }
    const parts = [`v${info.version}`];
    if (info.dataset) parts.push(info.dataset);
    if (info.test_metrics && typeof info.test_metrics.f1 === "number") {
      parts.push(`test F1 ${info.test_metrics.f1.toFixed(2)}`);
    }
    modelInfo.textContent = parts.join(" · ");
    modelInfo.title = info.description || "";
  }

  function setModelOptions(names, selected) {
    modelBox.replaceChildren();
    for (const name of names) {
      const option = el("option", "", name);
      option.value = name;
      modelBox.append(option);
    }
    if (selected) modelBox.value = selected;
  }

  // A server started with TAGSERVE_API_KEYS answers 401: ask for a key once, keep it for
  // this tab only (sessionStorage), and send it as a bearer token.
  const KEY_STORE = "tagserve-api-key";
  async function authorizedFetch(url, options = {}) {
    const send = () => {
      const key = sessionStorage.getItem(KEY_STORE);
      const headers = { ...(options.headers || {}) };
      if (key) headers.Authorization = `Bearer ${key}`;
      return fetch(url, { ...options, headers });
    };
    let response = await send();
    if (response.status === 401) {
      const key = window.prompt("This tagserve server needs an API key:");
      if (key) {
        sessionStorage.setItem(KEY_STORE, key.trim());
        response = await send();
      }
    }
    return response;
  }

  async function loadModels(wanted) {
    try {
      const response = await authorizedFetch("models", { headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
      models = Object.fromEntries(body.models.map((m) => [m.name, m]));
      const names = body.models.map((m) => m.name);
      // A shared link may name a model this server does not load: keep it so the
      // service's own error message explains.
      if (wanted && !names.includes(wanted)) names.push(wanted);
      setModelOptions(names, wanted || body.default);
    } catch (error) {
      showError(`Could not list the models (GET /models): ${error.message}`);
      if (wanted) setModelOptions(["ner", "slots", wanted].filter((v, i, a) => a.indexOf(v) === i), wanted);
    }
    describeModel(modelBox.value);
  }

  // The service counts offsets in code points; JS strings index UTF-16 units.
  // Models with an intent head (slots) answer the text's intent: shown above the slots.
  function renderIntent(intent) {
    intentLine.hidden = !intent;
    if (!intent) return;
    intentLine.replaceChildren(
      el("span", "intent-name", "Intent "),
      el("strong", "intent-label", intent.label),
      el("span", "intent-score", ` ${(100 * intent.score).toFixed(1)}%`),
    );
  }

  function renderDoc(text, entities) {
    const chars = Array.from(text);
    doc.replaceChildren();
    let cursor = 0;
    const sorted = [...entities].sort((a, b) => a.start - b.start);
    for (const entity of sorted) {
      if (entity.start < cursor) continue; // overlapping spans cannot come from a tagger
      if (entity.start > cursor) doc.append(chars.slice(cursor, entity.start).join(""));
      const mark = el("mark", "entity", chars.slice(entity.start, entity.end).join(""));
      mark.dataset.label = entity.label;
      mark.style.setProperty("--label-colour", labelColour(entity.label));
      mark.title = `${entity.label} · confidence ${entity.score.toFixed(3)}`;
      mark.append(el("span", "label", entity.label));
      doc.append(mark);
      cursor = entity.end;
    }
    if (cursor < chars.length) doc.append(chars.slice(cursor).join(""));
    if (!text.trim()) doc.append(el("span", "muted", "(empty text)"));

    legend.replaceChildren();
    const counts = new Map();
    for (const entity of sorted) counts.set(entity.label, (counts.get(entity.label) || 0) + 1);
    for (const [label, count] of [...counts].sort()) {
      const item = el("li");
      const swatch = el("span", "swatch");
      swatch.style.setProperty("--label-colour", labelColour(label));
      item.append(swatch, `${label} × ${count}`);
      legend.append(item);
    }
    legend.hidden = counts.size === 0;
  }

  function renderTokens(tokens) {
    tokenRows.replaceChildren();
    tokens.forEach((token, i) => {
      const row = el("tr");
      if (token.tag !== "O") row.className = "in-entity";
      row.append(el("td", "num", String(i + 1)));
      row.append(el("td", "token", token.text));
      row.append(el("td", "num offsets", `${token.start}–${token.end}`));

      const tagCell = el("td");
      const tag = el("span", "tag", token.tag);
      if (token.tag !== "O") {
        tag.style.setProperty("--label-colour", labelColour(token.tag.slice(2)));
      }
      tagCell.append(tag);
      row.append(tagCell);

      const scoreCell = el("td", "score");
      const meter = el("span", "meter");
      meter.setAttribute("aria-hidden", "true");
      const fill = el("span", "meter-fill");
      fill.style.width = `${Math.round(token.score * 100)}%`;
      if (token.score < 0.6) scoreCell.classList.add("low");
      meter.append(fill);
      const score = el("span", "score-inner");
      score.append(meter, el("span", "score-value", token.score.toFixed(3)));
      scoreCell.append(score);
      row.append(scoreCell);
      tokenRows.append(row);
    });
    if (tokens.length === 0) {
      const row = el("tr");
      const cell = el("td", "muted", "No tokens.");
      cell.colSpan = 5;
      row.append(cell);
      tokenRows.append(row);
    }
  }

  function updateUrl(model, text) {
    const params = new URLSearchParams({ model, text });
    history.replaceState(null, "", `${location.pathname}?${params}`);
  }

  async function tag() {
    const text = textBox.value;
    const model = modelBox.value;
    updateUrl(model, text);
    if (inFlight) inFlight.abort();
    const controller = new AbortController();
    inFlight = controller;
    submitButton.disabled = true;
    output.setAttribute("aria-busy", "true");
    const started = performance.now();
    try {
      const response = await authorizedFetch("tag", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ text, model }),
        signal: controller.signal,
      });
      const elapsed = performance.now() - started;
      let body;
      try {
        body = await response.json();
      } catch {
        throw new Error(`HTTP ${response.status} ${response.statusText} (not JSON)`);
      }
      if (!response.ok) {
        throw new Error(typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`);
      }
      clearError();
      const [result] = body.results;
      renderIntent(result.intent);
      renderDoc(result.text, result.entities);
      renderTokens(result.tokens);
      const n = result.entities.length;
      stats.replaceChildren(
        el("span", "", `${body.model.name} v${body.model.version}`),
        el("span", "", `${result.tokens.length} tokens`),
        el("span", "", `${n} ${n === 1 ? "entity" : "entities"}`),
        el("span", "elapsed", `${Math.round(elapsed)} ms`),
      );
      output.hidden = false;
    } catch (error) {
      if (error.name === "AbortError") return;
      output.hidden = true;
      showError(error.message);
    } finally {
      if (inFlight === controller) {
        inFlight = null;
        submitButton.disabled = false;
        output.removeAttribute("aria-busy");
      }
    }
  }

  function addExamples() {
    for (const example of EXAMPLES) {
      const button = el("button", "example", `${example.model}: ${example.text.split(" ").slice(0, 3).join(" ")}…`);
      button.type = "button";
      button.title = example.text;
      button.addEventListener("click", () => {
        if ([...modelBox.options].some((o) => o.value === example.model)) {
          modelBox.value = example.model;
          describeModel(example.model);
        }
        textBox.value = example.text;
        tag();
      });
      examplesBox.append(button);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    tag();
  });
  textBox.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  modelBox.addEventListener("change", () => describeModel(modelBox.value));

  async function start() {
    addExamples();
    const params = new URLSearchParams(location.search);
    const text = params.get("text");
    await loadModels(params.get("model"));
    if (text !== null) {
      textBox.value = text;
      await tag();
    }
    document.body.dataset.ready = "true";
  }

  start();
})();
