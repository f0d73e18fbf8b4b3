// Counts down the time left of active grants. Each <time class="countdown">
// already shows the expiry time rendered by the server, so the page stays
// correct without this script; it only replaces the text once a second.
"use strict";
(function () {
  function format(ms) {
    if (ms <= 0) {
      return "expired";
    }
    var s = Math.floor(ms / 1000);
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var parts = [];
    if (h > 0) parts.push(h + "h");
    if (h > 0 || m > 0) parts.push(m + "m");
    parts.push((s % 60) + "s");
    return parts.join("");
  }
  function tick() {
    var nodes = document.querySelectorAll("time.countdown[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var end = Date.parse(nodes[i].getAttribute("datetime"));
      if (isNaN(end)) continue;
      var left = format(end - Date.now());
      nodes[i].textContent = left === "expired" ? "expired, revoking" : left + " left";
      nodes[i].title = "expires at " + nodes[i].getAttribute("datetime");
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
  });
})();
