// Qualification test (crowd/qualification_test.html): a label's hotkey answers the item, like
// the labeling page. Configuration comes from data- attributes (no inline scripts).
(() => {
  "use strict";

  const form = document.querySelector("[data-qualification-form]");
  if (!form) return;
  const hotkeys = new Map(
    Array.from(form.querySelectorAll("[data-hotkey]"))
      .filter((button) => button.dataset.hotkey)
      .map((button) => [button.dataset.hotkey.toLowerCase(), button]),
  );
  let sent = false;

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.isComposing || event.repeat || sent) return;
    const target = event.target instanceof Element ? event.target : document.body;
    if (target.closest("input, textarea, select, [contenteditable]")) return;
    const button = hotkeys.get(event.key.toLowerCase());
    if (!button) return;
    event.preventDefault();
    sent = true;
    form.requestSubmit(button);
  });
})();
