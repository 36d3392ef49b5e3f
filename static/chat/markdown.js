// Markdown for untrusted text (model, tool and reasoning output).
//
// Three layers, each enough on its own for the common attacks:
//  1. markdown-it with html:false: raw HTML in the text is escaped, never parsed.
//  2. Our own rules: links only to http(s) and mailto (anything else stays plain text), and an
//     image becomes a link to it: nothing is ever loaded from another host by itself.
//  3. DOMPurify on the HTML, with an allow-list of tags and attributes (no img, svg, math,
//     iframe, script, style, form, object...), and no style attributes (the CSP forbids them).
// The result is a DocumentFragment, never assigned through innerHTML of a live element.

import MarkdownIt from "../vendor/markdown-it.js";
import DOMPurify from "../vendor/purify.js";
import hljs from "../vendor/highlight.js";

const SAFE_URL = /^(?:https?:|mailto:)/i;

const ALLOWED_TAGS = [
  "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "li",
  "em", "strong", "del", "s", "code", "pre", "a", "span", "div", "table", "thead", "tbody",
  "tr", "th", "td", "sup", "sub",
];
const ALLOWED_ATTR = ["href", "title", "class", "start", "data-lang"];

function validateLink(url) {
  const trimmed = url.trim();
  return SAFE_URL.test(trimmed);
}

const md = new MarkdownIt({
  html: false,
  linkify: true,
  breaks: false,
  typographer: false,
  highlight: () => "", // fences are rendered by our own rule below
});
md.validateLink = validateLink;
// Links the linkifier finds (bare URLs) go through the same check.
md.linkify.set({ fuzzyEmail: false });

// Tables: markdown-it aligns cells with style="text-align:…", which the CSP refuses; use a class.
for (const rule of ["th_open", "td_open"]) {
  md.renderer.rules[rule] = (tokens, idx, options, env, self) => {
    const token = tokens[idx];
    const style = token.attrGet("style");
    if (style) {
      const m = /text-align:\s*(left|right|center)/.exec(style);
      token.attrs = token.attrs.filter(([name]) => name !== "style");
      if (m) token.attrJoin("class", `align-${m[1]}`);
    }
    return self.renderToken(tokens, idx, options);
  };
}

// Images are never loaded: they render as a link to the image, labelled with the alt text.
md.renderer.rules.image = (tokens, idx) => {
  const token = tokens[idx];
  const src = token.attrGet("src") || "";
  const alt = token.content || "image";
  const label = md.utils.escapeHtml(`Image: ${alt}`);
  if (!validateLink(src)) return label;
  return `<a href="${md.utils.escapeHtml(src)}" class="image-link">${label}</a>`;
};

// Highlighting costs more than parsing: remember the last few results, since while an answer
// streams the same finished code block is rendered again on every frame.
const highlightCache = new Map();
const HIGHLIGHT_CACHE_SIZE = 200;

function highlight(code, lang) {
  const key = `${lang}\u0000${code}`;
  const cached = highlightCache.get(key);
  if (cached !== undefined) return cached;
  let html;
  try {
    if (lang && hljs.getLanguage(lang)) {
      html = hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
    } else if (code.length < 5000) {
      html = hljs.highlightAuto(code).value;
    } else {
      html = md.utils.escapeHtml(code);
    }
  } catch {
    html = md.utils.escapeHtml(code);
  }
  highlightCache.set(key, html);
  if (highlightCache.size > HIGHLIGHT_CACHE_SIZE) {
    highlightCache.delete(highlightCache.keys().next().value);
  }
  return html;
}

md.renderer.rules.fence = (tokens, idx) => {
  const token = tokens[idx];
  const lang = (token.info || "").trim().split(/\s+/)[0].replace(/[^\w+#.-]/g, "").slice(0, 30);
  const label = md.utils.escapeHtml(lang || "text");
  const cls = lang ? ` language-${md.utils.escapeHtml(lang)}` : "";
  // The Copy button is added after sanitising (decorate()); the header only names the language.
  return `<div class="code-block" data-lang="${label}"><div class="code-head"><span class="code-lang">${label}</span></div>` +
    `<pre><code class="hljs${cls}">${highlight(token.content, lang)}</code></pre></div>\n`;
};

const purifyConfig = {
  ALLOWED_TAGS,
  ALLOWED_ATTR,
  ALLOWED_URI_REGEXP: SAFE_URL,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  FORBID_TAGS: ["img", "svg", "math", "iframe", "frame", "script", "style", "form", "object",
    "embed", "link", "meta", "base", "input", "button", "textarea", "select", "video", "audio",
    "source", "picture", "template"],
  FORBID_ATTR: ["style", "srcdoc", "src", "action", "formaction", "xlink:href"],
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") {
    const href = node.getAttribute("href");
    if (!href || !SAFE_URL.test(href.trim())) {
      node.removeAttribute("href");
    } else {
      node.setAttribute("rel", "noopener noreferrer nofollow");
      node.setAttribute("target", "_blank");
    }
  }
});

/** Markdown text -> a sanitised DocumentFragment. */
export function renderMarkdown(text) {
  const html = md.render(text || "");
  return DOMPurify.sanitize(html, purifyConfig);
}

/** Add the Copy button to each code block of a rendered (sanitised) fragment or element. */
export function decorate(root) {
  for (const head of root.querySelectorAll(".code-block > .code-head")) {
    if (head.querySelector("button")) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy-code";
    button.textContent = "Copy";
    button.title = "Copy the code";
    head.append(button);
  }
}

/**
 * Render `text` into `container`, touching only the top-level blocks that changed: while an
 * answer streams, only its last block changes, so earlier blocks (and any text the user has
 * selected in them, and their Copy buttons) stay as they are.
 */
export function renderInto(container, text) {
  const fragment = renderMarkdown(text);
  const fresh = Array.from(fragment.childNodes).filter(
    (n) => n.nodeType === Node.ELEMENT_NODE || (n.nodeType === Node.TEXT_NODE && n.textContent.trim()),
  );
  const old = Array.from(container.childNodes);
  let i = 0;
  for (; i < fresh.length; i++) {
    const node = fresh[i];
    const source = node.nodeType === Node.ELEMENT_NODE ? node.outerHTML : node.textContent;
    const current = old[i];
    if (current && current.__source === source) continue;
    if (node.nodeType === Node.ELEMENT_NODE) decorate(node);
    node.__source = source;
    if (current) container.replaceChild(node, current);
    else container.append(node);
  }
  for (; i < old.length; i++) old[i].remove();
}

/** Copy text to the clipboard; works outside secure contexts too (plain-http intranets). */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the old way
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "clipboard-helper";
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}
