// The sign-in form: posts JSON to /admin/api/login and opens the console on success.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login");
  const error = document.getElementById("error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch("/admin/api/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          username: form.username.value,
          password: form.password.value,
          ...(form.totp_code.value.trim() ? { totp_code: form.totp_code.value.trim() } : {}),
        }),
      });
      if (response.ok) {
        location.assign(location.pathname.startsWith("/admin/") ? location.pathname : "/admin/");
        return;
      }
      const body = await response.json().catch(() => ({}));
      error.textContent = body.message || `Sign-in failed (${response.status}).`;
      error.hidden = false;
    } catch (e) {
      error.textContent = `The console did not answer: ${e.message}`;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
});
