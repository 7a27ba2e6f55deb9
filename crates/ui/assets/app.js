// firepit dashboard: the little the server cannot do. Theme switch, ages and TTLs that tick,
// file uploads (a streamed PUT with the CSRF header), the xterm.js terminal, the pools chart and
// the events list's bound. (A lease's usage charts: app.charts.js.)
"use strict";

(function () {
  // ---- theme: auto (the system's), light, dark; remembered in this browser ----
  var THEMES = ["auto", "light", "dark"];
  function applyTheme(theme) {
    if (theme === "auto") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
    var button = document.getElementById("theme");
    if (button) button.textContent = "Theme: " + theme;
  }
  var saved = null;
  try { saved = localStorage.getItem("firepit-theme"); } catch (e) { /* storage off */ }
  applyTheme(THEMES.indexOf(saved) >= 0 ? saved : "auto");
  document.addEventListener("click", function (event) {
    if (!event.target.closest || !event.target.closest("#theme")) return;
    var current = document.documentElement.dataset.theme || "auto";
    var next = THEMES[(THEMES.indexOf(current) + 1) % THEMES.length];
    try { localStorage.setItem("firepit-theme", next); } catch (e) { /* storage off */ }
    applyTheme(next);
    drawChart(); // its colours follow the theme
  });

  // ---- durations that tick: [data-since] counts up, [data-until] counts down (ms since epoch) ----
  function duration(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    s = s % 60;
    if (d > 0) return d + " d " + h + " h";
    if (h > 0) return h + " h " + m + " m";
    if (m > 0) return m + " m " + s + " s";
    return s + " s";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = duration(now - Number(el.dataset.since)) + (el.dataset.suffix || "");
    });
    document.querySelectorAll("[data-until]").forEach(function (el) {
      var left = Number(el.dataset.until) - now;
      el.textContent = left > 0 ? duration(left) : "expiring";
    });
  }
  setInterval(tick, 1000);

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // ---- uploads: PUT the chosen file as is, then show the directory again ----
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id !== "upload") return;
    event.preventDefault();
    var input = form.querySelector('input[type="file"]');
    var status = form.querySelector("output");
    var file = input.files && input.files[0];
    if (!file) return;
    var dir = form.dataset.dir.replace(/\/+$/, "");
    var url = form.dataset.url + "?path=" + encodeURIComponent(dir + "/" + file.name);
    status.textContent = "Uploading " + file.name + "…";
    fetch(url, { method: "PUT", body: file, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" })
      .then(function (response) {
        return response.text().then(function (text) {
          if (!response.ok) throw new Error(text.replace(/<[^>]*>/g, "") || response.statusText);
          return htmx.ajax("GET", form.dataset.list, { target: "#files", swap: "outerHTML" }).then(function () {
            var again = document.querySelector("#upload output");
            if (again) again.textContent = "Uploaded " + file.name + ".";
          });
        });
      })
      .catch(function (error) { status.textContent = "Upload failed: " + error.message; });
  });

  // ---- terminal: xterm.js over /ui/leases/{id}/terminal ----
  var term = null, socket = null, fit = null;
  function setStatus(text) {
    var el = document.getElementById("terminal-status");
    if (el) el.textContent = text;
  }
  function closeTerminal() {
    if (socket) { socket.close(); socket = null; }
    if (term) { term.dispose(); term = null; }
    var box = document.getElementById("terminal");
    if (box) box.classList.remove("open");
    var open = document.getElementById("terminal-open"), close = document.getElementById("terminal-close");
    if (open) open.hidden = false;
    if (close) close.hidden = true;
  }
  function openTerminal(button) {
    if (term || typeof Terminal === "undefined") return;
    var box = document.getElementById("terminal");
    box.classList.add("open");
    term = new Terminal({ cursorBlink: true, fontFamily: "DejaVu Sans Mono, monospace", fontSize: 14, scrollback: 5000 });
    fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(box);
    fit.fit();
    // Into view: xterm.js does not draw while its element is off screen (and the person wants it).
    box.scrollIntoView({ block: "nearest" });
    // Ctrl+] leaves the terminal (keyboard users would otherwise be trapped: it takes Tab).
    term.attachCustomKeyEventHandler(function (event) {
      if (event.type === "keydown" && event.ctrlKey && event.key === "]") {
        document.getElementById("terminal-close").focus();
        return false;
      }
      return true;
    });
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    var url = scheme + "//" + location.host + "/ui/leases/" + encodeURIComponent(button.dataset.lease) +
      "/terminal?rows=" + term.rows + "&cols=" + term.cols;
    socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    var encoder = new TextEncoder();
    setStatus("Connecting…");
    socket.onopen = function () { setStatus("Connected"); term.focus(); };
    socket.onmessage = function (message) {
      if (typeof message.data !== "string") { term.write(new Uint8Array(message.data)); return; }
      var event = JSON.parse(message.data);
      if (event.type === "exit") setStatus("The shell exited (" + (event.exit_code !== null ? "code " + event.exit_code : "signal " + event.signal) + ")");
      else if (event.type === "error") setStatus("Ended: " + event.message);
    };
    socket.onclose = function () { if (term) { term.options.disableStdin = true; } setStatus((document.getElementById("terminal-status").textContent || "") + " — disconnected"); };
    term.onData(function (data) { if (socket && socket.readyState === 1) socket.send(encoder.encode(data)); });
    term.onResize(function (size) {
      if (socket && socket.readyState === 1) socket.send(JSON.stringify({ type: "resize", rows: size.rows, cols: size.cols }));
    });
    window.addEventListener("resize", function () { if (fit) fit.fit(); });
    button.hidden = true;
    document.getElementById("terminal-close").hidden = false;
  }
  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target : null;
    if (!target) return;
    if (target.closest("#terminal-open")) openTerminal(target.closest("#terminal-open"));
    else if (target.closest("#terminal-close")) closeTerminal();
  });

  // ---- the pools page's chart: each table refresh brings a sample of the totals ----
  var history = { t: [], ready: [], filling: [], leased: [] }, chart = null;
  var MAX_POINTS = 300; // 10 minutes at one sample every 2 s
  function sampleChart() {
    var el = document.getElementById("pool-sample"), box = document.getElementById("pool-chart");
    if (!el || !box || typeof uPlot === "undefined") return;
    var sample = JSON.parse(el.dataset.sample);
    if (history.t.length && history.t[history.t.length - 1] >= sample.t) return;
    ["t", "ready", "filling", "leased"].forEach(function (key) {
      history[key].push(sample[key]);
      if (history[key].length > MAX_POINTS) history[key].shift();
    });
    if (chart) chart.setData([history.t, history.ready, history.filling, history.leased]);
    else drawChart();
  }
  function drawChart() {
    var box = document.getElementById("pool-chart");
    if (!box || typeof uPlot === "undefined" || !history.t.length) return;
    if (chart) { chart.destroy(); chart = null; }
    var data = [history.t, history.ready, history.filling, history.leased];
    var styles = getComputedStyle(document.documentElement);
    var color = function (name) { return styles.getPropertyValue(name).trim(); };
    var axis = { stroke: color("--muted"), grid: { stroke: color("--line") }, ticks: { stroke: color("--line") } };
    chart = new uPlot({
      width: box.clientWidth || 600, height: 220,
      legend: { live: false },
      // At least the last minute on the time axis, so a new page's first samples read as seconds.
      scales: { x: { time: true, range: function (u, min, max) { return [Math.min(min, max - 60), max]; } }, y: { range: function (u, min, max) { return [0, Math.max(4, max + 1)]; } } },
      axes: [axis, Object.assign({ values: function (u, ticks) { return ticks.map(function (v) { return v % 1 ? "" : v; }); } }, axis)],
      series: [
        {},
        { label: "ready", stroke: color("--good"), width: 2 },
        { label: "filling", stroke: color("--warn"), width: 2 },
        { label: "leased", stroke: color("--accent"), width: 2 },
      ],
    }, data, box);
  }
  window.addEventListener("resize", function () { if (chart) chart.setSize({ width: chart.root.parentNode.clientWidth, height: 220 }); });

  // ---- the events page: the placeholder goes with the first event; at most 500 rows stay ----
  function trimEvents() {
    var rows = document.getElementById("event-rows");
    if (!rows) return;
    var placeholder = document.getElementById("no-events");
    if (placeholder && rows.children.length > 1) placeholder.remove();
    while (rows.children.length > 500) rows.lastElementChild.remove();
  }

  // Keep the ticking right after htmx swaps in new rows; chart each pools refresh.
  document.addEventListener("htmx:afterSwap", function () { tick(); sampleChart(); trimEvents(); });
  document.addEventListener("DOMContentLoaded", sampleChart);
})();
