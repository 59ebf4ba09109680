// runbook serve: keeps a run page live. No framework, no build step: the server renders
// the HTML (escaped there) and streams the run's part of the page again on every change
// (Server-Sent Events); this script swaps it in and ticks the incident clock.
"use strict";
(function () {
  var runId = document.body.getAttribute("data-live");
  if (!runId) return;
  var main = document.getElementById("live");
  var conn = document.createElement("div");
  conn.className = "conn";
  conn.textContent = "connecting…";
  document.body.appendChild(conn);

  var source = new EventSource("/runs/" + encodeURIComponent(runId) + "/live");
  source.addEventListener("run", function (e) {
    main.innerHTML = e.data;
    conn.className = "conn";
    conn.textContent = "live · updated " + new Date().toLocaleTimeString();
  });
  source.addEventListener("error", function (e) {
    // A server-sent "error" carries a message; a dropped connection does not (EventSource
    // reconnects by itself).
    conn.className = "conn lost";
    conn.textContent = e.data ? "stopped: " + e.data : "connection lost, retrying…";
  });

  function human(ms) {
    var s = Math.floor(ms / 1000);
    if (ms < 60000) return (ms / 1000).toFixed(1) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
  }
  // The clock in the page is the server's value when it was rendered; between two updates
  // it advances locally.
  var renderedAt = Date.now();
  new MutationObserver(function () { renderedAt = Date.now(); }).observe(main, { childList: true });
  setInterval(function () {
    var c = document.getElementById("clock");
    if (!c || c.getAttribute("data-ticking") !== "true") return;
    var ms = Number(c.getAttribute("data-elapsed-ms")) + (Date.now() - renderedAt);
    var el = document.getElementById("clock-elapsed");
    if (el) el.textContent = human(ms);
    var rto = Number(c.getAttribute("data-rto-ms"));
    var pct = document.getElementById("clock-pct");
    if (rto > 0 && pct) {
      var p = Math.floor(ms * 100 / rto);
      pct.textContent = String(p);
      c.className = "clock lvl-" + (p >= 100 ? "over" : p >= 50 ? "half" : "ok");
    }
  }, 1000);
})();
