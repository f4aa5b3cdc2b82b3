// blockpaca_nb dashboard: the live chart, drawn as SVG. Top: session P&L over time, with one thinner
// line per strategy once there are two (their colors in the legend). Bottom: the
// chosen ticker's mid with its fills (buys ▲ green, sells ▼ red). chart.py sends only the samples
// and fills added since the previous patch; the store per model (keyed by `uid`) keeps the rest.

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 300;
const EMPTY_HEIGHT = 48;
const PAD = { left: 64, right: 16, top: 22, gap: 30, bottom: 22 };
const stores = new Map();
const LINE_COLORS = ["#1a7f37", "#cf222e", "#bf8700", "#0969da", "#8c959f", "#e16f24", "#6639ba", "#1b7c83"];

function getStore(model) {
  return storeFor(stores, model, () => ({ ticker: "", t: [], pnl: [], price: [], fills: [], lines: {} }));
}

// Each strategy's P&L stays aligned with the times: a strategy that appears late is padded with gaps.
function pushLines(store, lines, count) {
  const before = store.t.length;
  for (const [name, values] of Object.entries(lines || {})) {
    if (!store.lines[name]) store.lines[name] = new Array(before).fill(null);
    store.lines[name].push(...values);
  }
  for (const line of Object.values(store.lines)) {
    while (line.length < before + count) line.push(null);
  }
}

function applyPatch(store, model, patch) {
  if (!patch || patch.seq === undefined || patch.seq === store.seq) return;
  if (patch.reset) {
    Object.assign(store, { ticker: patch.ticker, t: [], pnl: [], price: [], fills: [], lines: {} });
  } else if (patch.base !== store.seq) {
    requestResync(store, model);
    return;
  }
  pushLines(store, patch.lines, patch.t.length);
  store.t.push(...patch.t);
  store.pnl.push(...patch.pnl);
  store.price.push(...patch.price);
  store.fills.push(...patch.fills);
  store.seq = patch.seq;
  redrawViews(store);
}

function el(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function extent(values, extra) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values.concat(extra || [])) {
    if (isNum(v)) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (!Number.isFinite(lo)) return null;
  if (hi - lo < 1e-9) {
    const pad = Math.max(Math.abs(hi) * 0.001, 0.01);
    return [lo - pad, hi + pad];
  }
  const pad = (hi - lo) * 0.08;
  return [lo - pad, hi + pad];
}

function clock(t) {
  const d = new Date(t * 1000);
  return d.toTimeString().slice(0, 8);
}

function number(v) {
  return Math.abs(v) >= 1000 ? v.toLocaleString("en-US", { maximumFractionDigits: 0 }) : v.toFixed(2);
}

class ChartView {
  constructor(model, node, store) {
    this.model = model;
    this.store = store;
    this.frame = 0;
    this.root = document.createElement("div");
    this.root.className = "bp-panel bp-chart";
    node.append(this.root);
    this.observer = new ResizeObserver(() => this.schedule());
    this.observer.observe(this.root);
    this.schedule();
  }

  schedule() {
    scheduleRender(this);
  }

  render() {
    const width = Math.max(320, this.root.clientWidth || 800);
    this.right = width - PAD.right;
    const svg = el("svg", { width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, class: "bp-chart-svg" });
    const s = this.store;
    const paneHeight = (HEIGHT - PAD.top - PAD.gap - PAD.bottom) / 2;
    const top = { y: PAD.top, h: paneHeight };
    const bottom = { y: PAD.top + paneHeight + PAD.gap, h: paneHeight };
    if (s.t.length < 1) {
      const empty = el("svg", { width, height: EMPTY_HEIGHT, class: "bp-chart-svg" });
      empty.append(el("text", { x: width / 2, y: EMPTY_HEIGHT / 2 + 4, class: "bp-chart-empty", "text-anchor": "middle" }, "the chart starts when the session runs"));
      this.root.replaceChildren(empty);
      return;
    }
    const t0 = s.t[0];
    const t1 = Math.max(s.t[s.t.length - 1], t0 + 1);
    const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (width - PAD.left - PAD.right);
    const lastPnl = [...s.pnl].reverse().find(isNum);
    const names = Object.keys(s.lines).sort();
    const all = [0].concat(...names.map((n) => s.lines[n]));
    const yPnl = this.pane(svg, top, x, s.t, s.pnl, all, `Session P&L${isNum(lastPnl) ? `: ${lastPnl >= 0 ? "+" : ""}${number(lastPnl)}` : ""}`, "bp-line-pnl", true);
    if (yPnl) this.drawStrategies(svg, x, yPnl, names, top);
    const fillPrices = s.fills.map((f) => f[1]);
    const lastPrice = [...s.price].reverse().find(isNum);
    const title = `${s.ticker} mid${isNum(lastPrice) ? `: ${number(lastPrice)}` : ""} · ${s.fills.length} fill${s.fills.length === 1 ? "" : "s"}`;
    const y = this.pane(svg, bottom, x, s.t, s.price, fillPrices, title, "bp-line-price", false);
    if (y) this.drawFills(svg, x, y, t0, t1);
    this.axis(svg, x, t0, t1, bottom.y + bottom.h);
    this.root.replaceChildren(svg);
  }

  pane(svg, box, x, times, values, extra, title, cls, zeroLine) {
    const range = extent(values, extra);
    svg.append(el("text", { x: PAD.left, y: box.y - 6, class: "bp-chart-title" }, title));
    const right = this.right;
    svg.append(el("rect", { x: PAD.left, y: box.y, width: right - PAD.left, height: box.h, class: "bp-chart-bg" }));
    if (!range) return null;
    const [lo, hi] = range;
    const y = (v) => box.y + box.h - ((v - lo) / (hi - lo)) * box.h;
    for (const v of [lo, (lo + hi) / 2, hi]) {
      svg.append(el("line", { x1: PAD.left, x2: right, y1: y(v), y2: y(v), class: "bp-grid" }));
      svg.append(el("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "bp-tick" }, number(v)));
    }
    if (zeroLine && lo < 0 && hi > 0) {
      svg.append(el("line", { x1: PAD.left, x2: right, y1: y(0), y2: y(0), class: "bp-zero-line" }));
    }
    let d = "";
    let pen = false;
    for (let i = 0; i < times.length; i += 1) {
      const v = values[i];
      if (!isNum(v)) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${x(times[i]).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    }
    if (d) svg.append(el("path", { d, class: `bp-line ${cls}` }));
    return y;
  }

  drawStrategies(svg, x, y, names, box) {
    let legendX = this.right;
    names.slice().reverse().forEach((name, i) => {
      const color = LINE_COLORS[(names.length - 1 - i) % LINE_COLORS.length];
      const values = this.store.lines[name];
      let d = "";
      let pen = false;
      values.forEach((v, k) => {
        if (!isNum(v)) { pen = false; return; }
        d += `${pen ? "L" : "M"}${x(this.store.t[k]).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      if (d) svg.append(el("path", { d, class: "bp-line bp-line-strategy", stroke: color }));
      const last = [...values].reverse().find(isNum);
      const label = el("text", { x: legendX, y: box.y - 6, "text-anchor": "end", class: "bp-chart-legend", fill: color },
        `${name}${isNum(last) ? ` ${last >= 0 ? "+" : ""}${number(last)}` : ""}`);
      svg.append(label);
      legendX -= 12 + 7 * label.textContent.length;
    });
  }

  drawFills(svg, x, y, t0, t1) {
    for (const [t, price, qty, side] of this.store.fills) {
      if (!isNum(price) || t < t0 - 1) continue;
      const cx = x(Math.min(Math.max(t, t0), t1));
      const cy = y(price);
      const r = 5;
      const points = side > 0
        ? `${cx},${cy - r} ${cx - r},${cy + r} ${cx + r},${cy + r}`
        : `${cx},${cy + r} ${cx - r},${cy - r} ${cx + r},${cy - r}`;
      const mark = el("polygon", { points, class: side > 0 ? "bp-fill-buy" : "bp-fill-sell" });
      mark.append(el("title", {}, `${side > 0 ? "buy" : "sell"} ${qty} @ ${price} · ${clock(t)}`));
      svg.append(mark);
    }
  }

  axis(svg, x, t0, t1, yBase) {
    const count = 5;
    for (let i = 0; i < count; i += 1) {
      const t = t0 + ((t1 - t0) * i) / (count - 1);
      svg.append(el("text", { x: x(t), y: yBase + 16, "text-anchor": i === 0 ? "start" : i === count - 1 ? "end" : "middle", class: "bp-tick" }, clock(t)));
    }
  }

  destroy() {
    this.observer.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
  }
}

export default patchedWidget(getStore, applyPatch, ChartView, false);
