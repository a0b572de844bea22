// A step's files, the output, the snapshot and the logs, shown in the view as the kernel reads
// them. A Jupyter server with its default settings does not serve them: they live under the
// workspace's hidden .parallelrun folder. Where the server does serve them, their property row
// links them too, to open in JupyterLab or Notebook 7.

import { copyText, h, keyed, setText, show } from "./dom.js";
import { baseName, jupyterUrl, served } from "./format.js";

const SECTIONS = ["output", "snapshot", "logs"];

export function filesView(model) {
  const select = h("select", { class: "prd-file-select", "aria-label": "file to show" });
  const none = h("option", { value: "", text: "choose a file" });
  const groups = SECTIONS.map((section) => h("optgroup", { label: section }));
  select.append(none, ...groups);
  const text = h("pre", { class: "prd-file-text", tabindex: "0" });
  text.hidden = true;
  const node = h("details", { class: "prd-files" }, h("summary", { text: "Files" }), select, text);
  let followed = true;
  let shownFile = "";
  text.addEventListener("scroll", () => {
    followed = text.scrollHeight - text.scrollTop - text.clientHeight < 8;
  });
  const choose = (value) => { model.set("selected_file", value); model.save_changes(); };
  select.addEventListener("change", () => choose(select.value));
  // Show `name` of `section` (say "snapshot", "score.py"): what a property row's button does.
  node.showFile = (stepId, section, name) => {
    node.open = true;
    node.scrollIntoView({ block: "nearest" });
    choose(`${stepId}/${section}/${name}`);
  };
  node.update = (step, selected, saved) => {
    // A view reopened from the notebook has no kernel to read another file with.
    select.disabled = Boolean(saved);
    SECTIONS.forEach((section, i) => {
      const names = step.files[section] || [];
      show(groups[i], names.length > 0);
      keyed(groups[i], names, (name) => name,
        (name) => h("option", { value: `${step.id}/${section}/${name}`, text: name }),
        (option) => { option.selected = option.value === selected; });
    });
    none.selected = !groups.some((group) => [...group.children].some((o) => o.selected));
    show(text, step.file_text !== undefined);
    if (step.file_text === undefined) return;
    if (selected !== shownFile) {
      // Logs and output grow at their end, so they open there; a script opens at its top.
      followed = !selected.startsWith(`${step.id}/snapshot/`);
      shownFile = selected;
    }
    const top = text.scrollTop;
    setText(text, step.file_text);
    // Follow the newest lines unless the user scrolled up to read.
    text.scrollTop = followed ? text.scrollHeight : top;
  };
  return node;
}

// A property row for a file or folder of the step: its path, a button that shows it in the
// view (the folder's first file, or `first`), a link where the server serves it, Copy path.
export function fileRow(label, { path, isFolder, home, name, section, step, files, saved, first }) {
  const row = (value) => h("div", { class: "prd-prop" },
    h("span", { class: "prd-prop-name", text: label }), value);
  if (!path) return name ? row(h("span", { text: name })) : null;
  const names = step.files[section] || [];
  const target = isFolder ? (names.includes(first) ? first : names[0]) : baseName(path);
  const showButton = h("button", { type: "button", class: "prd-button prd-show-file", text: "Show" });
  showButton.disabled = Boolean(saved) || !names.includes(target);
  showButton.addEventListener("click", () => files.showFile(step.id, section, target));
  const copy = h("button", { type: "button", class: "prd-button prd-copy-path", text: "Copy path" });
  copy.addEventListener("click", () => copyText(path));
  const where = h("code", { text: path });
  const value = h("span", { class: "prd-link" }, name ? `${name}: ` : null, where, showButton, copy);
  const url = jupyterUrl(path, isFolder, home);
  if (url) {
    served(url).then((ok) => {
      if (ok) where.replaceWith(h("a", { href: url.url, target: "_blank", rel: "noopener",
        title: path, text: baseName(path) || path }));
    });
  }
  return row(value);
}
