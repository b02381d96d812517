// Rating widget: a number key (1-9, 0 for 10, as shown on the buttons) or a click picks a point
// of the scale; the answer is {"rating": n}. See the widget contract in static/js/labeling.js.
(() => {
  "use strict";

  window.AssayWidgets = window.AssayWidgets || {};
  window.AssayWidgets.rating = {
    mount(itemEl, ctx) {
      const points = Array.from(ctx.controls.querySelectorAll("[data-rating]"));
      const hotkeys = new Map(points.map((b) => [b.dataset.hotkey, b]));
      let rating = null;

      function pick(button) {
        rating = button ? Number(button.dataset.rating) : null;
        for (const point of points) point.setAttribute("aria-pressed", String(point === button));
        ctx.changed();
      }
      pick(null);

      return {
        value: () => (rating === null ? null : { rating }),
        // A suggestion (pre-label) in stored form: pre-select its point of the scale.
        preset(value) {
          const button = points.find((b) => value && Number(b.dataset.rating) === value.rating);
          if (button) pick(button);
        },
        missing: () => "Rate the item first: press a number key.",
        keydown(event) {
          const button = hotkeys.get(event.key);
          if (!button) return false;
          if (!event.repeat) pick(button);
          return true;
        },
        click(event) {
          const button = event.target.closest("[data-rating]");
          if (!button || !ctx.controls.contains(button)) return false;
          pick(button);
          return true;
        },
        destroy() {
          for (const point of points) point.setAttribute("aria-pressed", "false");
        },
      };
    },
  };
})();
