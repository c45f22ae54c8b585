// The live instance list: the server sends the table's rows (rendered and escaped by the
// server) whenever they change. No inline script: the page's CSP allows this file only.
"use strict";
(function () {
  const table = document.querySelector("table[data-events]");
  if (!table || !window.EventSource) return;
  const body = table.querySelector("tbody");
  const source = new EventSource(table.dataset.events);
  source.addEventListener("rows", (e) => {
    body.innerHTML = e.data;
    table.dataset.updated = String(Date.now());
  });
  source.addEventListener("end", () => {
    source.close();
    table.dataset.ended = "true";
  });
})();
