// The moderation page: "Not spam" and "Ban" on a message the checks deleted post the decision
// to the API ("Ban" asks first); the page then shows the log and figures as they are now, or
// the notice says why the decision was refused. The mode switch is a plain API form.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("moderation-log");
  if (!table) return;
  for (const button of table.querySelectorAll("button[data-decision]")) {
    button.addEventListener("click", async () => {
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      const buttons = button.closest("tr").querySelectorAll("button[data-decision]");
      buttons.forEach((b) => (b.disabled = true));
      try {
        await Console.api(
          "POST",
          `/api/groups/${table.dataset.chat}/moderation/${button.dataset.action}/decision`,
          { decision: button.dataset.decision },
        );
        location.reload();
      } catch (error) {
        Console.notice(error.message, true);
        buttons.forEach((b) => (b.disabled = false));
      }
    });
  }
});
