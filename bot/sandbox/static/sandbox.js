// The sandbox page's script: swap in the server-rendered parts when the emulator changes
// (server-sent events, no polling) and post what the operator does. No build step.
(function () {
  "use strict";
  var state = JSON.parse(document.getElementById("state").textContent);
  var parts = ["chats", "chat", "people", "mind", "clock"];
  var notice = document.getElementById("notice");
  var loading = null;
  var again = false;

  function query() {
    return "chat=" + state.chat + "&as=" + state.as + "&lang=" + state.lang;
  }

  function show(text, isError) {
    if (!text) { notice.hidden = true; return; }
    notice.textContent = text;
    notice.className = "notice" + (isError ? " error" : "");
    notice.hidden = false;
  }

  function stickToBottom(fn) {
    var list = document.getElementById("transcript");
    var atEnd = !list || list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    fn();
    list = document.getElementById("transcript");
    if (list && atEnd) { list.scrollTop = list.scrollHeight; }
  }

  // Refresh every part; one request at a time, one more if something changed meanwhile.
  function refresh() {
    if (loading) { again = true; return loading; }
    loading = fetch("/view?" + query(), { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        stickToBottom(function () {
          parts.forEach(function (name) {
            var el = document.getElementById(name);
            if (el && data.parts[name] !== undefined) { el.innerHTML = data.parts[name]; }
          });
        });
        state.version = data.version;
        document.body.dataset.version = data.version;
      })
      .catch(function () { show("…", true); })
      .finally(function () {
        loading = null;
        if (again) { again = false; refresh(); }
      });
    return loading;
  }

  function act(body) {
    body.chat = body.chat === undefined ? state.chat : body.chat;
    body.as = body.as === undefined ? state.as : body.as;
    body.lang = state.lang;
    document.body.classList.add("busy");
    return fetch("/act", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (!data.ok) { show(data.error, true); return data; }
        show(data.answer ? "💬 " + data.answer : data.note || "", false);
        if (data.as) { state.as = data.as; }
        if (data.chat) { state.chat = data.chat; state.as = data.chat; }
        return refresh().then(function () { return data; });
      })
      .finally(function () { document.body.classList.remove("busy"); });
  }

  function go(chat, person) {
    state.chat = chat;
    if (person) { state.as = person; }
    history.replaceState(null, "", "?" + query());
    show("");
    return refresh();
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-press],[data-move],[data-act],[data-chat]");
    if (!target) { return; }
    if (target.dataset.chat) {
      event.preventDefault();
      go(Number(target.dataset.chat));
    } else if (target.dataset.press !== undefined) {
      act({ action: "press", message_id: Number(target.dataset.message), data: target.dataset.press });
    } else if (target.dataset.move) {
      act({ action: "clock", by: target.dataset.move });
    } else if (target.dataset.act) {
      act({ action: target.dataset.act, as: Number(target.dataset.person) });
    }
  });

  document.addEventListener("change", function (event) {
    if (event.target.name === "as") {
      state.as = Number(event.target.value);
      history.replaceState(null, "", "?" + query());
      refresh();
    }
  });

  document.getElementById("composer").addEventListener("submit", function (event) {
    event.preventDefault();
    var input = document.getElementById("text");
    var text = input.value.trim();
    if (!text) { return; }
    input.value = "";
    act({ action: "say", text: text }).then(function (data) {
      if (!data || !data.ok) { input.value = text; }
    });
  });

  document.addEventListener("submit", function (event) {
    if (event.target.id !== "newperson") { return; }
    event.preventDefault();
    var input = document.getElementById("newname");
    act({ action: "new", name: input.value }).then(function (data) {
      if (data && data.ok) { input.value = ""; }
    });
  });

  document.getElementById("save-transcript").addEventListener("click", function (event) {
    event.preventDefault();
    fetch("/transcript").then(function (r) {
      var saved = r.headers.get("X-Saved-To");
      return r.blob().then(function (blob) {
        var link = document.createElement("a");
        link.href = URL.createObjectURL(blob);
        link.download = saved ? saved.split("/").pop() : "transcript.yaml";
        document.body.appendChild(link);
        link.click();
        link.remove();
        show(saved ? "✔ " + saved : "", false);
      });
    });
  });

  // The bot writes its database just after it sends: look once more when it has settled.
  var settled = null;
  function refreshTwice() {
    refresh();
    clearTimeout(settled);
    settled = setTimeout(refresh, 1200);
  }

  var events = new EventSource("/events?since=" + state.version);
  events.onmessage = function (event) {
    if (Number(event.data) !== state.version) { refreshTwice(); }
  };
  var list = document.getElementById("transcript");
  if (list) { list.scrollTop = list.scrollHeight; }
  document.body.dataset.version = state.version;
  document.body.dataset.ready = "1";
})();
