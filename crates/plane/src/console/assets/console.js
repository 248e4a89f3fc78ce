// Portcullis console: relative times, live refresh of the page's data, and filtering
// the routing table as you type. Pages work without it.
"use strict";
(function () {
  function ago() {
    document.querySelectorAll("time[datetime]").forEach(function (t) {
      var at = Date.parse(t.dateTime);
      if (isNaN(at)) return;
      var s = Math.max(0, Math.round((Date.now() - at) / 1000));
      t.textContent = s < 60 ? s + " s ago" : s < 3600 ? Math.floor(s / 60) + " min ago"
        : s < 86400 ? Math.floor(s / 3600) + " h ago" : t.dateTime.slice(0, 10);
    });
  }
  ago();
  setInterval(ago, 1000);

  // Poll a short token; when what the page shows changed, fetch the page again and
  // swap the live part (forms outside it keep what is being typed).
  var live = document.getElementById("live");
  if (live) {
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) return;
      busy = true;
      fetch("/console/token?page=" + encodeURIComponent(live.dataset.page), { cache: "no-store" })
        .then(function (r) { return r.json(); })
        .then(function (t) {
          var count = document.getElementById("problem-count");
          if (count) {
            count.textContent = t.problems;
            count.className = "count " + (t.problems ? "bad" : "ok");
          }
          if (t.token === live.dataset.token) return;
          return fetch(location.href, { cache: "no-store" })
            .then(function (r) { return r.text(); })
            .then(function (html) {
              var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
              if (!fresh) return;
              live.innerHTML = fresh.innerHTML;
              live.dataset.token = fresh.dataset.token;
              ago();
              filter();
            });
        })
        .catch(function () {})
        .then(function () { busy = false; });
    }, 1000);
  }

  // Routing table: hide rows that do not contain the text (the form filters on the
  // server; this answers while typing).
  var text = document.getElementById("filter-text");
  function filter() {
    if (!text) return;
    var q = text.value.trim().toLowerCase();
    document.querySelectorAll("section.host").forEach(function (section) {
      var shown = 0;
      section.querySelectorAll("tbody tr").forEach(function (row) {
        var hit = !q || row.textContent.toLowerCase().indexOf(q) >= 0;
        row.hidden = !hit;
        if (hit) shown++;
      });
      section.hidden = shown === 0;
    });
  }
  if (text) {
    var timer;
    text.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(filter, 120);
    });
  }
})();
