// firepit dashboard: a lease page's usage charts. Each reload of #usage brings the lease's whole
// series as JSON (#usage-data); the four uPlot charts are made once and then given the new data.
"use strict";

(function () {
  var CHARTS = [
    { id: "cpu", series: [["cpu", "CPU %", "--accent"]], min: 100 },
    { id: "mem", series: [["mem_used", "used", "--accent"], ["mem_total", "total", "--muted"]], min: 1 },
    { id: "disk", series: [["disk_used", "used", "--accent"], ["disk_total", "total", "--muted"]], min: 1 },
    { id: "net", series: [["net_rx", "in", "--good"], ["net_tx", "out", "--warn"]], min: 1 },
  ];
  var made = {}, last = null;

  function dataOf(chart, usage) {
    return [usage.t].concat(chart.series.map(function (s) { return usage[s[0]]; }));
  }

  function make(chart, usage) {
    var box = document.getElementById("chart-" + chart.id);
    if (!box) return null;
    var styles = getComputedStyle(document.documentElement);
    var color = function (name) { return styles.getPropertyValue(name).trim(); };
    var axis = { stroke: color("--muted"), grid: { stroke: color("--line") }, ticks: { stroke: color("--line") } };
    return new uPlot({
      width: box.clientWidth || 280, height: 150,
      legend: { show: chart.series.length > 1, live: false },
      scales: {
        x: { time: true, range: function (u, min, max) { return [Math.min(min, max - 60), max]; } },
        y: { range: function (u, min, max) { return [0, Math.max(chart.min, max * 1.1)]; } },
      },
      axes: [axis, Object.assign({ size: 56 }, axis)],
      series: [{}].concat(chart.series.map(function (s) {
        return { label: s[1], stroke: color(s[2]), width: 2, spanGaps: true };
      })),
    }, dataOf(chart, usage), box);
  }

  function draw(rebuild) {
    if (typeof uPlot === "undefined" || !last) return;
    CHARTS.forEach(function (chart) {
      if (rebuild && made[chart.id]) { made[chart.id].destroy(); made[chart.id] = null; }
      if (made[chart.id]) made[chart.id].setData(dataOf(chart, last));
      else made[chart.id] = make(chart, last);
    });
    var charts = document.getElementById("usage-charts");
    if (charts) charts.classList.add("ready");
  }

  function update() {
    var el = document.getElementById("usage-data");
    if (!el) return;
    try { last = JSON.parse(el.dataset.usage); } catch (e) { return; }
    draw(false);
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target && event.target.id === "usage") update();
  });
  // The theme button changes the colours: draw again.
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("#theme")) setTimeout(function () { draw(true); }, 0);
  });
  window.addEventListener("resize", function () {
    Object.keys(made).forEach(function (id) {
      var chart = made[id];
      if (chart) chart.setSize({ width: chart.root.parentNode.clientWidth, height: 150 });
    });
  });
})();
