// DOM building without HTML strings: every piece of data goes in as text
// (text nodes, textContent, attributes), never through innerHTML.

/**
 * Create an element.  `attrs`: class, text, dataset {…}, on{Event} handlers,
 * booleans (checked, disabled, hidden…) as properties, other keys as attributes.
 * Children: nodes, strings (become text nodes), arrays, null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === "value") el.value = value;
    else if (value === true) {
      if (key in el) el[key] = true;
      else el.setAttribute(key, "");
    } else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Remove all children of `el` (and optionally put new ones in). */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A labelled form field; `input` is the control element. */
export function field(label, input, hint) {
  const id = input.id || (input.id = "f-" + Math.random().toString(36).slice(2, 9));
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    input,
    hint ? h("small", { class: "hint" }, hint) : null,
  );
}

/** A labelled checkbox. */
export function check(label, input) {
  return h("label", { class: "check" }, input, h("span", {}, label));
}

/** A table with a header row; `rows` are arrays of cells (nodes or text) or <tr> elements. */
export function table(headers, rows, { empty = "", caption = "" } = {}) {
  const body = h("tbody");
  for (const row of rows) {
    if (row instanceof HTMLTableRowElement) body.appendChild(row);
    else body.appendChild(h("tr", {}, row.map(cellOf(headers))));
  }
  if (!rows.length && empty) {
    body.appendChild(h("tr", { class: "empty" }, h("td", { colspan: String(headers.length) }, empty)));
  }
  return h("div", { class: "table-wrap stack" },
    h("table", {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
      body,
    ),
  );
}

/** `cells.map(cellOf(headers))`: <td>s labelled by their column (phones show the label). */
export function cellOf(headers) {
  return (cell, i) => h("td", {
    "data-label": headers[i] ?? "",
    class: cell === "—" || cell === "" || cell === null ? "blank" : null,
  }, cell);
}

/** A small coloured label. */
export function badge(text, tone = "") {
  return h("span", { class: "badge" + (tone ? " badge-" + tone : "") }, text);
}

/** A button; `tone`: primary, danger, ghost; `small`: compact. */
export function button(text, onclick, { tone = "", small = false, type = "button", title = "" } = {}) {
  const cls = ["btn", tone && "btn-" + tone, small && "btn-small"].filter(Boolean).join(" ");
  return h("button", { type, class: cls, onclick, title: title || null }, text);
}

/** Run `work` with `btn` disabled (no double submits), re-enabling it afterwards. */
export async function busy(btn, work) {
  if (btn) btn.disabled = true;
  try {
    return await work();
  } finally {
    if (btn) btn.disabled = false;
  }
}
