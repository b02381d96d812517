// Boxes widget: draw labelled rectangles on the item's image. Answer (stored form, see
// annotation/task_types/boxes.py): {"boxes": [{"x", "y", "w", "h", "label"}...]} in IMAGE pixels,
// (x, y) the top-left corner, whatever size the image is shown at: pointer positions are scaled
// by the image's natural size (item width/height, else the loaded image's) over its shown size,
// and boxes are drawn in percentages of the image, so they follow any resize.
//
// Drag on the image to draw a box (drags without area are ignored); the new box is selected.
// A label's hotkey (or button) labels the selected box. Click a box, or Tab to it (each box is
// focusable), to select it; a click on bare image unselects. Delete/Backspace removes the
// selected box; arrow keys move it by one image pixel (Shift: ten); Esc unselects.
// value() is null while a box has no label ("Label every box"), and with no box at all when the
// project does not allow an empty answer (allow_none false).
(() => {
  "use strict";

  const CLICK_SLOP = 3; // display pixels a press may move and still be a click, not a drag

  const round = (n) => Math.round(n * 100) / 100;

  function mount(itemEl, ctx) {
    const options = ctx.config.options || {};
    const allowNone = options.allow_none !== false;
    const minSize = Math.max(Number(options.min_size) || 0, 0);
    const labels = ctx.config.labels || [];
    const colours = new Map(labels.map((label) => [label.value, label.colour || ""]));
    const hotkeys = new Map(
      labels.filter((l) => l.hotkey).map((l) => [String(l.hotkey).toLowerCase(), l.value]),
    );

    const holder = itemEl.querySelector("[data-boxes]");
    const image = itemEl.querySelector(".boxes-image");
    const layer = itemEl.querySelector("[data-boxes-layer]");

    let boxes = []; // {x, y, w, h, label}, image pixels
    let selected = null;
    let press = null; // {x, y, clientX, clientY, pointerId} while the pointer is down
    let draft = null; // the element of the box being drawn

    // The image's natural size: from the item (as imported), else from the loaded file.
    function size() {
      const width = Number(holder.dataset.width) || image.naturalWidth;
      const height = Number(holder.dataset.height) || image.naturalHeight;
      return width && height ? { width, height } : null;
    }

    function toImage(event) {
      const rect = layer.getBoundingClientRect();
      const { width, height } = size();
      const x = ((event.clientX - rect.left) / rect.width) * width;
      const y = ((event.clientY - rect.top) / rect.height) * height;
      return { x: Math.max(0, Math.min(width, x)), y: Math.max(0, Math.min(height, y)) };
    }

    function place(el, box) {
      const { width, height } = size();
      el.style.left = `${(box.x / width) * 100}%`;
      el.style.top = `${(box.y / height) * 100}%`;
      el.style.width = `${(box.w / width) * 100}%`;
      el.style.height = `${(box.h / height) * 100}%`;
    }

    function render({ focus = false } = {}) {
      const hadFocus = layer.contains(document.activeElement);
      layer.replaceChildren(
        ...boxes.map((box, index) => {
          const el = document.createElement("div");
          el.className = "boxes-box";
          el.tabIndex = 0;
          el.dataset.boxIndex = String(index);
          el.setAttribute("role", "button");
          el.setAttribute(
            "aria-label",
            `Box ${index + 1}: ${box.label || "no label yet"}, ${Math.round(box.w)}×${Math.round(box.h)} px`,
          );
          if (box.label) {
            el.dataset.label = box.label;
            el.style.setProperty("--box-colour", colours.get(box.label) || "#777");
          } else {
            el.classList.add("is-unlabelled");
            el.dataset.label = "?";
          }
          if (box === selected) el.classList.add("is-selected");
          el.setAttribute("aria-pressed", String(box === selected));
          place(el, box);
          return el;
        }),
      );
      if (selected && (focus || hadFocus)) {
        layer.children[boxes.indexOf(selected)].focus({ preventScroll: true });
      }
      ctx.changed();
    }

    function select(box, { focus = false } = {}) {
      selected = box;
      render({ focus });
    }

    // The smallest box under a pointer position (nested boxes: the inner one wins).
    function boxAt(point) {
      const under = boxes.filter(
        (b) => point.x >= b.x && point.x <= b.x + b.w && point.y >= b.y && point.y <= b.y + b.h,
      );
      return under.reduce((a, b) => (a === null || b.w * b.h < a.w * a.h ? b : a), null);
    }

    function rectOf(a, b) {
      return {
        x: Math.min(a.x, b.x),
        y: Math.min(a.y, b.y),
        w: Math.abs(a.x - b.x),
        h: Math.abs(a.y - b.y),
      };
    }

    function onPointerDown(event) {
      if (event.button !== 0 || !size()) return;
      event.preventDefault(); // no native image drag or text selection
      layer.setPointerCapture(event.pointerId);
      press = { ...toImage(event), clientX: event.clientX, clientY: event.clientY };
      press.pointerId = event.pointerId;
    }

    function onPointerMove(event) {
      if (!press || event.pointerId !== press.pointerId) return;
      if (!draft) {
        const moved =
          Math.abs(event.clientX - press.clientX) > CLICK_SLOP ||
          Math.abs(event.clientY - press.clientY) > CLICK_SLOP;
        if (!moved) return;
        draft = document.createElement("div");
        draft.className = "boxes-box is-draft";
        layer.append(draft);
      }
      place(draft, rectOf(press, toImage(event)));
    }

    function onPointerUp(event) {
      if (!press || event.pointerId !== press.pointerId) return;
      const start = press;
      press = null;
      if (!draft) {
        select(boxAt(start), { focus: true }); // a click: pick the box under it, or none
        return;
      }
      draft.remove();
      draft = null;
      const rect = rectOf(start, toImage(event));
      const box = { x: round(rect.x), y: round(rect.y), w: round(rect.w), h: round(rect.h) };
      if (box.w <= 0 || box.h <= 0 || box.w < minSize || box.h < minSize) {
        ctx.say("That box has no area: drag across the object to draw one.");
        return;
      }
      box.label = "";
      boxes = [...boxes, box];
      ctx.say("");
      select(box, { focus: true });
    }

    function onPointerCancel() {
      press = null;
      if (draft) draft.remove();
      draft = null;
    }

    function onFocusIn(event) {
      const el = event.target.closest(".boxes-box");
      if (!el || el.classList.contains("is-draft")) return;
      const box = boxes[Number(el.dataset.boxIndex)];
      if (box && box !== selected) select(box, { focus: true });
    }

    function nudge(dx, dy) {
      const { width, height } = size();
      selected.x = round(Math.max(0, Math.min(width - selected.w, selected.x + dx)));
      selected.y = round(Math.max(0, Math.min(height - selected.h, selected.y + dy)));
      render({ focus: true });
    }

    function labelSelected(label) {
      if (!selected) {
        ctx.say("Draw a box first, or select one: click it or Tab to it.");
        return;
      }
      selected.label = label;
      ctx.say("");
      render({ focus: true });
    }

    layer.addEventListener("pointerdown", onPointerDown);
    layer.addEventListener("pointermove", onPointerMove);
    layer.addEventListener("pointerup", onPointerUp);
    layer.addEventListener("pointercancel", onPointerCancel);
    layer.addEventListener("focusin", onFocusIn);
    // Sizes from the file are only known once it has loaded (items without width/height).
    const onLoad = () => render();
    image.addEventListener("load", onLoad);
    render();

    const steps = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };

    return {
      value() {
        if (boxes.some((box) => !box.label)) return null;
        if (!boxes.length && !allowNone) return null;
        return { boxes: boxes.map(({ x, y, w, h, label }) => ({ x, y, w, h, label })) };
      },
      // A suggestion (pre-label) in stored form: draw its boxes (once the size is known).
      preset(value) {
        const given = (value && value.boxes) || [];
        boxes = given.map(({ x, y, w, h, label }) => ({ x, y, w, h, label }));
        selected = null;
        if (size()) render();
        else ctx.changed();
      },
      missing() {
        if (boxes.some((box) => !box.label)) {
          return "Label every box: select it and press a label's key.";
        }
        return "Draw at least one box: drag on the image.";
      },
      keydown(event) {
        if (event.key === "Delete" || event.key === "Backspace") {
          if (!selected) return false;
          boxes = boxes.filter((box) => box !== selected);
          selected = null;
          render();
          return true;
        }
        if (event.key === "Escape") {
          onPointerCancel();
          if (selected) select(null);
          return true;
        }
        if (event.key in steps && selected) {
          const [dx, dy] = steps[event.key].map((n) => n * (event.shiftKey ? 10 : 1));
          nudge(dx, dy);
          return true;
        }
        const label = hotkeys.get(event.key.toLowerCase());
        if (label === undefined) return false;
        if (!event.repeat) labelSelected(label);
        return true;
      },
      click(event) {
        const button = event.target.closest("[data-box-label]");
        if (button && ctx.controls.contains(button)) {
          labelSelected(button.dataset.boxLabel);
          return true;
        }
        return layer.contains(event.target);
      },
      destroy() {
        layer.removeEventListener("pointerdown", onPointerDown);
        layer.removeEventListener("pointermove", onPointerMove);
        layer.removeEventListener("pointerup", onPointerUp);
        layer.removeEventListener("pointercancel", onPointerCancel);
        layer.removeEventListener("focusin", onFocusIn);
        image.removeEventListener("load", onLoad);
        boxes = [];
        selected = null;
      },
    };
  }

  window.AssayWidgets = window.AssayWidgets || {};
  window.AssayWidgets.boxes = { mount };
})();
