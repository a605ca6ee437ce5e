// Live updates for the lab page: re-reads /lab.json every few seconds and
// redraws the host rows and the matrix. The server's HTML is complete
// without this; text goes in through textContent only.
(function () {
  "use strict";
  var every = 5000; // the server probes at most once per 5 s anyway

  function cell(tag, s, cls) {
    var c = document.createElement(tag);
    c.textContent = s;
    if (cls) { c.className = cls; }
    return c;
  }

  function dur(sec) {
    var d = Math.abs(sec);
    if (d >= 3600) { return Math.floor(d / 3600) + "h" + Math.floor((d % 3600) / 60) + "m"; }
    if (d >= 60) { return Math.floor(d / 60) + "m"; }
    return Math.floor(d) + "s";
  }

  function draw(lab) {
    var ov = document.getElementById("overall");
    if (ov) {
      ov.className = lab.ok ? "ok" : "bad";
      ov.textContent = lab.ok ? "OK: every host ready, every host reaches every other" : "not everything is well: see the rows and cells marked below";
    }
    var hb = document.querySelector("#hosts tbody");
    if (hb) {
      var rows = document.createDocumentFragment();
      (lab.hosts || []).forEach(function (h) {
        var tr = document.createElement("tr");
        tr.setAttribute("data-host", h.name);
        tr.className = (h.ready && !h.error) ? "ok" : "problem";
        var th = document.createElement("th");
        th.scope = "row";
        var a = cell("a", h.name);
        a.href = h.link;
        th.appendChild(a);
        tr.appendChild(th);
        tr.appendChild(cell("td", h.subnet || "none"));
        tr.appendChild(cell("td", h.public_ip || ""));
        tr.appendChild(cell("td", h.backend || ""));
        tr.appendChild(cell("td", h.expires_in_seconds !== undefined ? dur(h.expires_in_seconds) : "-"));
        tr.appendChild(cell("td", h.error ? "no: " + h.error : (h.ready ? "yes" : "no: " + h.not_ready), "state"));
        tr.appendChild(cell("td", String(h.problem_count), h.problem_count ? "problems bad" : "problems"));
        rows.appendChild(tr);
      });
      hb.replaceChildren(rows);
    }
    var mb = document.querySelector("#matrix tbody");
    if (mb) {
      var m = lab.matrix || { hosts: [], cells: [] };
      var body = document.createDocumentFragment();
      m.cells.forEach(function (r, i) {
        var tr = document.createElement("tr");
        var th = cell("th", m.hosts[i]);
        th.scope = "row";
        tr.appendChild(th);
        r.forEach(function (c) { tr.appendChild(cell("td", c.text, "cell " + c.state)); });
        body.appendChild(tr);
      });
      mb.replaceChildren(body);
    }
  }

  function tick() {
    fetch("/lab.json", { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (lab) { if (lab) { draw(lab); } })
      .catch(function () {})
      .then(function () { window.setTimeout(tick, every); });
  }
  window.setTimeout(tick, every);
}());
