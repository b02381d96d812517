// Pairwise widget: two panes, A and B. In preference mode a / b / t (tie, when allowed) choose;
// in duplicate mode d / n. The chosen pane is highlighted; the answer is {"choice": ...}.
// See the widget contract in static/js/labeling.js.
(() => {
  "use strict";

  window.AssayWidgets = window.AssayWidgets || {};
  window.AssayWidgets.pairwise = {
    mount(itemEl, ctx) {
      const buttons = Array.from(ctx.controls.querySelectorAll("[data-choice]"));
      const hotkeys = new Map(buttons.map((b) => [b.dataset.hotkey, b]));
      const panes = Array.from(itemEl.querySelectorAll(".pair-pane"));
      let choice = null;

      function choose(button) {
        choice = button ? button.dataset.choice : null;
        for (const b of buttons) b.setAttribute("aria-pressed", String(b === button));
        for (const pane of panes) {
          const side = pane.dataset.side;
          pane.classList.toggle("is-chosen", choice === side || choice === "tie");
        }
        ctx.changed();
      }
      choose(null);

      return {
        value: () => (choice === null ? null : { choice }),
        // A suggestion (pre-label) in stored form: pre-select its side (or tie / verdict).
        preset(value) {
          const button = buttons.find((b) => value && b.dataset.choice === value.choice);
          if (button) choose(button);
        },
        missing: () =>
          ctx.config.options.mode === "duplicate"
            ? "Say whether they are duplicates first: press d or n."
            : "Choose A or B first: press a or b.",
        keydown(event) {
          const button = hotkeys.get(event.key.toLowerCase());
          if (!button) return false;
          if (!event.repeat) choose(button);
          return true;
        },
        click(event) {
          const button = event.target.closest("[data-choice]");
          if (button && ctx.controls.contains(button)) {
            choose(button);
            return true;
          }
          // A click on a pane picks it (preference mode).
          const pane = event.target.closest(".pair-pane");
          const byPane = pane && buttons.find((b) => b.dataset.choice === pane.dataset.side);
          if (!byPane) return false;
          choose(byPane);
          return true;
        },
        destroy() {
          for (const b of buttons) b.setAttribute("aria-pressed", "false");
        },
      };
    },
  };
})();
