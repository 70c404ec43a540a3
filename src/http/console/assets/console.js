// wabot operator console: live updates of one conversation. Served as a file (the CSP allows no
// inline script). The server renders every fragment with its text escaped; this script only
// swaps those fragments in.
"use strict";

(function () {
  var section = document.querySelector("section.conversation[data-live]");
  if (!section) {
    return;
  }
  var url = section.getAttribute("data-live");
  var history = document.getElementById("history");
  var status = document.getElementById("status");
  var reply = document.getElementById("reply-text");
  var lastHistory = history ? history.innerHTML : "";
  var lastStatus = status ? status.innerHTML : "";
  var state = null;
  var intervalMs = 2000;

  function atBottom() {
    return window.innerHeight + window.scrollY >= document.body.offsetHeight - 80;
  }

  function apply(data) {
    var key = String(data.owner) + "/" + String(data.window_open);
    if (state !== null && state !== key && (!reply || reply.value === "")) {
      // Who has the conversation or the window changed: the buttons and the reply box with it.
      window.location.reload();
      return;
    }
    state = key;
    if (history && typeof data.history === "string" && data.history !== lastHistory) {
      var follow = atBottom();
      history.innerHTML = data.history;
      lastHistory = data.history;
      if (follow) {
        window.scrollTo(0, document.body.scrollHeight);
      }
    }
    if (status && typeof data.status === "string" && data.status !== lastStatus) {
      status.innerHTML = data.status;
      lastStatus = data.status;
    }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          window.location.assign("/console/sign-in");
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (data) {
          apply(data);
        }
      })
      .catch(function () {
        // A failed poll (server restarting) is retried on the next tick.
      })
      .then(function () {
        window.setTimeout(poll, intervalMs);
      });
  }

  // The first answer only records the state the page was rendered with.
  window.setTimeout(poll, 0);
})();
