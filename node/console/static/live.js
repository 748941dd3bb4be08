/* Live alerts on the operator's page. The node re-renders the alert list whenever it changes and
   pushes it as a server-sent event; this swaps it in and says whether the page is live. Without
   this script the page is plain HTML that a reload brings up to date. */
"use strict";
(function () {
  var box = document.getElementById("live-alerts");
  var status = document.getElementById("live-status");
  var text = document.getElementById("live-text");
  var reload = document.getElementById("live-reload");
  if (!box || !status || !text || !reload || !window.EventSource) {
    return;
  }
  function show(state) {
    status.dataset.state = state;
    text.textContent = status.dataset[state];
    reload.hidden = state === "connected";
  }
  var source = new EventSource(box.dataset.events);
  source.addEventListener("open", function () {
    show("connected");
  });
  source.addEventListener("alerts", function (event) {
    box.innerHTML = event.data;
    box.dataset.updates = String(Number(box.dataset.updates || "0") + 1);
  });
  source.addEventListener("end", function () {
    source.close();
    window.location.reload();
  });
  source.addEventListener("error", function () {
    show(source.readyState === EventSource.CLOSED ? "lost" : "reconnecting");
  });
})();
