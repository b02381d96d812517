// Expert review page (quality/review.html). Keyboard first: Enter accepts the consensus, a
// label's hotkey decides that label, arrow keys (or J/K) move through the workers' answers
// (Enter on one picks it), S skips. Decisions are htmx form posts whose reply is the next
// item, so the page never reloads; while one is in flight further keys are ignored.
(() => {
  "use strict";

  const root = document.getElementById("review");
  if (!root) return;
  let busy = false;

  const stage = () => root.querySelector("#review-stage");
  const form = () => root.querySelector("#review-form");
  const answers = () => Array.from(root.querySelectorAll("[data-answer]"));

  function typing(target) {
    return target.closest("input, textarea, select, [contenteditable='true']");
  }

  function press(element) {
    if (!element || element.disabled || busy) return;
    element.click();
  }

  function moveAnswer(step) {
    const list = answers();
    if (!list.length) return;
    const at = list.indexOf(document.activeElement);
    const next = at < 0 ? (step > 0 ? 0 : list.length - 1) : (at + step + list.length) % list.length;
    list[next].focus();
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    if (typing(event.target) || !form()) return;
    const key = event.key.toLowerCase();
    if (key === "enter") {
      // A focused button or link does its own thing on Enter (e.g. picking that answer).
      if (event.target.closest("button, a")) return;
      event.preventDefault();
      press(root.querySelector("[data-action=accept]"));
    } else if (key === "arrowdown" || key === "j") {
      event.preventDefault();
      moveAnswer(1);
    } else if (key === "arrowup" || key === "k") {
      event.preventDefault();
      moveAnswer(-1);
    } else if (key === "s") {
      event.preventDefault();
      press(root.querySelector("[data-action=skip]"));
    } else {
      const choice = root.querySelector(`[data-hotkey="${CSS.escape(key)}"]`)
        || root.querySelector(`[data-hotkey="${CSS.escape(event.key)}"]`);
      if (choice) {
        event.preventDefault();
        press(choice);
      }
    }
  });

  // Listeners sit on the document: the form that sent a request is swapped out before htmx
  // reports the request finished.
  const idle = () => {
    busy = false;
    root.removeAttribute("aria-busy");
  };
  document.addEventListener("htmx:beforeRequest", (event) => {
    if (!root.contains(event.target)) return;
    busy = true;
    root.setAttribute("aria-busy", "true");
  });
  for (const name of ["htmx:afterRequest", "htmx:responseError", "htmx:sendError"]) {
    document.addEventListener(name, idle);
  }
  // After the next item is swapped in, focus it so the keyboard (and screen readers) follow.
  document.addEventListener("htmx:afterSettle", () => {
    idle();
    const item = stage() && stage().querySelector(".review-item");
    if (item) item.focus({ preventScroll: true });
  });
})();
