// Free text widget: the item's textarea has the focus when the item shows. Enter submits,
// Shift+Enter starts a new line, Escape leaves the box (then S skips). The answer is
// {"text": stripped text}; empty only with the project's allow_empty.
// See the widget contract in static/js/labeling.js.
(() => {
  "use strict";

  window.AssayWidgets = window.AssayWidgets || {};
  window.AssayWidgets.free_text = {
    mount(itemEl, ctx) {
      const box = itemEl.querySelector("textarea");
      const count = ctx.controls.querySelector("[data-count]");
      const allowEmpty = Boolean(ctx.config.options.allow_empty);

      const text = () => box.value.trim();
      function onInput() {
        if (count) count.textContent = String(box.value.length);
        ctx.changed();
      }
      box.addEventListener("input", onInput);
      onInput();
      box.focus({ preventScroll: true });

      return {
        value() {
          const answer = text();
          return answer || allowEmpty ? { text: answer } : null;
        },
        missing: () => "Type your answer first (Esc, then S, skips the item).",
        // A suggestion (pre-label) in stored form: pre-fill the box with its text.
        preset(value) {
          if (!value || typeof value.text !== "string") return;
          box.value = value.text;
          box.setSelectionRange(box.value.length, box.value.length);
          onInput();
        },
        keydown(event) {
          if (event.key === "Escape" && event.target === box) {
            box.blur();
            return true;
          }
          // Outside the box, "i" puts the cursor back in it.
          if (event.target !== box && event.key === "i") {
            box.focus();
            return true;
          }
          return false;
        },
        click: () => false,
        destroy() {
          box.removeEventListener("input", onInput);
          if (count) count.textContent = "0";
        },
      };
    },
  };
})();
