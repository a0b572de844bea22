// A run's final view kept in its notebook. JupyterLab and Notebook 7 save the state of widgets
// only with "Save Widget State Automatically" on, which is off by default: without it a
// notebook saved after a run reopens with "model not found" where RunDetails was. So once the
// run has ended, this view puts its own final state (and the models it refers to) into the
// notebook's widget metadata, which ipywidgets reads when the notebook is opened again, with or
// without a kernel. The copy kept is marked `saved`, with its actions off: reopened, it has no
// kernel to act through.

const STATE = "application/vnd.jupyter.widget-state+json";
const VIEW = "application/vnd.jupyter.widget-view+json";
const KIND = "jupyter_parallelrun.widget.RunDetails";

// The model ids shown by the notebook's outputs.
function shownModels(notebook) {
  const shown = new Set();
  for (let i = 0; i < notebook.cells.length; i += 1) {
    const outputs = notebook.cells.get(i).outputs;
    for (let j = 0; outputs && j < outputs.length; j += 1) {
      const view = outputs.get(j).data[VIEW];
      if (view && view.model_id) shown.add(view.model_id);
    }
  }
  return shown;
}

/** `state` as a view shows it with no kernel to act through. */
export const asSaved = (state) => ({ ...state, saved: true, can_cancel: false, can_resume: false });
const isView = (entry) => entry.state._anywidget_id === KIND;
const references = (entry) => (JSON.stringify(entry.state).match(/IPY_MODEL_\w+/g) || [])
  .map((ref) => ref.slice("IPY_MODEL_".length));

// `id` and every model its state names ("IPY_MODEL_<id>": its layout, say), from `models`.
function withReferences(id, models, found = {}) {
  if (found[id] || !models[id]) return found;
  found[id] = models[id];
  for (const ref of references(models[id])) withReferences(ref, models, found);
  return found;
}

// Keep `state`, this model's final state, in the notebook; returns whether it wrote anything.
export function keepInNotebook(model, state) {
  const manager = model.widget_manager;
  // JupyterLab's and Notebook 7's widget manager knows its notebook; other front-ends
  // (VS Code, a static page) keep widgets their own way.
  const notebook = manager && manager.context && manager.context.model;
  if (!notebook || !notebook.setMetadata || !manager.get_state_sync || !state.model_id) return false;
  let live;
  try {
    live = manager.get_state_sync({ drop_defaults: true });
  } catch (error) {
    console.warn("RunDetails: the widget state could not be read to keep it in the notebook", error);
    return false;
  }
  if (!live.state[state.model_id]) return false;
  const ours = withReferences(state.model_id, live.state);
  const kept = structuredClone(ours[state.model_id]);
  kept.state.state = asSaved(state);
  const saved = (notebook.getMetadata("widgets") || {})[STATE] || { state: {} };
  const before = saved.state[state.model_id];
  // Already kept (by this view, or by ipywidgets' own setting): a reopened notebook is not
  // marked modified.
  const same = before && JSON.stringify([asSaved(before.state.state), before.state.errors])
    === JSON.stringify([kept.state.state, kept.state.errors]);
  if (same) return false;
  // Views of runs no output shows any more (a cell run again, cleared) are dropped, with the
  // models only they referred to; other widgets' saved state is left as it was.
  const shown = shownModels(notebook);
  const models = { ...saved.state, ...ours, [state.model_id]: kept };
  const usedByViews = new Set(Object.values(models).filter(isView).flatMap(references));
  const keep = {};
  for (const [id, entry] of Object.entries(models)) {
    const root = isView(entry) ? shown.has(id) || id === state.model_id : !usedByViews.has(id);
    if (root) withReferences(id, models, keep);
  }
  notebook.setMetadata("widgets", { [STATE]: { version_major: live.version_major,
    version_minor: live.version_minor, state: keep } });
  return true;
}
