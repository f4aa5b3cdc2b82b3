// blockpaca_nb dashboard: what the panels' modules share. An anywidget module cannot import a file
// beside it, so the Python side puts this file in front of chart.js, table.js and header.js
// (`front_end` in tables.py), and they use these names as their own.
//
// The chart and the tables are fed by patches: one store per widget model (keyed by its `uid`)
// outlives its views, so a re-displayed dashboard draws at once; a patch that does not follow the
// store's last one means something was missed, and the store asks the kernel for a full copy.

const RESYNC_EVERY_MS = 2000;

function isNum(v) {
  return typeof v === "number" && Number.isFinite(v);
}

// The store of this model, made with `fresh()`'s fields on first use.
function storeFor(stores, model, fresh) {
  const uid = model.get("uid");
  if (!stores.has(uid)) stores.set(uid, { seq: -1, views: new Set(), lastResync: 0, ...fresh() });
  return stores.get(uid);
}

// Ask the kernel for a full copy, at most once every RESYNC_EVERY_MS.
function requestResync(store, model) {
  const now = Date.now();
  if (now - store.lastResync < RESYNC_EVERY_MS) return;
  store.lastResync = now;
  model.send({ type: "resync" });
}

// Draw `view` at the next animation frame (once, however often this is called before it).
function scheduleRender(view) {
  if (view.frame) return;
  view.frame = requestAnimationFrame(() => {
    view.frame = 0;
    view.render();
  });
}

function redrawViews(store) {
  for (const view of store.views) view.schedule();
}

// The anywidget module of a patched panel: `storeOf(model)`, `applyPatch(store, model, patch)` and
// a `View(model, el, store)` class with `destroy()`. With `resyncAtStart`, a store that has no patch
// yet asks for a full copy (a table opened after the kernel's first patch went by).
function patchedWidget(storeOf, applyPatch, View, resyncAtStart) {
  return {
    initialize({ model }) {
      const store = storeOf(model);
      const onPatch = () => applyPatch(store, model, model.get("patch"));
      model.on("change:patch", onPatch);
      onPatch();
      if (resyncAtStart && store.seq < 0) requestResync(store, model);
      return () => model.off("change:patch", onPatch);
    },
    render({ model, el }) {
      const store = storeOf(model);
      if (store.seq < 0) applyPatch(store, model, model.get("patch"));
      const view = new View(model, el, store);
      store.views.add(view);
      return () => {
        store.views.delete(view);
        view.destroy();
      };
    },
  };
}
