// RunDetails front-end: renders the run state the Python side pushes as one `state` dict.
// Everything that comes from user data or user code is set with textContent, never as HTML.

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "?";
  const s = Math.round(seconds);
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// While the run goes on the view is redrawn every poll, so "Ns ago" stays true; once it has
// ended nothing redraws it, so the heartbeat is shown as the clock time it happened.
function heartbeat(timestamp, final) {
  if (!timestamp) return "";
  if (final) return new Date(timestamp * 1000).toLocaleTimeString();
  return `${Math.max(0, Math.round(Date.now() / 1000 - timestamp))}s ago`;
}

function baseName(path) {
  return path.split(/[\\/]/).pop();
}

function progressBar(step) {
  const total = step.mb_total || 0;
  const done = total ? (100 * step.mb_done) / total : 0;
  const failed = total ? (100 * step.mb_failed) / total : 0;
  return h("div", { class: "prd-bar", role: "progressbar" },
    h("div", { class: "prd-bar-done", style: `width:${done}%` }),
    h("div", { class: "prd-bar-failed", style: `width:${failed}%` }));
}

function chart(history) {
  if (!history || history.length < 3) return null;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "prd-chart");
  svg.setAttribute("viewBox", "0 0 200 40");
  const rates = [];
  for (let i = 1; i < history.length; i++) {
    const dt = history[i][0] - history[i - 1][0];
    rates.push(dt > 0 ? (history[i][1] - history[i - 1][1]) / dt : 0);
  }
  const top = Math.max(...rates, 1e-9);
  const points = rates.map((r, i) =>
    `${(200 * i) / Math.max(rates.length - 1, 1)},${38 - (36 * r) / top}`).join(" ");
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points);
  svg.append(line);
  const title = document.createElementNS(ns, "title");
  title.textContent = `throughput, up to ${top.toFixed(1)} items/s`;
  svg.append(title);
  return svg;
}

function counters(step) {
  const remaining = step.mb_total === null ? "?" : step.mb_total - step.mb_done - step.mb_failed;
  const items = step.items_total === null ? "" : ` of ${step.items_total}`;
  return h("div", { class: "prd-counters" },
    h("span", { text: `items: ${step.items_done}${items} done, ${step.items_failed} failed` }),
    h("span", { text: `mini-batches: ${step.mb_done} done, ${step.mb_failed} failed, ${remaining} remaining` +
      (step.mb_held ? ` (${step.mb_held} of them finished, waiting for earlier ones to be written in order)` : "") }),
    h("span", { text: `${step.retries} retries` }),
    h("span", { text: `${step.throughput.toFixed(1)} items/s` }),
    h("span", { text: step.eta === null ? "" : `ETA ${duration(step.eta)}` }));
}

function stepsTable(steps) {
  const head = h("tr", {}, ...["step", "status", "mini-batches", "items done", "items failed",
    "elapsed"].map((t) => h("th", { text: t })));
  const rows = steps.map((s) => h("tr", { class: `prd-step-row prd-state-${s.status}` },
    ...[s.name, s.status, `${s.mb_done + s.mb_failed}/${s.mb_total ?? "?"}`, s.items_done,
      s.items_failed, duration(s.elapsed)].map((t) => h("td", { text: String(t) }))));
  return h("table", { class: "prd-steps" }, h("thead", {}, head), h("tbody", {}, ...rows));
}

function workersTable(step, final) {
  const head = h("tr", {}, ...["node", "process", "pid", "state", "mini-batch", "done", "failed",
    "retries", "restarts", "heartbeat", "memory"].map((t) => h("th", { text: t })));
  const rows = step.workers.map((w) => h("tr", { class: `prd-worker prd-state-${w.state}` },
    // On a Dask cluster a node is a Dask worker: show where it runs.
    ...[w.host ? `${w.node_id} ${w.host}` : w.node_id, w.name, w.pid ?? "", w.state,
      w.current_mb ?? "", w.done, w.failed, w.retries, w.restarts, heartbeat(w.heartbeat, final),
      bytes(w.rss)].map((t) => h("td", { text: String(t) }))));
  return h("table", { class: "prd-workers" }, h("thead", {}, head), h("tbody", {}, ...rows));
}

function errorsList(found) {
  if (!found || !found.groups.length) return null;
  const items = found.groups.map((g) => {
    const trace = h("pre", { class: "prd-traceback", text: g.traceback || "(no traceback)" });
    trace.hidden = true;
    const where = g.latest.map((e) => `mini-batch ${e.mb_id ?? "-"} try ${e.try} on ${e.worker}: ${e.item}`);
    const summary = h("div", {
      class: "prd-error-summary",
      text: `${g.count}× ${g.exception} — ${where.join("; ")}`,
      onclick: () => { trace.hidden = !trace.hidden; },
    });
    return h("li", { class: "prd-error" }, summary, trace);
  });
  return h("details", { class: "prd-errors", open: "" },
    h("summary", { text: `Errors (${found.groups_total} kinds)` }), h("ul", {}, ...items));
}

function preview(step) {
  if (!step.preview || !step.preview.length) return null;
  return h("details", { class: "prd-preview", open: "" },
    h("summary", { text: `Latest output rows (${baseName(step.links.output)})`,
      title: step.links.output }),
    h("pre", { text: step.preview.join("\n") }));
}

function logs(step, model, selected) {
  if (!step.logs.length) return null;
  const select = h("select", {
    class: "prd-log-select",
    onchange: (event) => { model.set("selected_log", event.target.value); model.save_changes(); },
  }, h("option", { value: "", text: "choose a log file" }),
    ...step.logs.map((name) => {
      const option = h("option", { value: name, text: name });
      if (name === selected) option.selected = true;
      return option;
    }));
  return h("details", { class: "prd-logs" }, h("summary", { text: "Logs" }), select,
    step.log_text === undefined ? null : h("pre", { class: "prd-log-text", text: step.log_text }));
}

function stepView(step, model, selected, openDetails, final, found) {
  const view = h("div", { class: "prd-step", "data-step": step.name },
    h("div", { class: "prd-step-head" },
      h("strong", { text: step.name }),
      h("span", { class: `prd-status prd-status-${step.status}`, text: step.status }),
      h("span", { text: duration(step.elapsed) })),
    progressBar(step), counters(step),
    step.error ? h("div", { class: "prd-step-error", text: step.error }) : null,
    workersTable(step, final), errorsList(found), preview(step), logs(step, model, selected));
  // Keep open/closed sections and shown tracebacks as the user left them across re-renders.
  view.querySelectorAll("details").forEach((d, i) => {
    const key = `${step.name}:${i}`;
    if (key in openDetails) d.open = openDetails[key];
    d.addEventListener("toggle", () => { openDetails[key] = d.open; });
  });
  return view;
}

function render({ model, el }) {
  const openDetails = {};
  const root = h("div", { class: "prd-root" });
  el.append(root);
  const draw = () => {
    const state = model.get("state") || {};
    if (!state.steps) return;
    const shownTraces = new Set([...root.querySelectorAll(".prd-traceback")]
      .filter((t) => !t.hidden).map((t) => t.previousSibling.textContent));
    // replaceChildren would show a null as the text "null", so leave the missing parts out.
    root.replaceChildren(...[
      h("div", { class: "prd-head" },
        h("span", { class: "prd-title", text: `${state.experiment} · ${state.id}` }),
        h("span", { class: `prd-status prd-status-${state.status}`, text: state.status }),
        h("span", { class: "prd-elapsed", text: duration(state.elapsed) })),
      state.error ? h("div", { class: "prd-run-error", text: state.error }) : null,
      chart(state.history),
      state.steps.length > 1 ? stepsTable(state.steps) : null,
      ...state.steps.map((step) =>
        stepView(step, model, state.selected_log, openDetails, state.final,
          (model.get("errors") || {})[step.id])),
    ].filter(Boolean));
    root.querySelectorAll(".prd-traceback").forEach((t) => {
      if (shownTraces.has(t.previousSibling.textContent)) t.hidden = false;
    });
  };
  model.on("change:state", draw);
  model.on("change:errors", draw);
  draw();
  return () => { model.off("change:state", draw); model.off("change:errors", draw); };
}

export default { render };
