// Spans widget: mark pieces of the item's text with labels (and, when the project has relation
// labels, link marked pieces). Answer (stored form, see annotation/task_types/spans.py):
//   {"spans": [{"start", "end", "label"}...] sorted by (start, end, label), unique;
//    "relations": [{"from", "to", "label"}...] with from/to indexes into that sorted list}
// Offsets count characters (Unicode code points) of the ORIGINAL string, end exclusive: the
// text is rendered by this script from the exact string in the item's JSON block, and DOM
// positions are turned into offsets with a Range measured against the text element.
//
// Selecting (two ways, both end up as the widget's own selection, drawn as a highlight):
// - mouse: drag over the text; the browser's selection is read on mouseup and replaced by ours;
// - keyboard: the text element is focusable (focused when the item is shown) and shows a caret;
//   ←/→ move it by a character and ↑/↓ by a word, Home/End to the ends; with Shift they extend
//   the selection. We manage this caret ourselves: browsers do not move a selection in
//   non-editable text with the keyboard (unless caret browsing is on).
// A label's hotkey (or its button) marks the selection, snapped to its characters with
// surrounding whitespace trimmed. Each span ends with a chip naming its label: clicking the chip,
// or focusing it with Tab and pressing Delete/Backspace, removes the span. Without relation labels
// a click on a marked piece removes its innermost span too.
// Relations: click a span (it becomes the "from" span), Alt+click another (the "to" span), then
// press Shift+<n> for the n-th relation label or click its button. From the keyboard: on a
// focused chip, "[" makes it "from" and "]" makes it "to". Esc clears selection and choice.
(() => {
  "use strict";

  const SPACE = /\s/u;
  const WORD = /[\p{L}\p{N}_]/u;

  function mount(itemEl, ctx) {
    const options = ctx.config.options || {};
    const field = options.field || "text";
    const allowNone = options.allow_none !== false;
    const allowOverlap = options.allow_overlap !== false;
    const relationLabels = options.relation_labels || [];
    const labels = ctx.config.labels || [];
    const colours = new Map(labels.map((label) => [label.value, label.colour || ""]));
    const hotkeys = new Map(
      labels.filter((l) => l.hotkey).map((l) => [String(l.hotkey).toLowerCase(), l.value]),
    );

    const textEl = itemEl.querySelector("[data-spans-text]");
    const pendingEl = itemEl.querySelector("[data-spans-pending]");
    const relationsEl = itemEl.querySelector("[data-spans-relations]");
    const dataEl = itemEl.querySelector("script[type='application/json']");
    const data = dataEl ? JSON.parse(dataEl.textContent) : {};
    const text = typeof data[field] === "string" ? data[field] : "";
    const chars = Array.from(text); // one entry per code point: what offsets count
    // UTF-16 unit offset (DOM) -> code point offset; a unit inside a pair snaps forward.
    const charAt = new Int32Array(text.length + 1);
    {
      let unit = 0;
      chars.forEach((char, index) => {
        charAt[unit] = index;
        if (char.length === 2) charAt[unit + 1] = index + 1;
        unit += char.length;
      });
      charAt[text.length] = chars.length;
    }

    let spans = []; // {start, end, label}, kept sorted and unique
    let relations = []; // {from: span, to: span, label}
    let anchor = null; // selection anchor (code points); the caret is the other end
    let caret = 0;
    let fromSpan = null;
    let toSpan = null;
    let justSelected = false; // a drag-selection's mouseup is followed by a click: ignore it

    const byOrder = (a, b) =>
      a.start - b.start || a.end - b.end || (a.label < b.label ? -1 : a.label > b.label ? 1 : 0);

    function selection() {
      if (anchor === null || anchor === caret) return null;
      return [Math.min(anchor, caret), Math.max(anchor, caret)];
    }

    // The code point offset of a DOM boundary point, clamped to the text element.
    function offsetOf(node, offset) {
      const whole = document.createRange();
      whole.selectNodeContents(textEl);
      const side = whole.comparePoint(node, offset);
      if (side < 0) return 0;
      if (side > 0) return chars.length;
      const before = document.createRange();
      before.setStart(textEl, 0);
      before.setEnd(node, offset);
      return charAt[Math.min(before.toString().length, text.length)];
    }

    // The browser's selection inside the text, as [start, end] code points, or null.
    function nativeSelection() {
      const native = document.getSelection();
      if (!native || native.rangeCount === 0 || native.isCollapsed) return null;
      const range = native.getRangeAt(0);
      if (!range.intersectsNode(textEl)) return null;
      const start = offsetOf(range.startContainer, range.startOffset);
      const end = offsetOf(range.endContainer, range.endOffset);
      return end > start ? [start, end] : null;
    }

    const spanText = (span) => chars.slice(span.start, span.end).join("");

    function segment(start, end, selected) {
      const covering = spans.filter((s) => s.start <= start && s.end >= end);
      const piece = chars.slice(start, end).join("");
      if (!covering.length && !selected) return document.createTextNode(piece);
      const el = document.createElement("span");
      el.className = "spans-seg";
      el.textContent = piece;
      if (selected) el.classList.add("is-selected");
      if (covering.length) {
        // The innermost (shortest) span is drawn on top and is the one a click acts on.
        const top = covering.reduce((a, b) => (b.end - b.start < a.end - a.start ? b : a));
        el.dataset.span = String(spans.indexOf(top));
        el.dataset.label = top.label;
        el.style.setProperty("--span-colour", colours.get(top.label) || "#777");
        if (covering.length > 1) el.classList.add("is-overlap");
        if (covering.includes(fromSpan)) el.classList.add("is-from");
        if (covering.includes(toSpan)) el.classList.add("is-to");
      }
      return el;
    }

    function chip(span, index) {
      const el = document.createElement("span");
      el.className = "spans-tag";
      el.tabIndex = 0;
      el.setAttribute("role", "button");
      el.dataset.spanIndex = String(index);
      el.dataset.label = span.label; // shown by CSS (::after): not part of the text's offsets
      el.setAttribute("aria-label", `${span.label}: “${spanText(span)}”. Delete removes it.`);
      el.style.setProperty("--span-colour", colours.get(span.label) || "#777");
      if (span === fromSpan) el.classList.add("is-from");
      if (span === toSpan) el.classList.add("is-to");
      return el;
    }

    function caretEl() {
      const el = document.createElement("span");
      el.className = "spans-caret";
      el.setAttribute("aria-hidden", "true");
      return el;
    }

    function render() {
      const focusedChip = document.activeElement && document.activeElement.closest(".spans-tag");
      const refocus = focusedChip && textEl.contains(focusedChip) ? focusedChip.dataset : null;
      const range = selection();
      const cuts = new Set([0, chars.length, caret]);
      for (const span of spans) cuts.add(span.start).add(span.end);
      if (range) cuts.add(range[0]).add(range[1]);
      const points = Array.from(cuts).sort((a, b) => a - b);
      const out = document.createDocumentFragment();
      points.forEach((start, i) => {
        if (start === caret) out.append(caretEl());
        const end = points[i + 1];
        if (end === undefined) return;
        const selected = Boolean(range && range[0] <= start && end <= range[1]);
        out.append(segment(start, end, selected));
        spans.forEach((span, index) => {
          if (span.end === end) out.append(chip(span, index));
        });
      });
      textEl.replaceChildren(out);
      if (refocus) {
        const again = textEl.querySelector(`.spans-tag[data-span-index="${refocus.spanIndex}"]`);
        if (again && again.dataset.label === refocus.label) again.focus({ preventScroll: true });
        else textEl.focus({ preventScroll: true });
      }
      renderRelations();
      ctx.changed();
    }

    function renderRelations() {
      if (!relationLabels.length) return;
      pendingEl.hidden = !fromSpan;
      pendingEl.textContent = fromSpan
        ? `From “${spanText(fromSpan)}”` +
          (toSpan ? ` to “${spanText(toSpan)}”: press a relation's key.` : ": Alt+click the target span.")
        : "";
      relationsEl.hidden = !relations.length;
      relationsEl.replaceChildren(
        ...relations.map((relation, index) => {
          const li = document.createElement("li");
          const words = document.createElement("span");
          words.textContent =
            `“${spanText(relation.from)}” → “${spanText(relation.to)}” (${relation.label}) `;
          const remove = document.createElement("button");
          remove.type = "button";
          remove.className = "btn btn-small";
          remove.dataset.relationIndex = String(index);
          remove.textContent = "Remove";
          remove.setAttribute("aria-label", `Remove relation ${index + 1}`);
          li.append(words, remove);
          return li;
        }),
      );
    }

    function clearSelection() {
      anchor = null;
      const native = document.getSelection();
      if (native && native.rangeCount && native.getRangeAt(0).intersectsNode(textEl)) {
        native.removeAllRanges();
      }
    }

    function tag(label) {
      const range = nativeSelection() || selection();
      if (!range) {
        ctx.say("Select some text first: drag over it, or use Shift+arrow keys in the text.");
        return;
      }
      let [start, end] = range;
      while (start < end && SPACE.test(chars[start])) start += 1;
      while (end > start && SPACE.test(chars[end - 1])) end -= 1;
      if (start >= end) {
        ctx.say("The selection holds only spaces: select some words.");
        return;
      }
      if (spans.some((s) => s.start === start && s.end === end && s.label === label)) {
        ctx.say("That text already has this label.");
      } else if (!allowOverlap && spans.some((s) => s.start < end && start < s.end)) {
        ctx.say("Spans may not overlap in this project: remove the other span first.");
        return;
      } else {
        spans = [...spans, { start, end, label }].sort(byOrder);
        ctx.say("");
      }
      clearSelection();
      caret = end;
      render();
      textEl.focus({ preventScroll: true });
    }

    function removeSpan(span) {
      spans = spans.filter((s) => s !== span);
      relations = relations.filter((r) => r.from !== span && r.to !== span);
      if (fromSpan === span) fromSpan = null;
      if (toSpan === span) toSpan = null;
      render();
    }

    function relate(label) {
      if (!fromSpan || !toSpan) {
        ctx.say("Click the span a relation starts from, then Alt+click the one it points to.");
        return;
      }
      if (fromSpan === toSpan) {
        ctx.say("A relation links two different spans.");
        return;
      }
      const exists = relations.some(
        (r) => r.from === fromSpan && r.to === toSpan && r.label === label,
      );
      if (!exists) relations = [...relations, { from: fromSpan, to: toSpan, label }];
      fromSpan = null;
      toSpan = null;
      ctx.say("");
      render();
    }

    function moveTo(position, extend) {
      const range = selection();
      if (!extend && range) {
        // Collapsing a selection with an arrow lands on its edge, as in text editors.
        caret = position < caret ? range[0] : range[1];
        anchor = null;
      } else {
        if (extend && anchor === null) anchor = caret;
        if (!extend) anchor = null;
        caret = Math.max(0, Math.min(chars.length, position));
      }
      render();
    }

    function wordStep(from, direction) {
      let at = from;
      if (direction > 0) {
        while (at < chars.length && !WORD.test(chars[at])) at += 1;
        while (at < chars.length && WORD.test(chars[at])) at += 1;
      } else {
        while (at > 0 && !WORD.test(chars[at - 1])) at -= 1;
        while (at > 0 && WORD.test(chars[at - 1])) at -= 1;
      }
      return at;
    }

    function spanAt(target) {
      const seg = target.closest(".spans-seg[data-span], .spans-tag");
      if (!seg || !textEl.contains(seg)) return null;
      return spans[Number(seg.dataset.spanIndex ?? seg.dataset.span)] || null;
    }

    function onMouseUp() {
      const range = nativeSelection();
      if (!range) return;
      anchor = range[0];
      caret = range[1];
      justSelected = true;
      document.getSelection().removeAllRanges();
      render();
      textEl.focus({ preventScroll: true });
    }
    const onMouseDown = () => {
      justSelected = false;
    };
    document.addEventListener("mousedown", onMouseDown);
    document.addEventListener("mouseup", onMouseUp);

    const arrows = {
      ArrowLeft: () => caret - 1,
      ArrowRight: () => caret + 1,
      ArrowUp: () => wordStep(caret, -1),
      ArrowDown: () => wordStep(caret, +1),
      Home: () => 0,
      End: () => chars.length,
    };

    render();
    textEl.focus({ preventScroll: true });

    return {
      value() {
        if (!spans.length && !allowNone) return null;
        const index = new Map(spans.map((span, i) => [span, i]));
        return {
          spans: spans.map(({ start, end, label }) => ({ start, end, label })),
          relations: relations.map((r) => ({
            from: index.get(r.from),
            to: index.get(r.to),
            label: r.label,
          })),
        };
      },
      missing: () => "Mark at least one span: select text, then press a label's key.",
      // A suggestion (pre-label) in stored form: draw its spans and relations.
      preset(value) {
        const given = (value && value.spans) || [];
        // Offsets past the text (never stored, but a stale item may differ) are left out.
        const fits = (s) => Number.isInteger(s.start) && s.end <= chars.length;
        const kept = given.map((s) =>
          fits(s) ? { start: s.start, end: s.end, label: s.label } : null,
        );
        spans = kept.filter(Boolean).sort(byOrder);
        relations = ((value && value.relations) || [])
          .map((r) => ({ from: kept[r.from], to: kept[r.to], label: r.label }))
          .filter((r) => r.from && r.to);
        render();
      },
      keydown(event) {
        const target = event.target instanceof Element ? event.target : document.body;
        const focusedChip = target.closest(".spans-tag");
        const chipSpan = focusedChip && textEl.contains(focusedChip) ? spanAt(focusedChip) : null;
        const relationButton = target.closest("[data-relation-index]");
        if (event.key === "Delete" || event.key === "Backspace") {
          if (chipSpan) {
            textEl.focus({ preventScroll: true });
            removeSpan(chipSpan);
            return true;
          }
          if (relationButton && itemEl.contains(relationButton)) {
            relations.splice(Number(relationButton.dataset.relationIndex), 1);
            textEl.focus({ preventScroll: true });
            render();
            return true;
          }
          return false;
        }
        if (chipSpan && (event.key === "[" || event.key === "]")) {
          if (event.key === "[") fromSpan = chipSpan;
          else toSpan = chipSpan;
          render();
          return true;
        }
        if (event.key === "Escape") {
          clearSelection();
          fromSpan = null;
          toSpan = null;
          render();
          return true;
        }
        if (event.key in arrows && (target === document.body || textEl.contains(target))) {
          moveTo(arrows[event.key](), event.shiftKey);
          return true;
        }
        if (event.shiftKey && /^Digit[1-9]$/.test(event.code)) {
          const label = relationLabels[Number(event.code.slice(5)) - 1];
          if (label === undefined) return false;
          if (!event.repeat) relate(label);
          return true;
        }
        const label = hotkeys.get(event.key.toLowerCase());
        if (label === undefined || event.shiftKey) return false;
        if (!event.repeat) tag(label);
        return true;
      },
      click(event) {
        const target = event.target;
        const labelButton = target.closest("[data-span-label]");
        if (labelButton && ctx.controls.contains(labelButton)) {
          tag(labelButton.dataset.spanLabel);
          return true;
        }
        const relationLabel = target.closest("[data-relation-label]");
        if (relationLabel && ctx.controls.contains(relationLabel)) {
          relate(relationLabel.dataset.relationLabel);
          return true;
        }
        const relationButton = target.closest("[data-relation-index]");
        if (relationButton && itemEl.contains(relationButton)) {
          relations.splice(Number(relationButton.dataset.relationIndex), 1);
          render();
          return true;
        }
        if (!textEl.contains(target)) return false;
        if (justSelected) {
          justSelected = false;
          return true;
        }
        const span = spanAt(target);
        if (target.closest(".spans-tag") && span) {
          removeSpan(span);
          textEl.focus({ preventScroll: true });
          return true;
        }
        if (span && relationLabels.length) {
          if (event.altKey) toSpan = span;
          else {
            fromSpan = fromSpan === span ? null : span;
            toSpan = null;
          }
          render();
          return true;
        }
        if (span) {
          removeSpan(span);
          return true;
        }
        // A plain click in the text puts the caret there.
        const native = document.getSelection();
        if (native && native.rangeCount) {
          const point = native.getRangeAt(0);
          caret = offsetOf(point.startContainer, point.startOffset);
          anchor = null;
          render();
        }
        return true;
      },
      destroy() {
        document.removeEventListener("mousedown", onMouseDown);
        document.removeEventListener("mouseup", onMouseUp);
        spans = [];
        relations = [];
      },
    };
  }

  window.AssayWidgets = window.AssayWidgets || {};
  window.AssayWidgets.spans = { mount };
})();
