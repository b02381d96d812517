// Multi-label widget: a label's hotkey (or a click on its button) toggles it; the answer is the
// set in label-set order, {"labels": [...]}. Without the project's allow_none an empty set is
// not an answer yet. See the widget contract in static/js/labeling.js.
(() => {
  "use strict";

  window.AssayWidgets = window.AssayWidgets || {};
  window.AssayWidgets.multi_label = {
    mount(itemEl, ctx) {
      const choices = Array.from(ctx.controls.querySelectorAll("[data-label]"));
      const hotkeys = new Map(
        choices.filter((b) => b.dataset.hotkey).map((b) => [b.dataset.hotkey.toLowerCase(), b]),
      );
      const allowNone = Boolean(ctx.config.options.allow_none);
      const picked = new Set();

      function paint() {
        for (const choice of choices) {
          choice.setAttribute("aria-pressed", String(picked.has(choice.dataset.label)));
        }
        ctx.changed();
      }

      function toggle(button) {
        const label = button.dataset.label;
        if (picked.has(label)) picked.delete(label);
        else picked.add(label);
        paint();
      }
      paint();

      return {
        value() {
          if (!picked.size && !allowNone) return null;
          // Label-set order, whatever order the keys were pressed in.
          return { labels: choices.map((b) => b.dataset.label).filter((l) => picked.has(l)) };
        },
        missing: () => "Pick at least one label first: press its key.",
        // A suggestion (pre-label) in stored form: pre-select its labels.
        preset(value) {
          const wanted = new Set((value && value.labels) || []);
          for (const b of choices) if (wanted.has(b.dataset.label)) picked.add(b.dataset.label);
          paint();
        },
        keydown(event) {
          const button = hotkeys.get(event.key.toLowerCase());
          if (!button) return false;
          if (!event.repeat) toggle(button);
          return true;
        },
        click(event) {
          const button = event.target.closest("[data-label]");
          if (!button || !ctx.controls.contains(button)) return false;
          toggle(button);
          return true;
        },
        destroy() {
          picked.clear();
          for (const choice of choices) choice.setAttribute("aria-pressed", "false");
        },
      };
    },
  };
})();
