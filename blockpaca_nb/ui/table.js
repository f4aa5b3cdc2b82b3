// blockpaca_nb dashboard: a keyed, sortable, virtualised table fed by row diffs (tables.py).
//
// One store per widget model (keyed by its `uid` trait) holds the rows; `initialize` feeds it every
// `patch` the kernel sends, and each view draws from it. A patch that does not follow the store's
// last one (`base`) means something was missed: the store asks the kernel for a full copy.
// Only the rows in sight are in the DOM (fixed row height), so 500 tickers stay smooth; cells that
// changed flash green (up) or red (down); ages tick locally, without messages.

const ROW_HEIGHT = 22;
const OVERSCAN = 8;
const FLASH_MS = 900;
const FLASH_UP = "rgba(26, 127, 55, 0.35)";
const FLASH_DOWN = "rgba(207, 34, 46, 0.35)";
const STALE_AGE_S = 5;
const stores = new Map();

function getStore(model) {
  return storeFor(stores, model, () => ({ rows: new Map(), footer: null, flashes: new Map(), version: 0, offset: 0 }));
}

function kernelNow(store) {
  return Date.now() / 1000 + store.offset;
}

function fieldIndex(model) {
  const index = {};
  (model.get("fields") || []).forEach((name, i) => { index[name] = i; });
  return index;
}

// The value a column shows for a row: a field, the row key, or a value derived from fields.
function cellValue(col, key, vals, idx, store) {
  const f = (name) => (idx[name] === undefined ? null : vals[idx[name]]);
  const bid = () => f("bid");
  const ask = () => f("ask");
  const mid = () => (isNum(bid()) && isNum(ask()) ? (bid() + ask()) / 2 : null);
  switch (col.key) {
    case "key": return key;
    case "mid": return mid();
    case "spread_bps": {
      const m = mid();
      return isNum(m) && m > 0 ? ((ask() - bid()) / m) * 1e4 : null;
    }
    case "change_pct": {
      const m = mid();
      const base = f("base");
      return isNum(m) && isNum(base) && base > 0 ? (m / base - 1) * 100 : null;
    }
    case "age": {
      const t = f("t");
      return isNum(t) ? Math.max(0, kernelNow(store) - t) : null;
    }
    default: return f(col.key);
  }
}

function two(n) {
  return String(n).padStart(2, "0");
}

const FORMATS = {
  text: (v) => (v === null || v === undefined ? "" : String(v)),
  price: (v) => (isNum(v) ? v.toFixed(Math.abs(v) >= 1 ? 2 : 4) : "—"),
  qty: (v) => (isNum(v) ? String(Math.round(v * 1e4) / 1e4) : "—"),
  money: (v) => {
    // Compact above 1,000 so narrow panels keep the whole number in sight (the tooltip has it all).
    if (!isNum(v)) return "—";
    const a = Math.abs(v);
    if (a >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
    const digits = a >= 1000 ? 0 : 2;
    return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  },
  pct: (v) => (isNum(v) ? `${v > 0 ? "+" : ""}${v.toFixed(2)}%` : "—"),
  bps: (v) => (isNum(v) ? v.toFixed(1) : "—"),
  time: (v) => {
    if (!isNum(v)) return "";
    const d = new Date(v * 1000);
    return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
  },
  usage: (v) => (isNum(v) ? `${Math.round(v * 100)}%` : ""),
  age: (v) => {
    if (!isNum(v)) return "—";
    if (v < 10) return `${v.toFixed(1)} s`;
    if (v < 120) return `${Math.round(v)} s`;
    return `${Math.round(v / 60)} min`;
  },
};

function format(col, v) {
  return (FORMATS[col.kind] || FORMATS.text)(v);
}

// Apply one patch to the store; note which flashing cells changed and in which direction.
function applyPatch(store, model, patch) {
  if (!patch || patch.seq === undefined || patch.seq === store.seq) return;
  if (patch.reset) {
    store.rows = new Map(patch.upsert);
    store.flashes.clear();
  } else if (patch.base !== store.seq) {
    requestResync(store, model);
    return;
  } else {
    const columns = (model.get("columns") || []).filter((c) => c.flash);
    const idx = fieldIndex(model);
    const now = performance.now();
    for (const [key, vals] of patch.upsert) {
      const old = store.rows.get(key);
      if (old) {
        for (const col of columns) {
          const a = cellValue(col, key, old, idx, store);
          const b = cellValue(col, key, vals, idx, store);
          if (isNum(a) && isNum(b) && a !== b) store.flashes.set(`${key}\u0000${col.key}`, { t: now, up: b > a });
        }
      }
      store.rows.set(key, vals);
    }
    for (const key of patch.remove) store.rows.delete(key);
  }
  store.seq = patch.seq;
  store.footer = patch.footer;
  if (isNum(patch.now)) store.offset = patch.now - Date.now() / 1000;
  store.version += 1;
  redrawViews(store);
}

function compare(a, b) {
  const an = a === null || a === undefined || (typeof a === "number" && !Number.isFinite(a));
  const bn = b === null || b === undefined || (typeof b === "number" && !Number.isFinite(b));
  if (an || bn) return an === bn ? 0 : an ? 1 : -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

function make(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

class TableView {
  constructor(model, el, store) {
    this.model = model;
    this.store = store;
    this.sort = { ...(model.get("sort") || {}) };
    this.selected = null;
    this.sortedFor = -1;
    this.keys = [];
    this.pool = [];
    this.frame = 0;
    this.build(el);
    this.onScroll = () => this.schedule();
    this.scroller.addEventListener("scroll", this.onScroll, { passive: true });
    this.timer = setInterval(() => this.tick(), 500);
    this.schedule();
  }

  build(el) {
    const model = this.model;
    this.columns = model.get("columns") || [];
    this.idx = fieldIndex(model);
    this.root = make("div", "bp-panel bp-table-panel");
    const head = make("div", "bp-panel-head");
    head.append(make("span", "bp-title", model.get("title")));
    this.count = make("span", "bp-count");
    head.append(this.count, make("span", "bp-note", model.get("note") || ""));
    this.scroller = make("div", "bp-scroll");
    this.maxHeight = model.get("height");
    this.scroller.style.maxHeight = `${this.maxHeight}px`;
    const table = make("table", "bp-table");
    const widths = make("colgroup");
    let fixed = 0;
    for (const col of this.columns) {
      const c = make("col");
      if (col.width) c.style.width = `${col.width}px`;
      fixed += col.width || 56;
      widths.append(c);
    }
    table.style.minWidth = `${fixed}px`;
    table.append(widths);
    this.thead = make("thead");
    this.tbody = make("tbody");
    this.tfoot = make("tfoot");
    table.append(this.thead, this.tbody, this.tfoot);
    this.empty = make("div", "bp-empty", model.get("empty_text"));
    this.scroller.append(table, this.empty);
    this.detail = make("pre", "bp-detail");
    this.detail.style.display = "none";
    this.root.append(head, this.scroller, this.detail);
    el.append(this.root);
    this.buildHeader();
    this.topSpacer = make("tr", "bp-spacer");
    this.bottomSpacer = make("tr", "bp-spacer");
    this.tbody.append(this.topSpacer, this.bottomSpacer);
    this.tbody.addEventListener("click", (event) => this.onRowClick(event));
  }

  buildHeader() {
    const tr = make("tr");
    this.headCells = this.columns.map((col) => {
      const th = make("th", `bp-${col.kind || "text"}`, col.label);
      th.dataset.key = col.key;
      if (col.title) th.title = col.title;
      th.addEventListener("click", () => this.sortBy(col.key));
      tr.append(th);
      return th;
    });
    this.thead.append(tr);
    this.markSort();
  }

  sortBy(key) {
    this.sort = this.sort.key === key ? { key, desc: !this.sort.desc } : { key, desc: false };
    this.sortedFor = -1;
    this.markSort();
    this.schedule();
  }

  markSort() {
    this.headCells.forEach((th, i) => {
      const col = this.columns[i];
      th.classList.toggle("bp-sorted", this.sort.key === col.key);
      th.dataset.dir = this.sort.key === col.key ? (this.sort.desc ? "desc" : "asc") : "";
    });
  }

  schedule() {
    scheduleRender(this);
  }

  tick() {
    // Ages grow and flashes fade without any message from the kernel.
    this.render();
  }

  sortedKeys() {
    const store = this.store;
    if (this.sortedFor === store.version) return this.keys;
    const keys = Array.from(store.rows.keys());
    // Sort by a column, or by the row key itself ("key": arrival order for event panels).
    const col = this.columns.find((c) => c.key === this.sort.key) || (this.sort.key === "key" ? { key: "key" } : null);
    if (col) {
      const values = new Map(keys.map((k) => [k, cellValue(col, k, store.rows.get(k), this.idx, store)]));
      const sign = this.sort.desc ? -1 : 1;
      keys.sort((a, b) => sign * compare(values.get(a), values.get(b)));
    }
    this.keys = keys;
    this.sortedFor = store.version;
    return keys;
  }

  render() {
    if (!this.root.isConnected) return;
    const store = this.store;
    const keys = this.sortedKeys();
    this.count.textContent = `${keys.length} row${keys.length === 1 ? "" : "s"}`;
    this.empty.style.display = keys.length ? "none" : "block";
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const visible = Math.ceil(this.maxHeight / ROW_HEIGHT) + 2 * OVERSCAN;
    const last = Math.min(keys.length, first + visible);
    this.topSpacer.style.height = `${first * ROW_HEIGHT}px`;
    this.bottomSpacer.style.height = `${(keys.length - last) * ROW_HEIGHT}px`;
    this.ensurePool(last - first);
    const now = performance.now();
    for (let i = 0; i < this.pool.length; i += 1) {
      const tr = this.pool[i];
      const key = keys[first + i];
      if (key === undefined) {
        tr.style.display = "none";
        continue;
      }
      tr.style.display = "";
      this.fillRow(tr, key, store.rows.get(key), now);
    }
    this.renderFooter();
    this.renderDetail();
    this.pruneFlashes(now);
  }

  ensurePool(size) {
    while (this.pool.length < size) {
      const tr = make("tr", "bp-row");
      tr.style.height = `${ROW_HEIGHT}px`;
      for (const col of this.columns) tr.append(make("td", `bp-${col.kind || "text"}`));
      this.tbody.insertBefore(tr, this.bottomSpacer);
      this.pool.push(tr);
    }
  }

  fillRow(tr, key, vals, now) {
    const store = this.store;
    const slotChanged = tr.dataset.key !== key;
    tr.dataset.key = key;
    const bad = this.idx.bad !== undefined && vals[this.idx.bad];
    tr.classList.toggle("bp-bad", Boolean(bad));
    tr.classList.toggle("bp-selected", this.selected === key);
    this.columns.forEach((col, c) => {
      const td = tr.children[c];
      const v = cellValue(col, key, vals, this.idx, store);
      const text = format(col, v);
      if (td.textContent !== text) td.textContent = text;
      if (col.kind === "text" || col.kind === "money") td.title = col.kind === "money" && isNum(v) ? v.toFixed(2) : text;
      if (col.color === "sign") {
        td.classList.toggle("bp-pos", isNum(v) && v > 0);
        td.classList.toggle("bp-neg", isNum(v) && v < 0);
      }
      if (col.kind === "age") td.classList.toggle("bp-stale", !isNum(v) || v > STALE_AGE_S);
      if (col.kind === "usage") {
        // a bar behind the number: how much of its nearest limit the strategy uses
        td.style.setProperty("--bp-usage", `${isNum(v) ? Math.min(100, Math.max(0, v * 100)) : 0}%`);
        td.classList.toggle("bp-hot", isNum(v) && v >= 0.9);
      }
      if (col.flash) this.flash(td, store.flashes.get(`${key}\u0000${col.key}`), slotChanged, now);
    });
  }

  flash(td, flash, slotChanged, now) {
    if (slotChanged) {
      if (td._flash) td._flash.cancel();
      td._flashT = flash ? flash.t : 0;
      return;
    }
    if (!flash || flash.t === td._flashT || now - flash.t > FLASH_MS) return;
    td._flashT = flash.t;
    // The Web Animations API restarts a fade without forcing a layout (a class toggle needs a
    // reflow per cell, which made a render of 30 rows take 100 ms).
    if (td._flash) td._flash.cancel();
    const from = flash.up ? FLASH_UP : FLASH_DOWN;
    td._flash = td.animate([{ backgroundColor: from }, { backgroundColor: "transparent" }], {
      duration: FLASH_MS - (now - flash.t),
      easing: "ease-out",
    });
  }

  pruneFlashes(now) {
    const flashes = this.store.flashes;
    if (flashes.size < 2000) return;
    for (const [k, f] of flashes) if (now - f.t > FLASH_MS) flashes.delete(k);
  }

  renderFooter() {
    const footer = this.store.footer;
    if (!footer) {
      this.tfoot.replaceChildren();
      return;
    }
    const tr = make("tr", "bp-total");
    for (const col of this.columns) {
      const v = footer[col.key];
      const td = make("td", `bp-${col.kind || "text"}`, v === undefined || v === null ? "" : col.key === "key" ? String(v) : format(col, v));
      if (col.color === "sign" && isNum(v)) td.classList.add(v > 0 ? "bp-pos" : v < 0 ? "bp-neg" : "bp-zero");
      tr.append(td);
    }
    this.tfoot.replaceChildren(tr);
  }

  onRowClick(event) {
    const tr = event.target.closest("tr.bp-row");
    if (!tr || this.idx.detail === undefined) return;
    this.selected = this.selected === tr.dataset.key ? null : tr.dataset.key;
    this.render();
  }

  renderDetail() {
    if (this.idx.detail === undefined) return;
    const vals = this.selected === null ? null : this.store.rows.get(this.selected);
    const text = vals ? vals[this.idx.detail] || vals[this.idx.message] || "" : "";
    this.detail.style.display = text ? "block" : "none";
    if (this.detail.textContent !== text) this.detail.textContent = text;
  }

  destroy() {
    clearInterval(this.timer);
    if (this.frame) cancelAnimationFrame(this.frame);
    this.scroller.removeEventListener("scroll", this.onScroll);
  }
}

export default patchedWidget(getStore, applyPatch, TableView, true);
