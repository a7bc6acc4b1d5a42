"""HTML, CSS and JavaScript of the self-contained viewer (``s3ta.viz.viewer``). ``__TITLE__`` and
``__DATA__`` are replaced by the page title and the JSON from ``viewer.viewer_data``. The page uses
no network and no libraries: canvas 2D only."""

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>s3ta explain: __TITLE__</title>
<style>
 body { background: #15161a; color: #e6e6e6; font: 13px system-ui, sans-serif; margin: 12px; }
 h1 { font-size: 16px; margin: 0 0 8px 0; }
 .row { display: flex; gap: 14px; align-items: flex-start; flex-wrap: wrap; }
 .controls { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin: 8px 0; }
 button { background: #2a2c33; color: #eee; border: 1px solid #555; border-radius: 4px; padding: 3px 10px; cursor: pointer; }
 canvas { image-rendering: pixelated; background: #000; }
 .heads label { margin-right: 10px; white-space: nowrap; }
 .panel { text-align: center; font-size: 12px; }
 #charts canvas { display: block; margin-bottom: 4px; background: #1d1e23; cursor: crosshair; }
 #status { font-family: monospace; }
 .muted { color: #999; }
</style>
</head>
<body>
<h1>s3ta explain: __TITLE__</h1>
<div class="controls">
 <button id="play" title="space">&#9654; play</button>
 <button id="prev" title="left arrow">&#9664; step</button>
 <button id="next" title="right arrow">step &#9654;</button>
 <input id="scrub" type="range" min="0" value="0" step="1" style="width: 320px">
 <span id="status"></span>
</div>
<div class="controls">
 <label>mode <select id="mode"></select></label>
 <label>opacity <input id="opacity" type="range" min="0" max="1" step="0.05" value="0.7"></label>
 <label>upsample <select id="upsample"><option>nearest</option><option>bilinear</option></select></label>
 <label>fps <select id="fps"><option>5</option><option selected>10</option><option>20</option><option>40</option></select></label>
 <label id="boxesLabel"><input id="boxes" type="checkbox"> ground-truth boxes</label>
 <label id="salLabel">saliency of <select id="salKind"><option>policy</option><option>value</option></select></label>
</div>
<div class="controls heads" id="heads"></div>
<div class="row">
 <div class="panel"><canvas id="main"></canvas><div id="mainLabel" class="muted"></div></div>
 <div id="smalls" class="row" style="max-width: 520px"></div>
 <div id="charts"></div>
</div>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const T = D.numSteps, H = D.frameHeight, W = D.frameWidth, N = D.heads || 0;
  const h = D.mapHeight || 1, w = D.mapWidth || 1;
  const scale = Math.max(1, Math.round(420 / H)), small = Math.max(1, Math.floor(scale / 2));
  const $ = (id) => document.getElementById(id);
  function decode(b64, signed) {
    const bin = atob(b64), out = signed ? new Int8Array(bin.length) : new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = signed ? ((bin.charCodeAt(i) << 24) >> 24) : bin.charCodeAt(i);
    return out;
  }
  const attention = D.attention ? decode(D.attention, false) : null;   // [T, N, h, w]
  const whatWhere = D.whatWhere ? decode(D.whatWhere, true) : null;    // [T, N, h, w]
  const saliency = {};
  for (const key in (D.saliency || {})) saliency[key] = {policy: decode(D.saliency[key].policy, false), value: decode(D.saliency[key].value, false)};
  const state = {t: 0, playing: false, timer: null, mode: D.modes[0] || "frame",
                 on: Array.from({length: N}, () => true), colours: (D.headColours || []).slice()};

  // The cell of each pixel: floor((y + 0.5) * h / H), as s3ta.analysis.geometry.cell_index.
  const rowCell = Array.from({length: H}, (_, y) => Math.min(h - 1, Math.floor((y + 0.5) * h / H)));
  const colCell = Array.from({length: W}, (_, x) => Math.min(w - 1, Math.floor((x + 0.5) * w / W)));
  function sampler(get) {  // value at pixel (y, x) of a map given by get(i, j) in [0, 1]
    if ($("upsample").value === "nearest") return (y, x) => get(rowCell[y], colCell[x]);
    return (y, x) => {
      const u = Math.min(Math.max((y + 0.5) * h / H - 0.5, 0), h - 1), v = Math.min(Math.max((x + 0.5) * w / W - 0.5, 0), w - 1);
      const i0 = Math.floor(u), j0 = Math.floor(v), i1 = Math.min(i0 + 1, h - 1), j1 = Math.min(j0 + 1, w - 1);
      const a = u - i0, b = v - j0;
      return (1 - a) * ((1 - b) * get(i0, j0) + b * get(i0, j1)) + a * ((1 - b) * get(i1, j0) + b * get(i1, j1));
    };
  }
  function hexRGB(hex) { return [1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16)); }

  // Frames: decode every PNG once into pixel arrays.
  const frames = new Array(T);
  const scratch = document.createElement("canvas"); scratch.width = W; scratch.height = H;
  const sctx = scratch.getContext("2d", {willReadFrequently: true});
  function loadFrames() {
    return Promise.all(D.frames.map((url, t) => new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => { sctx.clearRect(0, 0, W, H); sctx.drawImage(img, 0, 0); frames[t] = sctx.getImageData(0, 0, W, H).data.slice(); resolve(); };
      img.onerror = () => reject(new Error("frame " + t + " did not decode"));
      img.src = url;
    })));
  }

  // Layers: [{alpha(y, x) in [0,1], colour(y, x) -> [r,g,b]}] blended order-independently (as viz.overlay.blend).
  function layersFor(t, heads) {
    const layers = [], opacity = parseFloat($("opacity").value);
    if (state.mode === "attention" && attention) {
      for (const n of heads) {
        const base = (t * N + n) * h * w, rgb = hexRGB(state.colours[n]);
        layers.push({alpha: sampler((i, j) => attention[base + i * w + j] / 255), scale: opacity, colour: () => rgb});
      }
    } else if (state.mode === "what-where" && attention && whatWhere) {
      for (const n of heads) {
        const base = (t * N + n) * h * w;
        const ww = sampler((i, j) => whatWhere[base + i * w + j] / 127);
        layers.push({alpha: sampler((i, j) => attention[base + i * w + j] / 255), scale: opacity,
                     colour: (y, x) => { const b = Math.max(-1, Math.min(1, ww(y, x)));
                       return b >= 0 ? [255, 255 * (1 - b), 255 * (1 - b)] : [255 * (1 + b), 255 * (1 + b), 255]; }});
      }
    } else if (state.mode === "saliency" && saliency[t]) {
      const map = saliency[t][$("salKind").value];
      layers.push({alpha: (y, x) => map[y * W + x] / 255, scale: opacity, colour: () => [255, 60, 60]});
    }
    return layers;
  }
  function compose(t, heads) {
    const src = frames[t], out = new ImageData(W, H), px = out.data, layers = layersFor(t, heads);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const k = (y * W + x) * 4;
      let keep = 1, sum = 0, r = 0, g = 0, b = 0;
      for (const L of layers) {
        const a = Math.max(0, Math.min(1, L.alpha(y, x))) * L.scale;
        if (a <= 0) continue;
        const c = L.colour(y, x);
        keep *= 1 - a; sum += a; r += a * c[0]; g += a * c[1]; b += a * c[2];
      }
      const total = 1 - keep, inv = sum > 0 ? 1 / sum : 0;
      px[k] = src[k] * (1 - total) + r * inv * total;
      px[k + 1] = src[k + 1] * (1 - total) + g * inv * total;
      px[k + 2] = src[k + 2] * (1 - total) + b * inv * total;
      px[k + 3] = 255;
    }
    return out;
  }
  function paint(canvas, image, factor, t) {
    scratch.getContext("2d").putImageData(image, 0, 0);
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(scratch, 0, 0, W * factor, H * factor);
    if ($("boxes").checked && D.boxes) {
      ctx.strokeStyle = "#ff00ff"; ctx.lineWidth = 1;
      for (const [x0, y0, x1, y1] of D.boxes[t]) ctx.strokeRect(x0 * factor + 0.5, y0 * factor + 0.5, (x1 - x0) * factor - 1, (y1 - y0) * factor - 1);
    }
  }

  // Charts.
  const chartW = 460, chartH = 70;
  const charts = [
    {name: "value", series: D.value, colour: "#e6e6e6"},
    {name: "reward", series: D.reward, colour: "#5adc5a", bars: true},
    {name: "p(chosen action)", series: D.action.map((a, t) => D.probs[t][a]), colour: "#ffd700", range: [0, 1], all: true},
  ];
  if (D.whatWhereScore) for (let n = 0; n < N; n++) charts.push({name: "what(+)/where(-) head " + n, series: D.whatWhereScore.map((s) => s[n]), colour: D.headColours[n], head: n});
  for (const c of charts) {
    const cv = document.createElement("canvas"); cv.width = chartW; cv.height = chartH; cv.title = c.name;
    cv.addEventListener("click", (e) => { const r = cv.getBoundingClientRect(); seek(Math.floor((e.clientX - r.left) / r.width * T)); });
    $("charts").appendChild(cv); c.canvas = cv;
  }
  function drawChart(c) {
    const ctx = c.canvas.getContext("2d"), s = c.series;
    let lo = c.range ? c.range[0] : Math.min(0, ...s), hi = c.range ? c.range[1] : Math.max(0, ...s);
    if (hi - lo < 1e-9) hi = lo + 1;
    const X = (t) => (t + 0.5) * chartW / T, Y = (v) => chartH - 4 - (v - lo) / (hi - lo) * (chartH - 20);
    ctx.clearRect(0, 0, chartW, chartH);
    if (c.all) {  // every action's probability, faint
      ctx.strokeStyle = "rgba(160,160,200,0.25)";
      for (let a = 0; a < D.actionNames.length; a++) { ctx.beginPath(); for (let t = 0; t < T; t++) ctx[t ? "lineTo" : "moveTo"](X(t), Y(D.probs[t][a])); ctx.stroke(); }
    }
    ctx.strokeStyle = c.colour; ctx.fillStyle = c.colour; ctx.lineWidth = 1.5;
    if (c.bars) { for (let t = 0; t < T; t++) if (s[t] !== 0) { ctx.fillStyle = s[t] > 0 ? c.colour : "#f05050"; ctx.fillRect(X(t) - 1, Math.min(Y(0), Y(s[t])), 2, Math.abs(Y(s[t]) - Y(0))); } }
    else { ctx.beginPath(); for (let t = 0; t < T; t++) ctx[t ? "lineTo" : "moveTo"](X(t), Y(s[t])); ctx.stroke(); }
    for (let t = 1; t < T; t++) if (D.episode[t] !== D.episode[t - 1]) { ctx.fillStyle = "#555"; ctx.fillRect(X(t) - 0.5, 0, 1, chartH); }
    ctx.fillStyle = "#fff"; ctx.fillRect(X(state.t) - 0.5, 0, 1, chartH);
    ctx.fillStyle = "#aaa"; ctx.font = "11px sans-serif";
    ctx.fillText(c.name + " = " + Number(s[state.t]).toFixed(3) + "   [" + lo.toFixed(2) + ", " + hi.toFixed(2) + "]", 4, 11);
  }

  // Small multiples: one canvas per head.
  const smallCanvases = [];
  for (let n = 0; n < N; n++) {
    const div = document.createElement("div"); div.className = "panel";
    const cv = document.createElement("canvas"); cv.width = W * small; cv.height = H * small; cv.id = "head" + n;
    const label = document.createElement("div"); label.id = "headLabel" + n; label.style.color = state.colours[n];
    div.appendChild(cv); div.appendChild(label); $("smalls").appendChild(div); smallCanvases.push(cv);
  }
  function render() {
    const t = state.t, a = D.action[t];
    const heads = []; for (let n = 0; n < N; n++) if (state.on[n]) heads.push(n);
    paint($("main"), compose(t, heads), scale, t);
    for (let n = 0; n < N; n++) {
      paint(smallCanvases[n], compose(t, state.mode === "saliency" ? [] : [n]), small, t);
      const label = $("headLabel" + n);
      label.style.color = state.colours[n];
      label.textContent = "head " + n + "  peak " + (100 * D.attentionPeak[t][n]).toFixed(1) + "%" + (D.whatWhereScore ? "  what/where " + D.whatWhereScore[t][n].toFixed(2) : "");
    }
    $("scrub").value = t;
    // numbered from 0 like the video's header, recording.json and `s3ta explain video --episodes`
    $("status").textContent = "episode " + D.episode[t] + " step " + D.episodeStep[t] + "  (" + (t + 1) + "/" + T + ")" +
      "  action " + (D.actionNames[a] || a) + " p=" + D.probs[t][a].toFixed(2) + "  V=" + D.value[t].toFixed(3) + "  r=" + D.reward[t];
    $("mainLabel").textContent = state.mode === "saliency" && !saliency[t] ? "no saliency computed at this step" : (state.mode === "frame" ? "no attention (baseline agent)" : "all selected heads: " + state.mode);
    for (const c of charts) drawChart(c);
  }
  function seek(t) { state.t = Math.max(0, Math.min(T - 1, t | 0)); render(); }
  function setPlaying(on) {
    state.playing = on; $("play").innerHTML = on ? "&#10074;&#10074; pause" : "&#9654; play";
    clearInterval(state.timer); state.timer = null;
    if (on) state.timer = setInterval(() => { if (state.t >= T - 1) setPlaying(false); else seek(state.t + 1); }, 1000 / parseFloat($("fps").value));
  }

  // Controls.
  $("main").width = W * scale; $("main").height = H * scale;
  $("scrub").max = T - 1;
  for (const m of (D.modes.length ? D.modes : ["frame"])) { const o = document.createElement("option"); o.textContent = m; $("mode").appendChild(o); }
  $("boxesLabel").style.display = D.boxes ? "" : "none";
  $("salLabel").style.display = D.saliency ? "" : "none";
  for (let n = 0; n < N; n++) {
    const label = document.createElement("label");
    label.innerHTML = '<input type="checkbox" id="on' + n + '" checked> head ' + n + ' <input type="color" id="colour' + n + '" value="' + state.colours[n] + '">';
    $("heads").appendChild(label);
  }
  for (let n = 0; n < N; n++) {
    $("on" + n).addEventListener("change", (e) => { state.on[n] = e.target.checked; render(); });
    $("colour" + n).addEventListener("input", (e) => { state.colours[n] = e.target.value; render(); });
  }
  $("play").addEventListener("click", () => setPlaying(!state.playing));
  $("prev").addEventListener("click", () => { setPlaying(false); seek(state.t - 1); });
  $("next").addEventListener("click", () => { setPlaying(false); seek(state.t + 1); });
  $("scrub").addEventListener("input", (e) => seek(parseInt(e.target.value, 10)));
  $("mode").addEventListener("change", (e) => { state.mode = e.target.value; render(); });
  for (const id of ["opacity", "upsample", "boxes", "salKind"]) $(id).addEventListener("input", render);
  $("fps").addEventListener("change", () => { if (state.playing) setPlaying(true); });
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" && e.target.type !== "range" && e.target.type !== "checkbox") return;
    if (e.key === " ") { e.preventDefault(); setPlaying(!state.playing); }
    else if (e.key === "ArrowRight") { e.preventDefault(); setPlaying(false); seek(state.t + 1); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); setPlaying(false); seek(state.t - 1); }
  });
  window.s3taViewer = {numSteps: T, heads: N, seek: seek, state: state, render: render};
  loadFrames().then(() => { render(); document.body.dataset.ready = "1"; })
    .catch((err) => { console.error(err); document.body.dataset.ready = "error"; });
})();
</script>
</body>
</html>
"""
