// One step of a run: its status, progress bar with legend, counters, charts, workers, errors,
// output preview, properties, links and files. Made once; `update(step, ...)` patches it.

import { timelineView, throughputView } from "./charts.js";
import { h, keyed, setAttr, setText, show, table } from "./dom.js";
import { errorsView } from "./errors.js";
import { fileRow, filesView } from "./files.js";
import { ago, baseName, bytes, clock, duration, rate } from "./format.js";

function bar() {
  const done = h("div", { class: "prd-bar-done" });
  const failed = h("div", { class: "prd-bar-failed" });
  const track = h("div", { class: "prd-bar", role: "progressbar", "aria-valuemin": "0" }, done, failed);
  const legend = h("div", { class: "prd-legend prd-bar-legend" });
  const labels = ["prd-bar-done", "prd-bar-failed", "prd-swatch-todo"].map((cls) => {
    const text = h("span");
    legend.append(h("span", { class: "prd-legend-item" }, h("span", { class: `prd-swatch ${cls}` }), text));
    return text;
  });
  const node = h("div", { class: "prd-progress" }, track, legend);
  node.update = (step) => {
    // Items when their count is known (it is not for byte-range tabular input until it is read).
    const byItems = step.items_total !== null && step.items_total > 0;
    const total = byItems ? step.items_total : step.mb_total || 0;
    const ok = byItems ? step.items_done : step.mb_done;
    const bad = byItems ? step.items_failed : step.mb_failed;
    const unit = byItems ? "items" : "mini-batches";
    done.style.width = `${total ? (100 * ok) / total : 0}%`;
    failed.style.width = `${total ? (100 * bad) / total : 0}%`;
    setAttr(track, "aria-valuemax", total);
    setAttr(track, "aria-valuenow", ok + bad);
    setAttr(track, "aria-label", `${ok + bad} of ${total || "?"} ${unit} finished`);
    setText(labels[0], `${ok} ${unit} done`);
    setText(labels[1], `${bad} failed`);
    setText(labels[2], `${total ? total - ok - bad : "?"} to go`);
  };
  return node;
}

function counters() {
  const spans = [0, 1, 2, 3, 4].map(() => h("span"));
  const node = h("div", { class: "prd-counters" }, ...spans);
  node.update = (step) => {
    const remaining = step.mb_total === null ? "?" : step.mb_total - step.mb_done - step.mb_failed;
    const of = step.items_total === null ? "" : ` of ${step.items_total}`;
    setText(spans[0], `items: ${step.items_done}${of} done, ${step.items_failed} failed`);
    setText(spans[1], `mini-batches: ${step.mb_done} done, ${step.mb_failed} failed, ${remaining} remaining` +
      (step.mb_held ? ` (${step.mb_held} of them finished, waiting for earlier ones to be written in order)` : ""));
    setText(spans[2], `${step.retries} retries`);
    setText(spans[3], step.reused_run ? "" : `${rate(step.throughput)} items/s`);
    setText(spans[4], step.eta === null ? "" : `ETA ${duration(step.eta)}`);
  };
  return node;
}

function workerState(w) {
  if (w.state === "starting") return "starting (init())";
  return w.state + (w.error ? `: ${w.error}` : "");
}

function cpu(w) {
  if (w.cpu === null || w.cpu === undefined) return "";
  const lived = (w.ended || w.heartbeat || 0) - (w.started || 0);
  return lived > 0 ? `${w.cpu.toFixed(1)} s (${Math.round((100 * w.cpu) / lived)}%)` : `${w.cpu.toFixed(1)} s`;
}

const WORKER_COLUMNS = ["process", "pid", "state", "mini-batch", "done", "failed", "retries",
  "restarts", "CPU", "memory", "heartbeat"];

function properties(step, home, files, saved) {
  const p = step.properties;
  const rows = [["entry script", p.entry_script], ["source directory", p.source_directory],
    ["compute target", p.compute_target], ["nodes × processes", p.nodes_processes],
    ["input", p.input], ["arguments", p.arguments], ["started", clock(step.started)],
    ["ended", clock(step.ended)], ["duration", step.ended ? duration(step.elapsed) : ""],
    ...Object.entries(p.config).map(([k, v]) => [k, String(v)])];
  const shared = { home, step, files, saved };
  return [
    ...rows.filter(([, v]) => v).map(([k, v]) => h("div", { class: "prd-prop" },
      h("span", { class: "prd-prop-name", text: k }), h("span", { text: v }))),
    fileRow("output", { path: step.links.output, isFolder: p.config.output_action !== "append_row",
      name: p.output, section: "output", ...shared }),
    fileRow("snapshot", { path: step.links.snapshot, isFolder: true, section: "snapshot",
      first: p.entry_script, ...shared }),
    fileRow("logs folder", { path: step.links.logs, isFolder: true, section: "logs",
      first: "job_result.txt", ...shared }),
  ].filter(Boolean);
}

// What the entry script logged with Run.log, log_list and log_row; rebuilt only when it changes.
function metricsView() {
  const body = h("div", { class: "prd-props" });
  const node = h("details", { class: "prd-metrics", open: true }, h("summary", { text: "Metrics" }), body);
  let key = "";
  node.update = (logged) => {
    const next = JSON.stringify(logged);
    show(node, Object.keys(logged).length > 0);
    if (next === key) return;
    key = next;
    body.replaceChildren(...Object.entries(logged).map(([name, m]) => {
      let value;
      if (m.table) {
        const columns = Object.keys(m.table);
        const shown = table("prd-metric-table", columns);
        const rows = (m.table[columns[0]] || []).map((_, i) => columns.map((c) => m.table[c][i]));
        shown.updateRows(rows, (_, i) => i, (row) => row);
        const note = m.rows > rows.length ? `latest ${rows.length} of ${m.rows} rows` : "";
        value = h("div", {}, shown, note ? h("div", { class: "prd-note", text: note }) : null);
      } else if (m.list) {
        const latest = m.count > m.list.length ? `, latest ${m.list.length}` : "";
        value = h("span", { text: `${m.count} values${latest}: ${m.list.join(", ")}` });
      } else {
        value = h("span", { text: m.value });
      }
      return h("div", { class: "prd-prop" }, h("span", { class: "prd-prop-name", text: name }), value);
    }));
  };
  return node;
}

export function stepView(model) {
  const name = h("strong");
  const badge = h("span", { class: "prd-status" });
  const elapsed = h("span", { class: "prd-elapsed" });
  const warnings = h("ul", { class: "prd-warnings" });
  const error = h("div", { class: "prd-step-error" });
  const progress = bar();
  const numbers = counters();
  const chart = throughputView();
  const lanes = timelineView();
  const workers = table("prd-workers", WORKER_COLUMNS);
  const errors = errorsView();
  const logged = metricsView();
  const preview = h("pre");
  const previewTitle = h("summary");
  const previewBox = h("details", { class: "prd-preview", open: true }, previewTitle, preview);
  const props = h("div", { class: "prd-props" });
  const files = filesView(model);
  const node = h("section", { class: "prd-step" },
    h("div", { class: "prd-step-head" }, name, badge, elapsed), warnings, progress, numbers, error,
    chart, lanes, h("details", { class: "prd-workers-box", open: true },
      h("summary", { text: "Worker processes" }), workers),
    errors, logged, previewBox, h("details", { class: "prd-properties" },
      h("summary", { text: "Properties and links" }), props), files);
  let propsKey = "";
  node.update = (step, found, { selected_file: selected, final, home, saved }) => {
    setAttr(node, "data-step", step.name);
    setText(name, step.name);
    setText(badge, step.headline);
    setAttr(badge, "class", `prd-status prd-tone-${step.tone}`);
    setText(elapsed, duration(step.elapsed));
    keyed(warnings, step.warnings, (w) => w, (w) => h("li", { text: `warning: ${w}` }), () => {});
    progress.update(step);
    numbers.update(step);
    setText(error, step.error);
    show(error, Boolean(step.error));
    show(chart, !step.reused_run);
    chart.update(step.throughput_chart);
    show(lanes, step.timeline.lanes.length > 0);
    lanes.update(step.timeline);
    workers.updateRows(step.workers, (w) => w.name, (w) => [
      w.host ? `${w.name} (node ${w.node_id}, ${w.host})` : `${w.name} (node ${w.node_id})`,
      w.pid ?? "", workerState(w), w.current_mb ?? "", w.done, w.failed, w.retries, w.restarts,
      cpu(w), bytes(w.rss), ago(w.heartbeat, final)], (w) => `prd-worker prd-state-${w.state}`);
    show(workers.parentNode, step.workers.length > 0);
    errors.update(found);
    logged.update(step.metrics || {});
    show(previewBox, step.preview.length > 0);
    setText(previewTitle, `Latest output rows (${baseName(step.links.output)})`);
    setText(preview, step.preview.join("\n"));
    // Properties change only when the step ends: rebuilt then, and left alone otherwise.
    const key = JSON.stringify([step.properties, step.links, step.files, step.started, step.ended]);
    if (key !== propsKey) {
      props.replaceChildren(...properties(step, home, files, saved));
      propsKey = key;
    }
    show(files, Object.values(step.files).some((names) => names.length > 0));
    files.update(step, selected, saved);
  };
  return node;
}
