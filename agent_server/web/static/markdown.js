// A small Markdown renderer for model output that cannot inject HTML.
//
// It never parses HTML and never assigns innerHTML: it builds DOM nodes with
// createElement and puts every piece of model text in a text node, so a
// "<script>" in the output is shown as those characters. Links keep only
// http(s) and mailto targets. Supported: paragraphs, line breaks, headings,
// fenced and inline code, bold, italic, strikethrough, links, bare URLs,
// lists, block quotes and rules; anything else stays plain text.
"use strict";

(function () {
  const SAFE_URL = /^(https?:\/\/|mailto:)/i;

  function el(tag, children, attrs) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children || []) node.append(child);
    return node;
  }

  // ----- inline ----------------------------------------------------------------

  // Earliest match wins; at the same place, the order here decides.
  const INLINE = [
    { re: /`([^`\n]+)`/, make: (m) => [el("code", [m[1]])] },
    { re: /\*\*(?=\S)([\s\S]*?\S)\*\*/, make: (m) => [el("strong", inline(m[1]))] },
    { re: /__(?=\S)([\s\S]*?\S)__/, make: (m) => [el("strong", inline(m[1]))] },
    { re: /~~(?=\S)([\s\S]*?\S)~~/, make: (m) => [el("del", inline(m[1]))] },
    { re: /\*(?=[^\s*])([^*\n]*?[^\s*])\*/, make: (m) => [el("em", inline(m[1]))] },
    { re: /(^|[^\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?!\w)/, make: (m) => [m[1], el("em", inline(m[2]))] },
    { re: /!?\[([^\]\n]+)\]\(([^)\s]+)\)/, make: (m) => link(inline(m[1]), m[2]) },
    { re: /\bhttps?:\/\/[^\s<>()"']*[^\s<>()"'.,;:!?]/, make: (m) => link([m[0]], m[0]) },
  ];

  function link(children, url) {
    if (!SAFE_URL.test(url)) return children; // javascript:, data:, relative: shown as text only
    return [el("a", children, { href: url, rel: "noopener noreferrer nofollow", target: "_blank" })];
  }

  function inline(text) {
    const out = [];
    let rest = text;
    while (rest) {
      let best = null;
      for (const rule of INLINE) {
        const m = rule.re.exec(rest);
        if (m && (best === null || m.index < best.m.index)) best = { m, rule };
      }
      if (best === null) {
        out.push(...withBreaks(rest));
        break;
      }
      if (best.m.index > 0) out.push(...withBreaks(rest.slice(0, best.m.index)));
      out.push(...best.rule.make(best.m));
      rest = rest.slice(best.m.index + best.m[0].length);
    }
    return out;
  }

  function withBreaks(text) {
    const parts = [];
    text.split("\n").forEach((line, i) => {
      if (i > 0) parts.push(el("br"));
      if (line) parts.push(document.createTextNode(line));
    });
    return parts;
  }

  // ----- blocks ------------------------------------------------------------------

  const FENCE = /^\s{0,3}(```|~~~)\s*([\w+-]*)\s*$/;
  const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
  const QUOTE = /^\s{0,3}>\s?(.*)$/;
  const BULLET = /^(\s*)[-*+]\s+(.*)$/;
  const NUMBER = /^(\s*)(\d{1,9})[.)]\s+(.*)$/;

  function blocks(lines) {
    const out = [];
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      let m;
      if (!line.trim()) {
        i++;
      } else if ((m = FENCE.exec(line))) {
        const body = [];
        i++;
        // An unclosed fence (an answer still streaming) runs to the end.
        while (i < lines.length && !(lines[i].trim().startsWith(m[1]) && !lines[i].trim().slice(3).trim())) {
          body.push(lines[i++]);
        }
        i++;
        const code = el("code", [body.join("\n")], m[2] ? { "data-lang": m[2] } : {});
        out.push(el("pre", [code]));
      } else if ((m = HEADING.exec(line))) {
        out.push(el("h" + Math.min(m[1].length + 2, 6), inline(m[2])));
        i++;
      } else if (RULE.test(line)) {
        out.push(el("hr"));
        i++;
      } else if (QUOTE.test(line)) {
        const inner = [];
        while (i < lines.length && (m = QUOTE.exec(lines[i]))) {
          inner.push(m[1]);
          i++;
        }
        out.push(el("blockquote", blocks(inner)));
      } else if (BULLET.test(line) || NUMBER.test(line)) {
        i = list(lines, i, out);
      } else {
        const para = [];
        while (i < lines.length && lines[i].trim() && !startsBlock(lines[i])) para.push(lines[i++]);
        out.push(el("p", inline(para.join("\n"))));
      }
    }
    return out;
  }

  function startsBlock(line) {
    return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) ||
      BULLET.test(line) || NUMBER.test(line);
  }

  function list(lines, i, out) {
    const ordered = !BULLET.test(lines[i]);
    const first = ordered ? NUMBER.exec(lines[i]) : null;
    const items = [];
    let current = null;
    while (i < lines.length) {
      const line = lines[i];
      const m = ordered ? NUMBER.exec(line) : BULLET.exec(line);
      if (m) {
        current = [ordered ? m[3] : m[2]];
        items.push(current);
      } else if (line.trim() && current && /^\s+/.test(line) && !startsBlock(line.trim())) {
        current.push(line.trim()); // a continuation line of the item
      } else if (line.trim() && current && /^\s+/.test(line)) {
        current.push(line.replace(/^\s{1,4}/, "")); // a nested block
      } else {
        break;
      }
      i++;
    }
    const attrs = first && first[2] !== "1" ? { start: String(Number(first[2])) } : {};
    out.push(el(ordered ? "ol" : "ul", items.map((item) => {
      const inner = blocks(item);
      // A one-paragraph item shows without the paragraph's margins.
      return el("li", inner.length === 1 && inner[0].tagName === "P" ? [...inner[0].childNodes] : inner);
    }), attrs));
    return i;
  }

  /** Markdown text -> a DocumentFragment of safe nodes. */
  function renderMarkdown(text) {
    const fragment = document.createDocumentFragment();
    fragment.append(...blocks(String(text).replace(/\r\n?/g, "\n").split("\n")));
    return fragment;
  }

  window.renderMarkdown = renderMarkdown;
})();
