// The orders page: Fulfil and Cancel buttons post to the API (with the row's note, if any),
// a cancel asks first; then the page shows the orders as they are now.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-order][data-action]")) {
    button.addEventListener("click", async () => {
      const id = button.dataset.order;
      const action = button.dataset.action;
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      const note = document.getElementById(`note-${id}`)?.value.trim() || "";
      const row = button.closest("tr");
      row?.querySelectorAll("button").forEach((b) => (b.disabled = true));
      try {
        await Console.api("POST", `/api/orders/${id}/${action}`, note ? { note } : {});
        location.reload();
      } catch (error) {
        Console.notice(error.message, true);
        row?.querySelectorAll("button").forEach((b) => (b.disabled = false));
      }
    });
  }
});
