// Labeling page (crowd/assignment_label.html). Keyboard first: the task type's widget
// (static/js/widgets/<type>.js, window.AssayWidgets[type]) takes the answer, Enter submits,
// S skips. The page always holds the next item ready: a submit swaps it in at once and sends the
// answer in the background; the reply carries the item(s) that refill the buffer. Configuration
// comes from data- attributes and a json_script block (no inline scripts, CSP-friendly).
(() => {
  "use strict";

  const root = document.getElementById("labeling");
  if (!root) return;

  const stage = root.querySelector("[data-stage]");
  const noticeEl = root.querySelector("[data-notice]");
  const doneEl = root.querySelector("[data-done]");
  const controls = root.querySelector("[data-controls]");
  const submitButton = root.querySelector("[data-action=submit]");
  const csrfToken = root.dataset.csrfToken;
  const configEl = document.getElementById("task-config");
  const config = configEl ? JSON.parse(configEl.textContent) : { labels: [], options: {} };
  const widget = (window.AssayWidgets || {})[root.dataset.taskType];

  const fromTemplate = (id) => {
    const template = document.getElementById(id);
    return template ? Array.from(template.content.children, (node) => node.cloneNode(true)) : [];
  };

  // Label colours travel as data-colour (no inline styles); painted once here.
  for (const chip of root.querySelectorAll("[data-colour]")) {
    if (chip.dataset.colour) chip.style.setProperty("--chip", chip.dataset.colour);
  }

  const state = {
    current: stage.querySelector(".label-item"),
    controller: null,
    shownAt: performance.now(),
    buffer: fromTemplate("label-buffer"),
    inflight: 0,
    pending: new Set(), // ids whose answer is on its way to the server
    done: Number(doneEl.textContent) || 0,
  };
  // Every assignment this page was ever given. A reply can be overtaken by a later one and
  // offer an item the worker already finished; such items are dropped, never shown twice.
  const seen = new Set(heldIdsOf(state));

  function heldIdsOf({ current, buffer }) {
    return [current, ...buffer].filter(Boolean).map((item) => item.dataset.assignmentId);
  }
  const heldIds = () => heldIdsOf(state);

  let askedFor = false; // the notice says what the answer still misses

  // The current item's suggestion (pre-label): {id, value, source_label, model_name,
  // model_version} from the item's data-suggestion, plus its chip. The widget pre-selects it;
  // while the answer is still exactly it, it is marked as a suggestion (chip, dashed outline)
  // and Enter accepts it; any change makes the answer the worker's own. The server decides
  // what was accepted: the page only says which suggestion it showed.
  let suggestion = null;

  // JSON with object keys sorted, so two answers compare equal whatever their key order.
  const canonical = (value) =>
    JSON.stringify(value, (_key, v) =>
      v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]]))
        : v,
    );

  function suggestionOf(item) {
    if (!item.dataset.suggestion) return null;
    try {
      const shown = JSON.parse(item.dataset.suggestion);
      const model = [shown.model_name, shown.model_version].filter(Boolean).join(" ");
      shown.who = model ? `${shown.source_label} (${model})` : shown.source_label;
      shown.key = canonical(shown.value);
      shown.chip = document.createElement("p");
      shown.chip.className = "suggestion-chip";
      shown.chip.setAttribute("role", "status");
      item.prepend(shown.chip);
      return shown;
    } catch (error) {
      return null; // a garbled suggestion is no suggestion
    }
  }

  function paintSuggestion() {
    if (!suggestion) return;
    const value = state.controller ? state.controller.value() : null;
    const same = value !== null && canonical(value) === suggestion.key;
    state.current.classList.toggle("is-suggested", same);
    controls.classList.toggle("is-suggested", same);
    suggestion.chip.classList.toggle("is-changed", !same);
    suggestion.chip.textContent = same
      ? `Suggested by ${suggestion.who}. Enter accepts it; any change makes the answer yours.`
      : `Your own answer (the suggestion by ${suggestion.who} was changed).`;
  }

  function say(message) {
    noticeEl.textContent = message;
    askedFor = false;
  }

  function answer() {
    return state.controller ? state.controller.value() : null;
  }

  function changed() {
    const ready = answer() !== null;
    submitButton.setAttribute("aria-disabled", String(!ready));
    if (ready && askedFor) say("");
    paintSuggestion();
  }

  function unmount() {
    if (state.controller) state.controller.destroy();
    state.controller = null;
    if (suggestion) suggestion.chip.remove();
    suggestion = null;
    controls.classList.remove("is-suggested");
  }

  function mount(item) {
    if (!widget) {
      say("This page cannot show this kind of item. Reload the page.");
      return;
    }
    suggestion = suggestionOf(item);
    const shown = suggestion && { value: suggestion.value, who: suggestion.who };
    const ctx = { root, controls, config, changed, say, suggestion: shown };
    state.controller = widget.mount(item, ctx);
    if (suggestion && state.controller.preset) state.controller.preset(suggestion.value);
    changed();
  }

  function show(item) {
    unmount();
    stage.replaceChildren(item);
    state.current = item;
    state.shownAt = performance.now(); // time on task starts when the item becomes visible
    root.dataset.state = "labeling";
    mount(item);
    root.dispatchEvent(new CustomEvent("labeling:shown", { detail: { at: state.shownAt } }));
  }

  function showPlaceholder(templateId, pageState) {
    unmount();
    state.current = null;
    stage.replaceChildren(...fromTemplate(templateId));
    root.dataset.state = pageState;
    changed();
  }

  function advance() {
    if (state.buffer.length) show(state.buffer.shift());
    else if (state.inflight) showPlaceholder("label-loading", "loading");
    else showPlaceholder("label-empty", "empty");
  }

  function setDone(delta) {
    state.done += delta;
    doneEl.textContent = String(state.done);
  }

  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // POST in the background; retried on network and server errors (submits are idempotent).
  async function post(url, body) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        const response = await fetch(url, {
          method: "POST",
          body,
          credentials: "same-origin",
          headers: { "X-CSRFToken": csrfToken },
        });
        if (response.status >= 500 && attempt < 3) throw new Error(`HTTP ${response.status}`);
        const template = document.createElement("template");
        template.innerHTML = await response.text();
        const refill = template.content.querySelector(".label-refill");
        if (refill) return { ok: response.ok, refill };
        const problem = response.redirected
          ? "Your session has ended. Reload the page to log in again."
          : `The server could not take that (HTTP ${response.status}). Reload the page.`;
        return { ok: false, refill: null, problem };
      } catch (error) {
        if (attempt >= 3) return { ok: false, refill: null, problem: "You seem to be offline." };
        say("Connection trouble, retrying…");
        await pause(800 * attempt);
      }
    }
  }

  async function send(id, url, body, isSubmit) {
    const { ok, refill, problem } = await post(url, body);
    state.inflight -= 1;
    state.pending.delete(id);
    if (!ok) seen.delete(id); // not saved: the item stays reserved and may come back
    if (isSubmit && !ok) setDone(-1);
    if (refill) {
      for (const item of Array.from(refill.querySelectorAll(".label-item"))) {
        if (seen.has(item.dataset.assignmentId)) continue;
        seen.add(item.dataset.assignmentId);
        state.buffer.push(item);
      }
      if (refill.dataset.notice) say(refill.dataset.notice);
    } else {
      say(`Your last answer may not have been saved. ${problem}`);
    }
    if (!state.current) advance();
  }

  function finish(action) {
    const item = state.current;
    if (!item) return;
    const body = new URLSearchParams();
    if (action === "submit") {
      const value = answer();
      if (value === null) {
        say(state.controller ? state.controller.missing() : "Nothing to submit yet.");
        askedFor = true;
        return;
      }
      body.set("value", JSON.stringify(value));
      body.set("duration_ms", String(Math.round(performance.now() - state.shownAt)));
      if (suggestion) body.set("suggestion", String(suggestion.id));
      setDone(+1);
    }
    say("");
    state.inflight += 1; // before advancing, so an empty buffer shows "loading", not "empty"
    advance();
    body.set("held", heldIds().join(","));
    body.set("pending", Array.from(state.pending).join(","));
    const id = item.dataset.assignmentId;
    state.pending.add(id);
    const url = action === "submit" ? item.dataset.submitUrl : item.dataset.skipUrl;
    send(id, url, body, action === "submit");
  }

  // Whether `target` is the widget's own (inside the item or its controls), not page chrome.
  const inWidget = (target) => stage.contains(target) || controls.contains(target);

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.isComposing) return;
    const target = event.target instanceof Element ? event.target : document.body;
    const key = event.key.toLowerCase();
    if (target.closest("input, textarea, select, [contenteditable]")) {
      // Typing belongs to the widget; only Enter (without Shift) in its textarea submits.
      if (!inWidget(target)) return;
      if (state.controller && state.controller.keydown(event)) {
        event.preventDefault();
      } else if (key === "enter" && !event.shiftKey && target.closest("textarea")) {
        event.preventDefault();
        if (!event.repeat) finish("submit");
      }
      return;
    }
    if (state.current && state.controller && state.controller.keydown(event)) {
      event.preventDefault();
      return;
    }
    if (key === "enter") {
      // Links, <summary> and the page's buttons (Skip, Log out) keep their own Enter.
      if (target.closest("a, summary, button") && !inWidget(target)) return;
      event.preventDefault();
      if (!event.repeat) finish("submit");
    } else if (key === "s") {
      event.preventDefault();
      if (!event.repeat) finish("skip");
    }
  });

  root.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const action = target.closest("[data-action]");
    if (action) {
      finish(action.dataset.action);
      return;
    }
    if (state.current && state.controller && state.controller.click(event)) {
      event.preventDefault();
    }
  });

  if (state.current) mount(state.current);
  root.dataset.ready = "true"; // keys are listened to from here on (tests wait for this)
})();
