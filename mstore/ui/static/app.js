// mstore ui: the metric chart (uPlot) and the disk-use summary on the version list. Everything comes from
// the JSON API of the same server; strings go into the page with textContent only, never as HTML.
"use strict";

(function () {
  const COLOURS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#0a7b83", "#bf3989"];

  function fmtBytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  function fmtNum(v) {
    return v == null ? "-" : Number(v.toPrecision(4)).toString();
  }

  async function getJSON(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    if (!r.ok) throw new Error(url + ": " + r.status);
    return r.json();
  }

  // One row per version that has any of the charted metrics, oldest first; null where a metric is absent.
  function align(series) {
    const byVersion = new Map();
    series.forEach((points, k) => {
      for (const p of points) {
        if (!byVersion.has(p.version)) byVersion.set(p.version, { t: p.timestamp, values: new Array(series.length).fill(null) });
        byVersion.get(p.version).values[k] = p.value;
      }
    });
    const versions = Array.from(byVersion.keys()).sort();
    const xs = versions.map((v, i) => i);
    const ys = series.map((_, k) => versions.map((v) => byVersion.get(v).values[k]));
    return { versions, xs, ys };
  }

  async function drawChart() {
    const box = document.getElementById("chart");
    if (!box) return;
    const names = JSON.parse(box.dataset.metrics || "[]");
    const span = Number(box.dataset.span || 0);
    const hover = document.getElementById("chart-hover");
    box.textContent = "";
    if (window.mstoreChart) { window.mstoreChart.destroy(); window.mstoreChart = null; }
    if (!names.length) { box.textContent = "pick a metric above"; return; }
    const query = span ? "?limit=" + span : "";
    const series = await Promise.all(names.map((n) => getJSON("/api/metrics/" + encodeURIComponent(n) + query)));
    const { versions, xs, ys } = align(series);
    box.dataset.points = String(ys.reduce((sum, col) => sum + col.filter((v) => v != null).length, 0));
    box.dataset.versions = JSON.stringify(versions);
    if (!versions.length) { box.textContent = "no version has these metrics as numbers"; return; }
    const opts = {
      width: Math.max(320, box.clientWidth || 800),
      height: 280,
      scales: { x: { time: false } },
      padding: [12, 70, 0, 40], // room for the first and last version labels
      axes: [
        {
          label: "version (oldest → newest)",
          space: 150, // px between labels: a version ID is about 19 characters wide
          incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000],
          values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) && versions[t]) || ""),
        },
        {},
      ],
      series: [
        { label: "version", value: (u, i) => (i == null || versions[i] == null ? "" : versions[i]) },
        ...names.map((n, k) => ({
          label: n,
          stroke: COLOURS[k % COLOURS.length],
          width: 1.5,
          spanGaps: true,
          points: { show: true, size: 6 },
          value: (u, v) => fmtNum(v),
        })),
      ],
      cursor: { points: { size: 9 } },
      hooks: {
        setCursor: [
          (u) => {
            const i = u.cursor.idx;
            if (i == null) return;
            const parts = names.map((n, k) => n + " " + fmtNum(ys[k][i]));
            hover.textContent = versions[i] + " — " + parts.join(", ") + " (click to open)";
          },
        ],
      },
    };
    const chart = new uPlot(opts, [xs, ...ys], box);
    chart.over.addEventListener("click", () => {
      const i = chart.cursor.idx;
      if (i != null && versions[i]) window.location.href = "/versions/" + encodeURIComponent(versions[i]);
    });
    chart.over.style.cursor = "pointer";
    window.mstoreChart = chart;
    box.dataset.ready = "1";
  }

  function wireChartForm() {
    const form = document.getElementById("chart-form");
    const box = document.getElementById("chart");
    if (!form || !box) return;
    form.addEventListener("change", () => {
      const picked = Array.from(form.querySelectorAll("input[name=chart]:checked")).map((e) => e.value);
      box.dataset.metrics = JSON.stringify(picked);
      box.dataset.span = form.querySelector("select[name=span]").value;
      box.dataset.ready = "";
      const url = new URL(window.location.href);
      url.searchParams.delete("chart");
      picked.forEach((p) => url.searchParams.append("chart", p));
      url.searchParams.set("span", box.dataset.span);
      history.replaceState(null, "", url);
      drawChart().catch(showError);
    });
  }

  function showError(err) {
    const box = document.getElementById("chart");
    if (box) box.textContent = "could not draw the chart: " + err.message;
  }

  async function diskUse() {
    const summary = document.getElementById("du-summary");
    if (!summary) return;
    const du = await getJSON("/api/du?top=10");
    const ratio = du.savings_ratio ? " (" + du.savings_ratio.toFixed(1) + "× smaller than plain copies)" : "";
    summary.textContent = du.versions + " versions: " + fmtBytes(du.logical_bytes) + " of models in " +
      fmtBytes(du.stored_bytes) + " on disk" + ratio +
      (du.unreachable_bytes ? "; " + fmtBytes(du.unreachable_bytes) + " unreferenced (mstore gc frees it)" : "");
    summary.classList.remove("muted");
    const table = document.getElementById("du-table");
    const body = table.querySelector("tbody");
    for (const row of du.largest) {
      const tr = document.createElement("tr");
      const a = document.createElement("a");
      a.href = "/versions/" + encodeURIComponent(row.version);
      a.textContent = row.version;
      const cells = [a, fmtBytes(row.logical_bytes), fmtBytes(row.exclusive_bytes)];
      cells.forEach((c, k) => {
        const td = document.createElement("td");
        if (k) { td.className = "num"; td.textContent = c; } else { td.className = "id"; td.appendChild(c); }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    }
    table.hidden = du.largest.length === 0;
  }

  wireChartForm();
  drawChart().catch(showError);
  diskUse().catch((err) => {
    const s = document.getElementById("du-summary");
    if (s) s.textContent = "could not read disk use: " + err.message;
  });
})();
