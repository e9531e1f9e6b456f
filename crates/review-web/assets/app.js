// Keyboard shortcuts: 1-9 accept that candidate, r reject, s skip, j/k next/previous.
document.addEventListener("keydown", function (ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  var t = ev.target;
  if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.tagName === "SELECT")) return;
  var el = document.querySelector('[data-key="' + ev.key + '"]');
  if (!el) return;
  ev.preventDefault();
  el.click();
});
