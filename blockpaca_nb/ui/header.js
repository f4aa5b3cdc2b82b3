// blockpaca_nb dashboard: the header strip (header.py sends its `state` only when a value changed).
// Countdowns (warm-up, time left, next tick) and the last quote's age run on a local timer from
// the times in the state, corrected by the kernel's clock at sending.

const STALE_FEED_S = 5;
const SILENT_S = 20; // the kernel sends the header at least every 5 s (header.py HEARTBEAT_S)
const LIVE_STATUSES = ["starting", "warming_up", "running", "paused", "liquidating", "stopping"];

const STATUS_TEXT = {
  created: "not started",
  starting: "starting…",
  warming_up: "warming up",
  running: "running",
  paused: "paused",
  liquidating: "liquidating",
  stopping: "stopping: end-of-session action…",
  stopped: "stopped",
  failed: "failed: see the errors panel",
};

function money(v) {
  return isNum(v) ? v.toLocaleString("en-US", { style: "currency", currency: "USD" }) : "—";
}

function signed(v) {
  if (!isNum(v)) return "—";
  return `${v > 0 ? "+" : v < 0 ? "−" : ""}${money(Math.abs(v))}`;
}

function duration(s) {
  if (!isNum(s)) return "—";
  s = Math.max(0, s);
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h ? `${h} h ${String(m).padStart(2, "0")} min` : `${m}:${String(sec).padStart(2, "0")}`;
}

function make(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

function item(label, role) {
  const box = make("div", "bp-item");
  box.dataset.role = role;
  const value = make("div", "bp-value");
  box.append(make("div", "bp-label", label), value);
  return { box, value };
}

class HeaderView {
  constructor(model, el) {
    this.model = model;
    this.offset = 0;
    this.root = make("div", "bp-panel bp-header");
    this.mode = make("div", "bp-mode");
    this.mode.dataset.role = "mode";
    this.items = {};
    const specs = [
      ["status", "Status"], ["strategy", "Strategy"], ["equity", "Equity"], ["cash", "Cash"],
      ["buying_power", "Buying power"], ["day_pnl", "Day P&L"], ["rate", "Rate limit"], ["feed", "Feed"],
      ["workers", "Workers"], ["ticks", "Ticks"], ["errors", "Errors"],
    ];
    this.root.append(this.mode);
    for (const [role, label] of specs) {
      this.items[role] = item(label, role);
      this.root.append(this.items[role].box);
    }
    this.progress = make("div", "bp-progress");
    this.progressBar = make("div", "bp-progress-bar");
    this.progress.append(this.progressBar);
    this.statusText = make("span", "bp-status-text");
    this.clock = make("span", "bp-clock");
    this.items.status.value.append(this.statusText, this.progress, this.clock);
    this.rateBar = make("div", "bp-progress bp-rate");
    this.rateFill = make("div", "bp-progress-bar");
    this.rateBar.append(this.rateFill);
    this.rateText = make("span");
    this.items.rate.value.append(this.rateText, this.rateBar);
    el.append(this.root);
    this.onChange = () => this.update();
    model.on("change:state", this.onChange);
    this.timer = setInterval(() => this.tick(), 250);
    this.update();
  }

  now() {
    return Date.now() / 1000 + this.offset;
  }

  update() {
    const s = this.model.get("state") || {};
    this.s = s;
    this.heardAt = Date.now() / 1000;
    if (isNum(s.now)) this.offset = s.now - Date.now() / 1000;
    const mode = s.mode || "—";
    this.mode.textContent = mode;
    this.mode.className = `bp-mode bp-mode-${mode.toLowerCase()}`;
    this.mode.title = mode === "LIVE" ? "LIVE account: real money" : `${mode} account`;
    this.root.classList.toggle("bp-live", mode === "LIVE");
    const set = (role, text, cls) => {
      const v = this.items[role].value;
      if (v.textContent !== text) v.textContent = text;
      v.className = `bp-value ${cls || ""}`;
    };
    const stopped = s.strategy_state ? ` · ${s.strategy_state.replace("_", "-")}` : "";
    set("strategy", s.strategy ? `${s.strategy}${stopped}${s.strategies > 1 ? ` (${s.strategies} registered)` : ""}` : "none registered",
        stopped ? "bp-warn" : "");
    set("equity", money(s.equity));
    set("cash", money(s.cash));
    set("buying_power", money(s.buying_power));
    const pct = isNum(s.day_pnl_pct) ? ` (${s.day_pnl_pct > 0 ? "+" : ""}${s.day_pnl_pct.toFixed(2)}%)` : "";
    set("day_pnl", `${signed(s.day_pnl)}${pct}`, isNum(s.day_pnl) ? (s.day_pnl > 0 ? "bp-pos" : s.day_pnl < 0 ? "bp-neg" : "") : "");
    const used = s.rate_used || 0;
    const limit = s.rate_limit || 0;
    this.rateText.textContent = `${used}/${limit} per min`;
    const share = limit ? Math.min(1, used / limit) : 0;
    this.rateFill.style.width = `${share * 100}%`;
    this.rateBar.classList.toggle("bp-hot", share > 0.8);
    const alive = `${s.workers_alive || 0}/${s.workers || 0} alive`;
    const ended = s.status === "stopped" || s.status === "failed";
    const workersOk = ended || !s.workers || s.workers_alive === s.workers;
    const waiting = s.waiting ? ` · ${s.waiting} waiting (market closed or held)` : "";
    set("workers", `${alive} · ${s.in_flight || 0} in flight${waiting}${s.restarts ? ` · ${s.restarts} restarts` : ""}`, workersOk ? "" : "bp-warn");
    set("ticks", `${s.ticks || 0}${s.skipped ? ` (${s.skipped} skipped)` : ""}`, s.skipped ? "bp-warn" : "");
    set("errors", String(s.errors || 0), s.errors ? "bp-neg" : "");
    this.tick();
  }

  tick() {
    const s = this.s || {};
    const now = this.now();
    const status = s.status || "created";
    this.statusText.textContent = s.activity || STATUS_TEXT[status] || status;
    this.items.status.value.className = `bp-value bp-status-${status}`;
    this.items.status.box.dataset.status = status;
    let progress = null;
    let clock = "";
    if (status === "warming_up" && isNum(s.started_at)) {
      const elapsed = now - s.started_at;
      progress = s.warm_up > 0 ? Math.min(1, elapsed / s.warm_up) : 1;
      clock = `${duration(s.warm_up - elapsed)} left`;
    } else if (status === "running" && isNum(s.started_at)) {
      const parts = [];
      if (isNum(s.ends_at)) parts.push(`${duration(s.ends_at - now)} left`);
      const loopStart = s.started_at + (s.warm_up || 0);
      if (isNum(s.frequency) && s.frequency > 0) {
        const next = loopStart + Math.ceil((now - loopStart) / s.frequency) * s.frequency;
        parts.push(`next tick in ${duration(next - now)}`);
      }
      clock = parts.join(" · ");
    }
    const silent = Date.now() / 1000 - (this.heardAt || Date.now() / 1000);
    const patience = Math.max(SILENT_S, 4 * (s.refresh_s || 0)); // a slow refresh rate is no silence
    if (LIVE_STATUSES.includes(status) && silent > patience) {
      // a restarted (or dead) kernel sends nothing: the last state must not pass for a live session
      this.statusText.textContent = `no word from the kernel for ${duration(silent)}: restarted, or stopped?`;
      this.items.status.value.className = "bp-value bp-warn";
      clock = "";
    }
    this.progress.style.display = progress === null ? "none" : "inline-block";
    if (progress !== null) this.progressBar.style.width = `${progress * 100}%`;
    if (this.clock.textContent !== clock) this.clock.textContent = clock;
    this.feed(now, status);
  }

  feed(now, status) {
    const s = this.s || {};
    const v = this.items.feed.value;
    let text;
    let cls;
    if (status === "stopped" || status === "failed") {
      text = "closed";
      cls = "bp-muted";
    } else if (!isNum(s.last_quote)) {
      text = status === "created" ? "not connected" : "waiting for quotes";
      cls = "bp-muted";
    } else {
      const age = Math.max(0, now - s.last_quote);
      const stale = age > STALE_FEED_S;
      const restarts = s.feed_restarts ? ` · ${s.feed_restarts} restart${s.feed_restarts === 1 ? "" : "s"}` : "";
      text = `${stale ? "stale" : "connected"} · last quote ${duration(age)} ago · ${s.quoted}/${s.tickers} quoted${restarts}`;
      cls = stale ? "bp-warn" : "bp-ok";
    }
    if (v.textContent !== text) v.textContent = text;
    v.className = `bp-value ${cls}`;
  }

  destroy() {
    clearInterval(this.timer);
    this.model.off("change:state", this.onChange);
  }
}

export default {
  render({ model, el }) {
    const view = new HeaderView(model, el);
    return () => view.destroy();
  },
};
