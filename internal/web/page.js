// Live updates for weft's page: re-reads /status.json every few seconds
// and redraws the summary, the peer table and the events. The HTML the
// server sent is complete without this script; text goes in through
// textContent only.
(function () {
  "use strict";
  var every = 3000;
  // Probes cost packets to every peer; the server sends them at most once
  // per 5 s however many pages ask, and only while a page asks.
  var probeEvery = 5000;
  var reach = {};     // subnet -> {text, bad}
  var lastFail = {};  // subnet -> "time: why" of the latest failed probe
  var lastRep = null;

  function text(id, s) {
    var el = document.getElementById(id);
    if (el) { el.textContent = s; }
  }

  function dur(sec) {
    var d = Math.abs(sec);
    if (d >= 3600) {
      var m = Math.floor((d % 3600) / 60);
      return Math.floor(d / 3600) + "h" + (m < 10 ? "0" : "") + m + "m";
    }
    if (d >= 60) { return Math.floor(d / 60) + "m"; }
    return Math.floor(d) + "s";
  }

  function clock(t) {
    return new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function rowState(r) {
    if (r.self) { return "this host"; }
    var es = r.entries || [];
    for (var i = 0; i < es.length; i++) {
      if (es[i].state !== "ok") { return es[i].state; }
    }
    return (r.problems && r.problems.length) ? "problem" : "ok";
  }

  function cell(tag, s) {
    var c = document.createElement(tag);
    c.textContent = s;
    return c;
  }

  function drawPeers(rep) {
    var body = document.querySelector("#peers tbody");
    if (!body) { return; }
    var port = window.location.port;
    var rows = document.createDocumentFragment();
    (rep.leases || []).forEach(function (r) {
      var tr = document.createElement("tr");
      var st = rowState(r);
      tr.className = r.self ? "self" : st;
      tr.setAttribute("data-subnet", r.subnet);
      var th = cell("th", r.subnet);
      th.scope = "row";
      tr.appendChild(th);
      var ip = document.createElement("td");
      if (r.self || r.public_ip === "none") {
        ip.textContent = r.public_ip;
      } else {
        var a = document.createElement("a");
        a.href = "http://" + r.public_ip + (port ? ":" + port : "") + "/";
        a.textContent = r.public_ip;
        ip.appendChild(a);
      }
      tr.appendChild(ip);
      tr.appendChild(cell("td", r.backend || ""));
      var exp = r.expires_in_seconds !== undefined ? dur(r.expires_in_seconds) : (r.node ? "node" : "reservation");
      tr.appendChild(cell("td", exp));
      var s = cell("td", st);
      s.className = "state";
      tr.appendChild(s);
      var why = cell("td", (r.problems && r.problems.length) ? r.problems[0].message : "");
      why.className = "reason";
      tr.appendChild(why);
      var rc = cell("td", r.self ? "" : reachText(r.subnet));
      rc.className = "reach" + (reach[r.subnet] && reach[r.subnet].bad ? " bad" : "");
      tr.appendChild(rc);
      rows.appendChild(tr);
    });
    body.replaceChildren(rows);
  }

  function reachText(subnet) {
    var r = reach[subnet];
    var s = r ? r.text : "probing…";
    if (lastFail[subnet] && !(r && r.bad)) {
      s += "; last failure " + lastFail[subnet];
    }
    return s;
  }

  // takeProbes turns status's --check result for each peer into the
  // reachability column: the echo's round trip, whether a full-size packet
  // got through, or the explanation status gives for the failure.
  function takeProbes(rep) {
    (rep.leases || []).forEach(function (r) {
      var c = r.check;
      if (r.self || !c) { return; }
      // A dual-stack peer is probed over each family: the first that
      // fails decides.
      var passed = function (x) { return x.reply && x.full_size_reply !== false; };
      if (r.check_ipv6 && passed(c) && !passed(r.check_ipv6)) { c = r.check_ipv6; }
      var probs = r.problems || [];
      var why = probs.length ? probs[probs.length - 1].message : (c.error || "no reply");
      if (passed(c)) {
        var rtt = c.rtt_ms !== undefined ? c.rtt_ms.toFixed(2) + " ms" : "";
        reach[r.subnet] = { text: "reachable, RTT " + rtt + (c.full_size_mtu ? ", MTU " + c.full_size_mtu + " path ok" : ""), bad: false };
      } else {
        var what = c.reply ? "full-size packets lost: " : "unreachable: ";
        reach[r.subnet] = { text: what + why, bad: true };
        lastFail[r.subnet] = clock(rep.time) + ": " + why;
      }
    });
    if (lastRep) { drawPeers(lastRep); }
  }

  function probeTick() {
    fetch("probe.json", { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (rep) { if (rep) { takeProbes(rep); } })
      .catch(function () {})
      .then(function () { window.setTimeout(probeTick, probeEvery); });
  }

  function drawEvents(evs) {
    var ol = document.getElementById("events");
    if (!ol) { return; }
    var items = document.createDocumentFragment();
    if (!evs || !evs.length) {
      items.appendChild(cell("li", "none since the agent started"));
    }
    (evs || []).forEach(function (e) {
      var li = document.createElement("li");
      var t = cell("time", clock(e.time));
      t.setAttribute("datetime", e.time);
      li.appendChild(t);
      li.appendChild(document.createTextNode(" "));
      var k = cell("span", e.kind);
      k.className = "kind";
      li.appendChild(k);
      li.appendChild(document.createTextNode(" " + e.message));
      items.appendChild(li);
    });
    ol.replaceChildren(items);
  }

  function draw(rep) {
    lastRep = rep;
    var ag = rep.agent || {};
    var ov = document.getElementById("overall");
    if (ov) {
      ov.className = rep.ok ? "ok" : "bad";
      ov.textContent = ag.error ? ag.error : (rep.ok ? "OK: every peer's kernel state is in place" : rep.problem_count + " problem(s)");
    }
    var h = rep.host || {};
    text("host-subnet", h.subnet || "none");
    text("host-network", rep.network || "");
    text("host-backend", rep.backend || "");
    text("host-iface", (h.interface || "") + " (MTU " + (h.mtu || 0) + ", pods " + (h.pod_mtu || 0) + ")");
    text("host-store", rep.store || "");
    text("host-version", ag.version || "");
    text("host-uptime", dur(ag.uptime_seconds || 0));
    text("host-ready", ag.ready ? "yes" : "no: " + (ag.not_ready || ""));
    text("host-time", clock(rep.time));
    drawPeers(rep);
    drawEvents(ag.events);
  }

  function tick() {
    fetch("status.json", { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(draw)
      .catch(function () {
        var ov = document.getElementById("overall");
        if (ov) {
          ov.className = "bad";
          ov.textContent = "cannot reach the agent; showing the last data";
        }
      })
      .then(function () { window.setTimeout(tick, every); });
  }
  tick();
  probeTick();
}());
