// Errors grouped by exception text: a count, first and last time, the mini-batches and items
// of each group, and buttons to show and copy its latest traceback. Groups are <details>
// elements keyed by their text, so one the user opened stays open on every poll.

import { copyText, h, keyed, setText, show } from "./dom.js";
import { clock } from "./format.js";

function groupNode() {
  const title = h("span", { class: "prd-error-title" });
  const count = h("span", { class: "prd-error-count" });
  const meta = h("div", { class: "prd-error-meta" });
  const tries = h("ul", { class: "prd-error-tries" });
  const trace = h("pre", { class: "prd-traceback", tabindex: "0" });
  trace.hidden = true;
  const toggle = h("button", { type: "button", class: "prd-button prd-show-trace" });
  const copy = h("button", { type: "button", class: "prd-button prd-copy-trace", text: "Copy traceback" });
  const copied = h("span", { class: "prd-copied", role: "status" });
  const node = h("details", { class: "prd-error" },
    h("summary", { class: "prd-error-summary" }, count, title),
    meta, tries, h("div", { class: "prd-error-actions" }, toggle, copy, copied), trace);
  const label = () => setText(toggle, trace.hidden ? "Show traceback" : "Hide traceback");
  toggle.addEventListener("click", () => {
    trace.hidden = !trace.hidden;
    toggle.setAttribute("aria-expanded", String(!trace.hidden));
    label();
    // The last line of a traceback is the error itself: show it first.
    if (!trace.hidden) trace.scrollTop = trace.scrollHeight;
  });
  copy.addEventListener("click", async () => {
    setText(copied, (await copyText(trace.textContent)) ? "copied" : "copy refused by the browser");
  });
  toggle.setAttribute("aria-expanded", "false");
  label();
  node.parts = { title, count, meta, tries, trace };
  return node;
}

function updateGroup(node, group) {
  const { title, count, meta, tries, trace } = node.parts;
  setText(count, `${group.count}×`);
  setText(title, group.exception);
  setText(meta, `${group.count} ${group.count === 1 ? "try" : "tries"} in ${group.mini_batches} ` +
    `mini-batch${group.mini_batches === 1 ? "" : "es"}; first ${clock(group.first)}, last ` +
    `${clock(group.last)}`);
  keyed(tries, group.latest, (e) => `${e.mb_id}:${e.try}:${e.time}`,
    () => h("li"),
    (li, e) => setText(li, `mini-batch ${e.mb_id ?? "-"}, try ${e.try}, on ${e.worker}: ${e.item}`));
  setText(trace, group.traceback || "(no traceback)");
}

export function errorsView() {
  const list = h("div", { class: "prd-error-groups" });
  const heading = h("summary");
  const more = h("div", { class: "prd-note" });
  const node = h("details", { class: "prd-errors", open: true }, heading, list, more);
  node.update = (found) => {
    const groups = (found && found.groups) || [];
    show(node, groups.length > 0);
    const tries = groups.reduce((n, g) => n + g.count, 0);
    const kinds = found ? found.groups_total : 0;
    setText(heading, `Errors: ${tries} failed ${tries === 1 ? "try" : "tries"} of ${kinds} ` +
      `kind${kinds === 1 ? "" : "s"}${kinds > groups.length ? ` (latest ${groups.length} shown)` : ""}`);
    keyed(list, groups, (g) => g.exception, groupNode, updateGroup);
    const hidden = found ? found.groups_total - groups.length : 0;
    setText(more, hidden > 0 ? `${hidden} older kind(s) of error not shown: ` +
      "run.get_details()[\"errors\"] and the logs' job_error.txt have them all." : "");
  };
  return node;
}
