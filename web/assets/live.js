// Live parts of pages: the server sends an element's content (rendered and escaped by the
// server) whenever it changes — a table's rows (`rows`), or a card (`html`: a session's place in
// the queue counting down). No inline script: the page's CSP allows this file only.
"use strict";
(function () {
  if (!window.EventSource) return;
  document.querySelectorAll("[data-events]").forEach((el) => {
    const target = el.tagName === "TABLE" ? el.querySelector("tbody") : el;
    const source = new EventSource(el.dataset.events);
    const update = (e) => {
      target.innerHTML = e.data;
      // A card says its state on its first element that has one.
      const stated = target.querySelector("[data-state]");
      if (el.tagName !== "TABLE" && stated) el.dataset.state = stated.dataset.state;
      el.dataset.updated = String(Date.now());
    };
    source.addEventListener("rows", update);
    source.addEventListener("html", update);
    source.addEventListener("end", () => {
      source.close();
      el.dataset.ended = "true";
    });
  });
})();
