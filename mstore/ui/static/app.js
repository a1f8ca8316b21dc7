// mstore ui: the metric charts (uPlot), the version table (sorting, a column chooser, picking rows to diff
// or compare) and the disk-use summary. Everything comes from the JSON API of the same server; strings go
// into the page with textContent only, never as HTML.
"use strict";

(function () {
  const COLOURS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#0a7b83", "#bf3989"];
  const MARK_COLOUR = "#8250df";
  const HIDDEN_KEY = "mstore.ui.hiddenColumns";

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

  // The save time of a version ID (seconds), its _NNN suffix as milliseconds so saves within one second
  // stay in order on a time axis.
  function timeOf(version, seconds) {
    const suffix = version.length > 16 ? Number(version.slice(16)) : 0;
    return seconds + (Number.isFinite(suffix) ? suffix / 1000 : 0);
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
    const times = versions.map((v) => timeOf(v, byVersion.get(v).t));
    const ys = series.map((_, k) => versions.map((v) => byVersion.get(v).values[k]));
    return { versions, times, ys };
  }

  // -- charts ----------------------------------------------------------------------------------------

  let promotions = null; // every tag move, from /api/promotions (fetched once)

  function destroyCharts() {
    (window.mstoreCharts || []).forEach((c) => c.destroy());
    window.mstoreCharts = [];
    window.mstoreChart = null;
  }

  // The marks: one per tag move onto a charted version, at that version's x.
  function marksFor(versions, xs) {
    const at = new Map(versions.map((v, i) => [v, i]));
    const out = [];
    for (const m of promotions || []) {
      if (m.to != null && at.has(m.to)) out.push({ tag: m.tag, x: xs[at.get(m.to)], idx: at.get(m.to), move: m });
    }
    return out;
  }

  function drawMarks(marks) {
    return (u) => {
      const ctx = u.ctx;
      const ratio = uPlot.pxRatio || 1;
      const top = u.bbox.top;
      const bottom = u.bbox.top + u.bbox.height;
      const used = new Map(); // x -> how far down its labels already reach
      let drawn = 0;
      ctx.save();
      ctx.strokeStyle = MARK_COLOUR;
      ctx.fillStyle = MARK_COLOUR;
      ctx.lineWidth = ratio;
      ctx.setLineDash([4 * ratio, 3 * ratio]);
      ctx.font = 11 * ratio + "px system-ui, sans-serif";
      ctx.textAlign = "left"; // uPlot leaves the axes' alignment set
      ctx.textBaseline = "bottom";
      for (const m of marks) {
        const x = Math.round(u.valToPos(m.x, "x", true));
        if (x < u.bbox.left - 1 || x > u.bbox.left + u.bbox.width + 1) continue;
        drawn++;
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, bottom);
        ctx.stroke();
        // the tag's name runs down beside its line; several tags on one version follow one another
        const below = used.get(x) || 0;
        ctx.save();
        ctx.translate(x + 2 * ratio, top + 4 * ratio + below);
        ctx.rotate(Math.PI / 2);
        ctx.fillText(m.tag, 0, 0);
        ctx.restore();
        used.set(x, below + ctx.measureText(m.tag).width + 6 * ratio);
      }
      ctx.restore();
      u.root.dataset.marksDrawn = String(drawn);
    };
  }

  function describe(names, ys, versions, marks, i) {
    const parts = names.map((n, k) => n + " " + fmtNum(ys[k][i]));
    const moved = marks.filter((m) => m.idx === i).map((m) => m.tag + " moved here " + m.move.time.replace("T", " ").slice(0, 16));
    return versions[i] + " — " + parts.join(", ") + (moved.length ? " · " + moved.join(", ") : "") + " (click to open)";
  }

  function chartOptions(width, height, names, colours, ys, versions, xs, marks, settings, hover) {
    const timeAxis = settings.x === "time";
    const logScale = settings.log && ys.every((col) => col.every((v) => v == null || v > 0));
    return {
      width: width,
      height: height,
      scales: { x: { time: timeAxis }, y: logScale ? { distr: 3 } : {} },
      padding: [12, 70, 0, 40], // room for the first and last labels
      axes: [
        timeAxis
          ? { label: "save time (UTC)", space: 110 }
          : {
              label: "version (oldest → newest)",
              space: 150, // px between labels: a version ID is about 19 characters wide
              incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000],
              values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) && versions[t]) || ""),
            },
        {},
      ],
      series: [
        { label: "version", value: (u, v, s, i) => (i == null || versions[i] == null ? "" : versions[i]) },
        ...names.map((n, k) => ({
          label: n + (settings.log && !logScale ? " (linear: values ≤ 0)" : ""),
          stroke: colours[k],
          width: 1.5,
          spanGaps: true,
          points: { show: true, size: 6 },
          value: (u, v) => fmtNum(v),
        })),
      ],
      cursor: { points: { size: 9 }, sync: { key: "mstore" } },
      legend: { show: settings.layout === "shared" }, // a panel says its metric in its title
      hooks: {
        draw: [drawMarks(marks)],
        setCursor: [
          (u) => {
            const i = u.cursor.idx;
            if (i == null) return;
            hover.textContent = describe(names, ys, versions, marks, i);
          },
        ],
      },
    };
  }

  function clickable(chart, versions) {
    chart.over.addEventListener("click", () => {
      const i = chart.cursor.idx;
      if (i != null && versions[i]) window.location.href = "/versions/" + encodeURIComponent(versions[i]);
    });
    chart.over.style.cursor = "pointer";
    return chart;
  }

  async function drawChart() {
    const box = document.getElementById("chart");
    if (!box) return;
    const names = JSON.parse(box.dataset.metrics || "[]");
    const span = Number(box.dataset.span || 0);
    const settings = { layout: box.dataset.layout || "panels", log: box.dataset.log === "1", x: box.dataset.x || "version" };
    const hover = document.getElementById("chart-hover");
    box.textContent = "";
    destroyCharts();
    if (!names.length) { box.textContent = "pick a metric above"; return; }
    const params = new URLSearchParams();
    if (span) params.set("limit", String(span));
    if (box.dataset.where) params.set("where", box.dataset.where); // the charts follow the table's where filter
    const query = params.toString() ? "?" + params.toString() : "";
    const [series, moves] = await Promise.all([
      Promise.all(names.map((n) => getJSON("/api/metrics/" + encodeURIComponent(n) + query))),
      promotions ? Promise.resolve(promotions) : getJSON("/api/promotions").catch(() => []),
    ]);
    promotions = moves;
    const { versions, times, ys } = align(series);
    box.dataset.points = String(ys.reduce((sum, col) => sum + col.filter((v) => v != null).length, 0));
    box.dataset.versions = JSON.stringify(versions);
    if (!versions.length) { box.textContent = "no version has these metrics as numbers"; return; }
    const xs = settings.x === "time" ? times : versions.map((v, i) => i);
    const marks = marksFor(versions, xs);
    box.dataset.marks = JSON.stringify(marks.map((m) => [m.tag, versions[m.idx]]));
    const colours = names.map((n, k) => COLOURS[k % COLOURS.length]);
    const charts = [];
    const single = settings.layout === "shared";
    box.classList.toggle("panels", !single);
    box.classList.toggle("one", names.length === 1);
    if (single) {
      const width = Math.max(280, box.clientWidth || 800);
      charts.push(new uPlot(chartOptions(width, 280, names, colours, ys, versions, xs, marks, settings, hover), [xs, ...ys], box));
    } else {
      names.forEach((n, k) => {
        const panel = document.createElement("div");
        panel.className = "panel";
        panel.dataset.metric = n;
        const title = document.createElement("div");
        title.className = "panel-title";
        title.textContent = n;
        title.style.color = colours[k];
        panel.appendChild(title);
        box.appendChild(panel);
        const width = Math.max(260, panel.clientWidth || 400);
        const opts = chartOptions(width, 220, [n], [colours[k]], [ys[k]], versions, xs, marks, settings, hover);
        charts.push(new uPlot(opts, [xs, ys[k]], panel));
      });
    }
    charts.forEach((c) => clickable(c, versions));
    window.mstoreCharts = charts;
    window.mstoreChart = charts[0];
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
      box.dataset.layout = form.querySelector("select[name=layout]").value;
      box.dataset.log = form.querySelector("input[name=log]").checked ? "1" : "";
      box.dataset.x = form.querySelector("select[name=x]").value;
      box.dataset.ready = "";
      const url = new URL(window.location.href);
      url.searchParams.delete("chart");
      picked.forEach((p) => url.searchParams.append("chart", p));
      url.searchParams.set("span", box.dataset.span);
      url.searchParams.set("layout", box.dataset.layout);
      url.searchParams.set("x", box.dataset.x);
      if (box.dataset.log) url.searchParams.set("log", "1"); else url.searchParams.delete("log");
      history.replaceState(null, "", url);
      drawChart().catch(showError);
    });
  }

  function showError(err) {
    const box = document.getElementById("chart");
    if (box) box.textContent = "could not draw the chart: " + err.message;
  }

  // -- the version table -----------------------------------------------------------------------------

  // Click a header to sort by it (again: the other way). Numbers sort as numbers, empty cells last.
  function wireSorting() {
    const table = document.getElementById("versions");
    if (!table) return;
    const headers = Array.from(table.tHead.rows[0].cells);
    headers.forEach((th, col) => {
      if (!th.dataset.sort) return;
      th.classList.add("sortable");
      th.tabIndex = 0;
      th.title = "sort by " + th.textContent;
      const sort = () => {
        const dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
        headers.forEach((h) => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", dir);
        const numeric = th.dataset.sort === "num";
        const key = (tr) => {
          const td = tr.cells[col];
          const raw = td.dataset.value !== undefined ? td.dataset.value : td.textContent.trim();
          if (raw === "") return null;
          if (numeric) { const n = Number(raw); return Number.isNaN(n) ? raw : n; }
          return raw;
        };
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          if (x === null || y === null) return x === y ? 0 : x === null ? 1 : -1; // empty cells last
          let c;
          if (typeof x === "number" && typeof y === "number") c = x - y;
          else c = String(x).localeCompare(String(y), undefined, { numeric: true });
          return dir === "ascending" ? c : -c;
        });
        rows.forEach((r) => body.appendChild(r));
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
    });
  }

  function hiddenColumns() {
    try {
      const v = JSON.parse(localStorage.getItem(HIDDEN_KEY) || "[]");
      return new Set(Array.isArray(v) ? v.map(String) : []);
    } catch (e) {
      return new Set();
    }
  }

  // Which columns show: the chooser's boxes, remembered in localStorage for the next visit.
  function wireColumns() {
    const chooser = document.getElementById("columns");
    const table = document.getElementById("versions");
    if (!chooser || !table) return;
    const boxes = Array.from(chooser.querySelectorAll("input[data-col]"));
    const apply = (hidden) => {
      for (const cell of table.querySelectorAll("[data-col]")) cell.classList.toggle("col-hidden", hidden.has(cell.dataset.col));
      boxes.forEach((b) => { b.checked = !hidden.has(b.dataset.col); });
    };
    const hidden = hiddenColumns();
    apply(hidden);
    chooser.addEventListener("change", (e) => {
      const box = e.target;
      if (!box.dataset || !box.dataset.col) return;
      if (box.checked) hidden.delete(box.dataset.col); else hidden.add(box.dataset.col);
      try { localStorage.setItem(HIDDEN_KEY, JSON.stringify(Array.from(hidden))); } catch (err) { /* private mode */ }
      apply(hidden);
    });
  }

  // Tick rows: two enable "Diff" (the older is old), two or more "Compare".
  function wirePicking() {
    const form = document.getElementById("pick");
    if (!form) return;
    const diffButton = document.getElementById("diff-picked");
    const compareButton = document.getElementById("compare-picked");
    const label = document.getElementById("picked");
    const picks = () => Array.from(document.querySelectorAll("input.pick:checked"));
    const update = () => {
      const n = picks().length;
      diffButton.disabled = n !== 2;
      compareButton.disabled = n < 2;
      label.textContent = n ? n + " picked" : "tick versions to diff (two) or compare (two or more)";
      document.querySelectorAll("input.pick").forEach((b) => b.closest("tr").classList.toggle("picked", b.checked));
    };
    document.querySelectorAll("input.pick").forEach((b) => b.addEventListener("change", update));
    update();
  }

  // -- disk use --------------------------------------------------------------------------------------

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

  // a window resized (a phone turned, a split view): redraw at the new width, once it settles
  let resizing = null;
  let drawnWidth = window.innerWidth;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      if (window.innerWidth === drawnWidth || !document.getElementById("chart")) return;
      drawnWidth = window.innerWidth;
      drawChart().catch(showError);
    }, 250);
  });

  wireSorting();
  wireColumns();
  wirePicking();
  wireChartForm();
  drawChart().catch(showError);
  diskUse().catch((err) => {
    const s = document.getElementById("du-summary");
    if (s) s.textContent = "could not read disk use: " + err.message;
  });
})();
