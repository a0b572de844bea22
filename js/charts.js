// The timeline of each worker process and the throughput chart, both drawn from the run's
// stored mini-batch records (binned on the Python side), so every view of a run, live or
// finished, draws the same picture.

import { h, keyed, s, setAttr, setText } from "./dom.js";
import { duration, rate } from "./format.js";

const WIDTH = 1000;

function legend(entries) {
  return h("div", { class: "prd-legend" }, ...entries.map(([cls, label]) =>
    h("span", { class: "prd-legend-item" }, h("span", { class: `prd-swatch ${cls}` }),
      h("span", { text: label }))));
}

function laneLabel(lane) {
  const restarts = lane.restarts ? `, ${lane.restarts} restart${lane.restarts > 1 ? "s" : ""}` : "";
  return `${lane.name}: ${lane.count} mini-batch${lane.count === 1 ? "" : "es"}${restarts}`;
}

function drawLane(svg, lane, span) {
  const x = (t) => Math.max(0, Math.min(WIDTH, (WIDTH * t) / span));
  const parts = [];
  // The start-up of the process's latest incarnation: after a restart it lies mid-lane, up to
  // the first mini-batch the new process started.
  const next = lane.blocks.find(([start]) => lane.init !== null && start >= lane.init);
  const first = next ? next[0] : (lane.state === "starting" ? span : null);
  if (lane.init !== null && first !== null && first > lane.init) {
    parts.push(s("rect", { class: "prd-block-init", x: x(lane.init), y: 0,
      width: Math.max(1, x(first) - x(lane.init)), height: 10 },
      s("title", { text: `starting and init(): ${duration(first - lane.init)}` })));
  }
  for (const [start, end, done, failed] of lane.blocks) {
    parts.push(s("rect", { class: failed ? "prd-block-failed" : "prd-block-done", x: x(start),
      y: 0, width: Math.max(1.5, x(end) - x(start)), height: 10 },
      s("title", { text: `${duration(start)}–${duration(end)}: ${done} done, ${failed} failed` })));
  }
  svg.replaceChildren(...parts);
}

export function timelineView() {
  const lanes = h("div", { class: "prd-lanes" });
  const start = h("span", { text: "0:00" });
  const end = h("span");
  const node = h("details", { class: "prd-timeline", open: true },
    h("summary", { text: "Timeline per worker process" }),
    legend([["prd-block-init", "start-up and init()"], ["prd-block-done", "mini-batch done"],
      ["prd-block-failed", "mini-batch failed"], ["prd-swatch-idle", "idle"]]),
    lanes, h("div", { class: "prd-axis" }, start, end));
  node.update = (timeline) => {
    const span = Math.max(timeline.span, 1e-3);
    setText(end, duration(span));
    keyed(lanes, timeline.lanes, (lane) => lane.name,
      () => h("div", { class: "prd-lane" }, h("div", { class: "prd-lane-label" }),
        s("svg", { class: "prd-lane-track", viewBox: `0 0 ${WIDTH} 10`,
          preserveAspectRatio: "none", role: "img" })),
      (row, lane) => {
        setText(row.firstChild, laneLabel(lane));
        setAttr(row, "data-count", lane.count);
        setAttr(row.lastChild, "aria-label", laneLabel(lane));
        drawLane(row.lastChild, lane, span);
      });
  };
  return node;
}

// Items per second in each bin of the run's life, with labelled axes.
export function throughputView() {
  const svg = s("svg", { class: "prd-chart", viewBox: "0 0 360 136", role: "img" });
  const caption = h("div", { class: "prd-chart-caption" });
  const node = h("details", { class: "prd-throughput", open: true },
    h("summary", { text: "Throughput (items finished per second)" }), svg, caption);
  node.update = (chart) => {
    const rates = chart.rates || [];
    const top = Math.max(...rates, 0);
    const left = 44, right = 352, topY = 8, bottom = 104;
    const scale = top > 0 ? (bottom - topY) / top : 0;
    const barWidth = (right - left) / Math.max(rates.length, 1);
    const bars = rates.map((value, i) => s("rect", { class: "prd-chart-bar",
      x: left + i * barWidth, y: bottom - value * scale, width: Math.max(barWidth - 0.5, 0.5),
      height: value * scale }));
    const text = (x, y, anchor, label) => s("text", { x, y, "text-anchor": anchor, text: label });
    svg.replaceChildren(
      s("line", { class: "prd-chart-axis", x1: left, y1: bottom, x2: right, y2: bottom }),
      s("line", { class: "prd-chart-axis", x1: left, y1: topY, x2: left, y2: bottom }),
      ...bars,
      text(left - 4, topY + 8, "end", `${rate(top)}/s`),
      text(left - 4, bottom, "end", "0"),
      text(left, bottom + 14, "start", "0:00"),
      text((left + right) / 2, bottom + 14, "middle", duration(chart.span / 2)),
      text(right, bottom + 14, "end", duration(chart.span)),
      text(left, bottom + 26, "start", "time since the step started"),
      s("title", { text: `items per second, up to ${rate(top)}` }));
    const items = rates.reduce((a, b) => a + b, 0) * (chart.width || 0);
    setText(caption, `peak ${rate(top)} items/s, average ${rate(items / Math.max(chart.span, 1e-3))}` +
      " items/s over the step");
  };
  return node;
}
