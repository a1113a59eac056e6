// The console's shared script: API calls with the page's CSRF token, forms sent as JSON,
// sortable tables and the notice line. Pages with charts add their own script.
"use strict";

const Console = (() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";

  function notice(text, isError) {
    const box = document.getElementById("notice");
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("error", Boolean(isError));
    box.hidden = !text;
  }

  // fetch() a JSON API; resolves to the answer's JSON, rejects with the server's message.
  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = meta("csrf");
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.error || `${response.status} ${response.statusText}`);
    return answer;
  }

  // A form's fields as a JSON object: checkboxes are booleans, data-type="int" numbers,
  // data-type="list" comma-separated lists, several fields of one name a list.
  function fields(form) {
    const data = {};
    for (const element of form.elements) {
      if (!element.name || element.disabled || element.name === "csrf") continue;
      let value;
      if (element.type === "checkbox") {
        if (element.dataset.type === "list") {
          if (!element.checked) { data[element.name] ??= []; continue; }
          (data[element.name] ??= []).push(element.value);
          continue;
        }
        value = element.checked;
      } else if (element.type === "radio") {
        if (!element.checked) continue;
        value = element.value;
      } else {
        value = element.value;
        if (element.dataset.type === "int") value = value === "" ? null : Number(value);
        if (element.dataset.type === "list") value = value.split(/[,，\s]+/).filter(Boolean);
      }
      data[element.name] = value;
    }
    return data;
  }

  // <form data-api="POST /api/..." data-then="reload|URL|event">: sent as JSON; on success the
  // page reloads (or goes to data-then, or fires "console:done" with the answer).
  function wireForms(root) {
    for (const form of root.querySelectorAll("form[data-api]")) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const [method, url] = form.dataset.api.split(" ");
        const buttons = form.querySelectorAll("button");
        buttons.forEach((b) => (b.disabled = true));
        try {
          const answer = await api(method, url, fields(form));
          const then = form.dataset.then || "reload";
          if (then === "reload") location.reload();
          else if (then === "event") form.dispatchEvent(new CustomEvent("console:done", { detail: answer, bubbles: true }));
          else location.assign(then);
        } catch (error) {
          notice(error.message, true);
        } finally {
          buttons.forEach((b) => (b.disabled = false));
        }
      });
    }
  }

  // <table class="sortable">, <th data-sort="num|text">, cells with data-value to sort by.
  function wireTables(root) {
    for (const table of root.querySelectorAll("table.sortable")) {
      const heads = [...table.querySelectorAll("thead th")];
      heads.forEach((th, column) => {
        if (!th.dataset.sort) return;
        th.tabIndex = 0;
        const sort = () => {
          const descending = th.getAttribute("aria-sort") !== "descending";
          heads.forEach((other) => other.removeAttribute("aria-sort"));
          th.setAttribute("aria-sort", descending ? "descending" : "ascending");
          const body = table.tBodies[0];
          const key = (row) => {
            const cell = row.cells[column];
            const raw = cell?.dataset.value ?? cell?.textContent.trim() ?? "";
            return th.dataset.sort === "num" ? Number(raw === "" ? -Infinity : raw) : raw.toLowerCase();
          };
          const rows = [...body.rows].sort((a, b) => {
            const x = key(a), y = key(b);
            return (x < y ? -1 : x > y ? 1 : 0) * (descending ? -1 : 1);
          });
          rows.forEach((row) => body.appendChild(row));
        };
        th.addEventListener("click", sort);
        th.addEventListener("keydown", (event) => { if (event.key === "Enter") sort(); });
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireForms(document);
    wireTables(document);
    document.body.dataset.ready = "1";
    // The sandbox's console button: its one-time link signs in without a second press.
    document.querySelector("form[data-autosubmit]")?.requestSubmit();
  });

  return { api, fields, notice, wireForms, lang: () => meta("lang") };
})();
