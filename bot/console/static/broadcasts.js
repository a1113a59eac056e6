// The broadcasts page: compose, preview as the first group will get it, confirm.
// The preview is the bot's own Telegram HTML; it is drawn by building DOM nodes, only for
// Telegram's tags, and everything else is shown as text (never innerHTML).
"use strict";

const TelegramHtml = (() => {
  // Telegram's tags, and the element each is drawn with.
  const TAGS = {
    b: "b", strong: "b", i: "i", em: "i", u: "u", ins: "u", s: "s", strike: "s", del: "s",
    a: "a", code: "code", pre: "pre", blockquote: "blockquote", "tg-spoiler": "span",
    span: "span", "tg-emoji": "span",
  };
  const TAG = /<(\/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+[A-Za-z][A-Za-z0-9-]*(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?)*)\s*(\/?)>/g;
  const ATTR = /([A-Za-z][A-Za-z0-9-]*)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?/g;
  const ENTITY = /&(lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});/g;
  const LINKS = new Set(["http:", "https:", "tg:", "mailto:"]);

  function decode(text) {
    return text.replace(ENTITY, (whole, name) => {
      if (name === "lt") return "<";
      if (name === "gt") return ">";
      if (name === "amp") return "&";
      if (name === "quot") return '"';
      const hex = name[1] === "x" || name[1] === "X";
      const code = parseInt(name.slice(hex ? 2 : 1), hex ? 16 : 10);
      try { return String.fromCodePoint(code); } catch { return whole; }
    });
  }

  function attributes(raw) {
    const found = {};
    for (const [, name, value] of raw.matchAll(ATTR)) {
      let text = value ?? "";
      if (/^["']/.test(text)) text = text.slice(1, -1);
      found[name.toLowerCase()] = decode(text);
    }
    return found;
  }

  function element(name, attrs) {
    const node = document.createElement(TAGS[name]);
    if (name === "a" && attrs.href) {
      try {
        const url = new URL(attrs.href, location.href);
        if (LINKS.has(url.protocol)) {
          node.href = url.href;
          node.rel = "noopener noreferrer nofollow";
          node.target = "_blank";
        }
      } catch { /* not a link: the text only */ }
    }
    if (name === "tg-spoiler" || (name === "span" && attrs.class === "tg-spoiler")) {
      node.className = "spoiler";
    }
    if (name === "blockquote" && "expandable" in attrs) node.className = "expandable";
    return node;
  }

  // A DocumentFragment drawing `source` (Telegram HTML); text nodes and Telegram's tags only.
  function render(source) {
    const root = document.createDocumentFragment();
    const stack = [{ name: null, node: root }];
    const text = (part) => {
      if (part) stack[stack.length - 1].node.appendChild(document.createTextNode(decode(part)));
    };
    let last = 0;
    for (const match of source.matchAll(TAG)) {
      const [whole, close, rawName, rawAttrs, selfClosing] = match;
      const name = rawName.toLowerCase();
      if (!(name in TAGS)) continue; // not Telegram's: stays in the text, shown as written
      text(source.slice(last, match.index));
      last = match.index + whole.length;
      if (close) {
        const at = stack.map((open) => open.name).lastIndexOf(name);
        if (at > 0) stack.length = at;
        continue;
      }
      const node = element(name, attributes(rawAttrs));
      stack[stack.length - 1].node.appendChild(node);
      if (!selfClosing) stack.push({ name, node });
    }
    text(source.slice(last));
    return root;
  }

  return { render };
})();

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("compose");
  if (!form) return;
  const words = JSON.parse(document.getElementById("broadcasts-words").textContent);
  const say = (key, values = {}) =>
    Object.entries(values).reduce((text, [name, value]) => text.replaceAll(`{${name}}`, value), words[key]);
  const previewButton = document.getElementById("preview-button");
  const confirmButton = document.getElementById("confirm-button");
  const card = document.getElementById("preview-card");
  const preview = document.getElementById("preview");
  let previewed = null; // the body the preview was made of

  const chosen = (name) => form.querySelector(`input[name="${name}"]:checked`)?.value;
  const checked = (name) =>
    [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((box) => box.value);

  // Show the fields of the chosen source and way of choosing groups; only those are sent.
  function arrange() {
    const source = chosen("source");
    const by = chosen("by");
    for (const [id, shown] of [
      ["source-template", source === "template"], ["source-text", source === "text"],
      ["by-groups", by === "groups"], ["by-tags", by === "tags"],
    ]) {
      const part = document.getElementById(id);
      part.hidden = !shown;
      part.querySelectorAll("input, select, textarea").forEach((field) => (field.disabled = !shown));
    }
  }

  function body() {
    const request = {
      urgent: document.getElementById("urgent").checked,
      drop: document.getElementById("drop").checked,
      pin: document.getElementById("pin").checked,
    };
    if (chosen("source") === "template") request.template = form.elements.template?.value || "";
    else request.text = form.elements.text.value;
    if (chosen("by") === "tags") request.tags = checked("tags");
    else request.groups = checked("groups");
    return request;
  }

  function changed() {
    arrange();
    if (previewed === null) return;
    const same = JSON.stringify(body()) === previewed;
    confirmButton.disabled = !same;
    if (!same) Console.notice(words.changed, false);
  }

  function show(answer) {
    preview.replaceChildren(TelegramHtml.render(answer.text));
    document.getElementById("preview-first").textContent = say("first", { title: answer.group.title });
    const titles = answer.groups.map((group) => group.title).join(", ");
    document.getElementById("preview-groups").textContent = say("to", { count: answer.count }) + titles;
    confirmButton.textContent = say("send_to", { count: answer.count });
    card.hidden = false;
  }

  previewButton.addEventListener("click", async () => {
    const request = body();
    previewButton.disabled = true;
    try {
      const answer = await Console.api("POST", "/api/broadcasts/preview", request);
      show(answer);
      previewed = JSON.stringify(request);
      confirmButton.disabled = false;
      Console.notice("", false);
    } catch (error) {
      previewed = null;
      confirmButton.disabled = true;
      card.hidden = true;
      Console.notice(error.message, true);
    } finally {
      previewButton.disabled = false;
    }
  });

  confirmButton.addEventListener("click", async () => {
    if (previewed === null) return;
    confirmButton.disabled = true;
    try {
      const answer = await Console.api("POST", "/api/broadcasts", JSON.parse(previewed));
      Console.notice(say("sent", { id: answer.id }), false);
      location.assign(`/broadcasts?sent=${answer.id}`);
    } catch (error) {
      confirmButton.disabled = false;
      Console.notice(error.message, true);
    }
  });

  document.getElementById("select-all")?.addEventListener("click", () => {
    const boxes = [...form.querySelectorAll('input[name="groups"]')];
    const all = boxes.every((box) => box.checked);
    boxes.forEach((box) => (box.checked = !all));
    changed();
  });

  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  form.addEventListener("submit", (event) => event.preventDefault());
  arrange();
});
