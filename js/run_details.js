// RunDetails front-end (anywidget): the view of the run state the Python side pushes as
// `state` (small, every poll) and `errors` (grouped, sent only when it changes). The DOM is
// made once and patched on each change, so scroll positions, selections, open sections and
// shown tracebacks survive every poll.

import { h, keyed, setAttr, setText, show, table } from "./dom.js";
import { clock, duration } from "./format.js";
import { asSaved, keepInNotebook } from "./saved.js";
import { stepView } from "./step.js";

const SAVED = "run the cell again for a live view (Cancel, Resume, the logs).";
const saved = (state) =>
  `Saved with the notebook ${state.final ? "when the run ended" : "while the run was going"}: ${SAVED}`;

// Whether this view's model talks to a kernel. One restored from the notebook's saved widget
// state has no comm, whoever saved it: this view when the run ended (saved.js), or ipywidgets'
// "Save Widget State Automatically", which keeps the live copy as it was, actions on.
async function hasKernel(model, id) {
  try {
    return Boolean((await model.widget_manager.get_model(id)).comm_live);
  } catch (error) {
    // A front-end whose manager cannot say: the kernel side answers the actions, as before.
    return true;
  }
}

function actions(model) {
  const cancel = h("button", { type: "button", class: "prd-button prd-cancel", text: "Cancel" });
  const resume = h("button", { type: "button", class: "prd-button prd-resume", text: "Resume" });
  cancel.addEventListener("click", () => { cancel.disabled = true; model.send({ action: "cancel" }); });
  resume.addEventListener("click", () => { resume.disabled = true; model.send({ action: "resume" }); });
  const node = h("div", { class: "prd-actions" }, cancel, resume);
  node.update = (state) => {
    cancel.disabled = !state.can_cancel;
    resume.disabled = !state.can_resume;
    setAttr(cancel, "title", state.can_cancel ? "Stop the run; committed output stays"
      : state.final ? "The run has ended" : "Cancel already requested");
    setAttr(resume, "title", state.can_resume ? "Carry on: committed mini-batches are kept"
      : state.saved ? saved(state) : "Only a Failed or Canceled run can be resumed");
  };
  return node;
}

function runProperties() {
  const body = h("div", { class: "prd-props" });
  const node = h("details", { class: "prd-run-properties" }, h("summary", { text: "Run properties" }), body);
  let key = "";
  node.update = (state) => {
    const rows = [["run id", state.id], ["experiment", state.experiment],
      ["started", clock(state.started)], ["ended", clock(state.ended)],
      ["duration", state.ended ? duration(state.elapsed) : ""],
      ...Object.entries(state.parameters).map(([k, v]) => [`parameter ${k}`, v]),
      ...Object.entries(state.tags).map(([k, v]) => [`tag ${k}`, String(v)])].filter(([, v]) => v);
    const next = JSON.stringify(rows);
    if (next === key) return;
    key = next;
    body.replaceChildren(...rows.map(([k, v]) => h("div", { class: "prd-prop" },
      h("span", { class: "prd-prop-name", text: k }), h("span", { text: v }))));
  };
  return node;
}

const STEP_COLUMNS = ["step", "status", "mini-batches", "items done", "items failed", "input",
  "output", "elapsed"];

function render({ model, el }) {
  const title = h("span", { class: "prd-title" });
  const badge = h("span", { class: "prd-status" });
  const elapsed = h("span", { class: "prd-elapsed" });
  const buttons = actions(model);
  const notice = h("div", { class: "prd-notice", role: "status" });
  const error = h("div", { class: "prd-run-error" });
  const props = runProperties();
  const steps = table("prd-steps", STEP_COLUMNS);
  const stepsBox = h("div", { class: "prd-steps-box" }, steps);
  const stepViews = h("div", { class: "prd-step-views" });
  const root = h("div", { class: "prd-root" },
    h("div", { class: "prd-head" }, title, badge, elapsed, buttons), notice, error, props,
    stepsBox, stepViews);
  el.append(root);

  // Unknown until the widget manager answers: the actions stay off meanwhile.
  let live = null;
  const draw = () => {
    const sent = model.get("state") || {};
    if (!sent.steps) return;
    const state = sent.saved || live === false ? asSaved(sent)
      : { ...sent, can_cancel: live && sent.can_cancel, can_resume: live && sent.can_resume };
    const found = model.get("errors") || {};
    setAttr(root, "data-poll", state.poll);
    setText(title, `${state.experiment} · ${state.id}`);
    setText(badge, state.headline);
    setAttr(badge, "class", `prd-status prd-tone-${state.tone}`);
    setText(elapsed, duration(state.elapsed));
    buttons.update(state);
    const said = state.saved ? saved(state) : model.get("notice");
    setText(notice, said);
    show(notice, Boolean(said));
    setText(error, state.error);
    show(error, Boolean(state.error));
    props.update(state);
    show(stepsBox, state.steps.length > 1);
    steps.updateRows(state.steps, (s) => s.id, (s) => [s.name, s.headline,
      `${s.mb_done + s.mb_failed}/${s.mb_total ?? "?"}`, s.items_done, s.items_failed,
      s.properties.input, s.properties.output || "", duration(s.elapsed)],
      (s) => `prd-step-row prd-tone-${s.tone}`);
    keyed(stepViews, state.steps, (s) => s.id, () => stepView(model),
      (view, step) => view.update(step, found[step.id], state));
    if (live && state.final && !state.saved) keepInNotebook(model, { ...sent });
  };
  const events = ["change:state", "change:errors", "change:notice"];
  for (const event of events) model.on(event, draw);
  draw();
  hasKernel(model, (model.get("state") || {}).model_id).then((answer) => { live = answer; draw(); });
  return () => { for (const event of events) model.off(event, draw); };
}

export default { render };
