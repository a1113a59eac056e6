// The invites page: a campaign's Revoke button asks first, then posts to the API; the page then
// shows the campaigns as they are now, or the notice says why Telegram refused.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("campaigns");
  if (!table) return;
  for (const button of table.querySelectorAll("button[data-campaign]")) {
    button.addEventListener("click", async () => {
      if (!window.confirm(button.dataset.confirm)) return;
      const name = encodeURIComponent(button.dataset.campaign);
      button.disabled = true;
      try {
        await Console.api("POST", `/api/groups/${table.dataset.chat}/campaigns/${name}/revoke`);
        location.reload();
      } catch (error) {
        Console.notice(error.message, true);
        button.disabled = false;
      }
    });
  }
});
