// One place for htmx settings: swap 422 responses (invalid forms) like 200s.
document.addEventListener("DOMContentLoaded", () => {
  if (!window.htmx) return;
  htmx.config.responseHandling = [
    { code: "204", swap: false },
    { code: "[23]..", swap: true },
    { code: "422", swap: true, error: false },
    { code: "[45]..", swap: false, error: true },
  ];
});
