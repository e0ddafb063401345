// The two DOM helpers the page's scripts share (app.js and memory.js, loaded after this one).
// Text always goes in as text nodes, never as HTML.
"use strict";

window.pageDom = Object.freeze({
  /** A `tag` element with `className` (if any) holding `children` (nodes or strings). */
  elt(tag, className, children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children || []) node.append(child);
    return node;
  },

  /** A plain button (`type="button"`, so it never submits a form) that calls `onClick`. */
  button(label, onClick) {
    const b = window.pageDom.elt("button", null, [label]);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  },
});
