// DOM helpers of RunDetails: nodes are made once and then patched in place, so whatever the
// user did to them (scrolled, selected, opened) survives the next poll. User text is only ever
// set with textContent, never as HTML.

const SVG = "http://www.w3.org/2000/svg";

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children) if (child) node.append(child);
  return node;
}

export function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttrs(node, attrs);
  for (const child of children) if (child) node.append(child);
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.setAttribute("class", value);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
}

// Changing textContent to the same text would still drop a selection inside it.
export function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

export function setAttr(node, name, value) {
  const text = value === null || value === undefined ? null : String(value);
  if (text === null) node.removeAttribute(name);
  else if (node.getAttribute(name) !== text) node.setAttribute(name, text);
}

export function show(node, visible) {
  if (node.hidden === visible) node.hidden = !visible;
}

// Make `container`'s children match `items`: a node per key, made by `create` once and
// brought up to date by `update` on every call, in the order of `items`.
export function keyed(container, items, keyOf, create, update) {
  const existing = new Map();
  for (const node of [...container.children]) existing.set(node.dataset.key, node);
  let previous = null;
  for (const [index, item] of items.entries()) {
    const key = String(keyOf(item, index));
    let node = existing.get(key);
    if (node) existing.delete(key);
    else {
      node = create(item);
      node.dataset.key = key;
    }
    update(node, item);
    const wanted = previous ? previous.nextSibling : container.firstChild;
    if (node !== wanted) container.insertBefore(node, wanted);
    previous = node;
  }
  for (const node of existing.values()) node.remove();
}

// A table whose body rows are keyed; `cells(item)` gives the texts of a row's cells.
export function table(className, headers) {
  const body = h("tbody");
  const node = h("table", { class: className },
    h("thead", {}, h("tr", {}, ...headers.map((t) => h("th", { scope: "col", text: t })))),
    body);
  node.updateRows = (items, keyOf, cells, rowClass) => keyed(body, items, keyOf,
    () => h("tr", {}, ...headers.map((t) => h("td", { "data-label": t }))),
    (row, item) => {
      setAttr(row, "class", rowClass ? rowClass(item) : null);
      cells(item).forEach((text, i) => setText(row.children[i], text));
    });
  return node;
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (error) {
    // Clipboard API refused (no focus, plain http): the old way still works in most browsers.
    const area = h("textarea", { "aria-hidden": "true" });
    area.value = text;
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.append(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    return done;
  }
}
