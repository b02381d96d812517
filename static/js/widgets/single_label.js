// Single label widget: a label's hotkey (or a click on its button) picks it; picking another
// replaces it. Answer: {"label": value}. See the widget contract in static/js/labeling.js.
(() => {
  "use strict";

  window.AssayWidgets = window.AssayWidgets || {};
  window.AssayWidgets.single_label = {
    mount(itemEl, ctx) {
      const choices = Array.from(ctx.controls.querySelectorAll("[data-label]"));
      const hotkeys = new Map(
        choices.filter((b) => b.dataset.hotkey).map((b) => [b.dataset.hotkey.toLowerCase(), b]),
      );
      let selected = null;

      function select(button) {
        selected = button ? button.dataset.label : null;
        for (const choice of choices) choice.setAttribute("aria-pressed", String(choice === button));
        ctx.changed();
      }
      select(null);

      return {
        value: () => (selected === null ? null : { label: selected }),
        // A suggestion (pre-label) in stored form: pre-select its label.
        preset(value) {
          const button = choices.find((b) => value && b.dataset.label === value.label);
          if (button) select(button);
        },
        missing: () => "Choose a label first: press its key.",
        keydown(event) {
          const button = hotkeys.get(event.key.toLowerCase());
          if (!button || event.repeat) return Boolean(button);
          select(button);
          return true;
        },
        click(event) {
          const button = event.target.closest("[data-label]");
          if (!button || !ctx.controls.contains(button)) return false;
          select(button);
          return true;
        },
        destroy() {
          for (const choice of choices) choice.setAttribute("aria-pressed", "false");
        },
      };
    },
  };
})();
