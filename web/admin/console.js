// The operators' console: one page per nav item, data from /admin/api/. No framework, no
// inline scripts, no innerHTML with data: every node is built with h(), text as text.
"use strict";

const NEEDS = {
  operate: ["super_admin", "support"],
  users: ["super_admin", "support", "billing"],
  admins: ["super_admin"],
  plans: ["super_admin", "billing"],
};
const PODMAN = ["ps", "ps_all", "image_ls", "network_ls", "volume_ls"];
let me = { username: "", roles: [] };

function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "rect", "g", "title"].includes(tag) && attrs.svg;
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "svg" || v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `The console answered ${status}.`);
    this.status = status;
    this.code = body.code;
  }
}

async function api(path, options = {}) {
  const init = { ...options, headers: { ...(options.body ? { "Content-Type": "application/json" } : {}) } };
  if (options.body) init.body = JSON.stringify(options.body);
  const response = await fetch(`/admin/api/${path}`, init);
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== "login") {
    location.assign(location.pathname);
    throw new ApiError(401, body);
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

const may = (need) => NEEDS[need].some((r) => me.roles.includes(r));
const when = (t) => (t ? new Date(t).toLocaleString() : "—");

function table(columns, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", { scope: "col" }, title)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row))))))));
}

function trend(pct) {
  if (!pct) return h("span", { class: "muted" }, "— same as a day ago");
  const up = pct > 0;
  return h("span", { class: up ? "up" : "down", title: "against the 24 hours before" },
    `${up ? "▲" : "▼"} ${Math.abs(pct).toFixed(0)} %`);
}

function chart(buckets) {
  const width = 720, height = 160, pad = 4;
  const max = Math.max(1, ...buckets.map((b) => b.success + b.failure));
  const bar = (width - pad * 2) / Math.max(1, buckets.length);
  const svg = h("svg", { svg: true, class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "Deployments per hour over the last day, successes and failures" });
  buckets.forEach((b, i) => {
    const x = pad + i * bar;
    const ok = ((height - pad * 2) * b.success) / max;
    const bad = ((height - pad * 2) * b.failure) / max;
    const g = h("g", { svg: true }, h("title", { svg: true }, `${when(b.bucket)}: ${b.success} succeeded, ${b.failure} failed`));
    g.append(h("rect", { svg: true, class: "success", x, width: Math.max(1, bar - 2), y: height - pad - ok, height: ok }));
    g.append(h("rect", { svg: true, class: "failure", x, width: Math.max(1, bar - 2), y: height - pad - ok - bad, height: bad }));
    svg.append(g);
  });
  return svg;
}

const pages = {
  async overview() {
    const { stats, extras, series } = await api("overview");
    const figure = (label, key) =>
      h("div", { class: "card stat" }, h("div", { class: "muted" }, label),
        h("div", { class: "value" }, stats[key]), trend(stats.deltas[key]));
    return [
      h("h1", {}, "Overview"),
      h("div", { class: "grid" },
        figure("Apps online", "apps_online"), figure("Apps", "apps_total"),
        figure("Deployments today", "deployments_today"), figure("Failed today", "errors_today")),
      h("h2", {}, "Deployments, last 24 hours"),
      chart(series),
      h("div", { class: "legend" }, h("span", { class: "success" }, "succeeded"), h("span", { class: "failure" }, "failed")),
      h("h2", {}, "System"),
      h("p", {}, `Version ${extras.system.version} · database ${extras.system.database} · `,
        `${extras.system.workers_online} of ${extras.system.workers_total} workers online · `,
        `${extras.active_alerts} open alerts`),
      extras.system.platform_certificate
        ? h("p", {}, `Platform certificate for ${extras.system.platform_certificate.names.join(", ")}: `,
          `${extras.system.platform_certificate.status}`,
          extras.system.platform_certificate.not_after ? ` until ${when(extras.system.platform_certificate.not_after)}` : "",
          extras.system.platform_certificate.error ? ` — ${extras.system.platform_certificate.error}` : "")
        : h("p", {}, "No platform certificate: apps' own hostnames are served over plain HTTP."),
      h("h2", {}, "Recent deployments"),
      table([["#", (d) => d.id], ["App", (d) => d.app_name], ["Owner", (d) => d.user_email],
        ["Status", (d) => d.status], ["Started", (d) => when(d.created_at)]],
      extras.recent_deployments, "No deployments yet."),
      h("h2", {}, "Open alerts"),
      table([["Owner", (a) => a.user_email], ["App", (a) => a.app_id ?? "—"], ["Kind", (a) => a.kind],
        ["Status", (a) => a.status], ["Message", (a) => a.message], ["Since", (a) => when(a.fired_at)]],
        extras.alerts, "No open alerts."),
    ];
  },

  async workers() {
    const workers = await api("workers");
    const output = h("pre", { id: "podman-output", hidden: true });
    const query = async (worker, cmd, button) => {
      button.disabled = true;
      output.hidden = false;
      output.textContent = `podman ${cmd} on ${worker.name}…`;
      try {
        const answer = await api(`workers/${worker.worker_id}/podman/${cmd}`);
        let text = answer.output;
        try { text = JSON.stringify(JSON.parse(answer.output), null, 2); } catch { /* as it came */ }
        output.textContent = `# ${worker.name}: ${cmd}\n${text}${answer.err ? `\n# stderr\n${answer.err}` : ""}`;
      } catch (e) {
        output.textContent = `# ${worker.name}: ${cmd}\n${e.message}`;
      } finally {
        button.disabled = false;
      }
    };
    return [
      h("h1", {}, "Workers"),
      table([
        ["Name", (w) => w.name],
        ["Link", (w) => h("span", { class: `pill ${w.connected ? "on" : "off"}` }, w.connected ? "connected" : "offline")],
        ["Last heartbeat", (w) => when(w.last_heartbeat_at)],
        ["Jobs", (w) => (w.busy ? "busy" : "idle")],
        ["Podman", (w) => (may("operate")
          ? h("div", { class: "row" }, PODMAN.map((cmd) => {
            const b = h("button", { type: "button", class: "quiet", "data-cmd": cmd }, cmd);
            b.addEventListener("click", () => query(w, cmd, b));
            return b;
          }))
          : h("span", { class: "muted" }, "needs support or super_admin"))],
      ], workers, "No workers are registered. Add one with `wisehosting worker create`."),
      output,
    ];
  },

  async apps() {
    const results = h("div", {});
    const detail = h("div", {});
    const show = async (app) => {
      detail.replaceChildren(h("p", { class: "muted" }, `Loading ${app.name}…`));
      try {
        const [stats, logs] = await Promise.all([api(`apps/${app.id}/live-stats`), api(`apps/${app.id}/logs`)]);
        const figures = stats.live
          ? `CPU ${stats.cpu_pct.toFixed(1)} % · memory ${(stats.mem_bytes / 1048576).toFixed(1)} MiB · ${stats.requests_per_s.toFixed(1)} requests/s · ${stats.restarts} restarts`
          : "No live figures yet (not running, its worker is offline, or the first sample is still to come).";
        detail.replaceChildren(h("h2", {}, `${app.name} (${app.slug})`), h("p", {}, figures), actions(app),
          h("pre", {}, logs.lines.length ? logs.lines.map((l) => `${new Date(l.at_ms).toLocaleTimeString()} ${l.stream} ${l.line}`).join("\n") : "No log lines yet."));
      } catch (e) {
        detail.replaceChildren(h("p", { class: "error" }, e.message));
      }
    };
    // Pause (stops the app; its owner cannot start it), unpause, unlock a stuck deploy.
    const actions = (app) => {
      const reason = h("input", { name: "reason", "aria-label": "Reason (shown in the audit log)", placeholder: "Reason", size: 28 });
      const status = h("p", { role: "status" });
      const act = async (action) => {
        try {
          await api(`apps/${app.id}/${action}`, { method: "POST", body: { reason: reason.value } });
          const found = await search(lastQuery);
          await show(found.find((a) => a.id === app.id) ?? app);
          detail.append(h("p", { role: "status" }, `${action}: done.`));
        } catch (e) { status.className = "error"; status.textContent = e.message; }
      };
      const buttons = (app.paused_at ? ["unpause", "unlock"] : ["pause", "unlock"]).map((action) => {
        const b = h("button", { type: "button", class: "quiet" }, action[0].toUpperCase() + action.slice(1));
        b.addEventListener("click", () => act(action));
        return b;
      });
      return h("div", {}, h("div", { class: "row" }, reason, buttons), status);
    };
    let lastQuery = "";
    const search = async (q) => {
      lastQuery = q;
      const apps = await api(`apps?q=${encodeURIComponent(q)}`);
      results.replaceChildren(table([
        ["App", (a) => { const b = h("button", { type: "button", class: "quiet" }, a.name); b.addEventListener("click", () => show(a)); return b; }],
        ["Owner", (a) => a.owner_email], ["Status", (a) => (a.paused_at ? `${a.status} (paused)` : a.status)],
        ["Worker", (a) => a.worker_id ?? "—"],
        ["Created", (a) => when(a.created_at)],
      ], apps, q ? "No app matches." : "No apps yet."));
      return apps;
    };
    const form = searchForm("Search apps by name, slug or owner", search);
    await search("");
    return [h("h1", {}, "Apps"), form, results, detail];
  },

  async users() {
    const results = h("div", {});
    const status = h("p", { role: "status" });
    const plans = may("plans") ? await api("plans") : [];
    const planCell = (u) => {
      if (!may("plans")) return u.plan;
      const select = h("select", { "aria-label": `Plan of ${u.email}` }, plans.map((p) => h("option", { value: p, selected: p === u.plan }, p)));
      select.addEventListener("change", async () => {
        try {
          await api(`users/${u.id}/plan`, { method: "POST", body: { plan: select.value } });
          status.className = "";
          status.textContent = `${u.email} is on ${select.value} now.`;
        } catch (e) { status.className = "error"; status.textContent = e.message; }
      });
      return select;
    };
    const search = async (q) => {
      const users = await api(`users?q=${encodeURIComponent(q)}`);
      results.replaceChildren(table([
        ["E-mail", (u) => u.email], ["Name", (u) => u.name || "—"], ["Plan", planCell],
        ["Apps", (u) => u.apps], ["Since", (u) => when(u.created_at)],
        ["State", (u) => (u.disabled_at ? "disabled" : "active")],
      ], users, q ? "No user matches." : "No users yet."));
    };
    const form = searchForm("Search users by e-mail or name", search);
    await search("");
    return [h("h1", {}, "Users"), form, status, results];
  },

  async admins() {
    const accounts = await api("admins");
    const message = h("p", { role: "status" });
    const revoke = async (username, role) => {
      try {
        await api("grants/revoke", { method: "POST", body: { username, role } });
        render();
      } catch (e) { message.className = "error"; message.textContent = e.message; }
    };
    const form = h("form", { class: "inline", id: "grant" },
      h("label", {}, "Username", h("input", { name: "username", required: true })),
      h("label", {}, "Role", h("select", { name: "role" },
        ["read_only", "support", "billing", "super_admin"].map((r) => h("option", { value: r }, r)))),
      h("label", {}, "Expires (optional)", h("input", { name: "expires_at", type: "datetime-local" })),
      h("label", {}, "Reason", h("input", { name: "reason" })),
      h("button", { type: "submit" }, "Grant"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const expires = form.expires_at.value ? new Date(form.expires_at.value).toISOString() : null;
      try {
        await api("grants", { method: "POST", body: { username: form.username.value, role: form.role.value, expires_at: expires, reason: form.reason.value } });
        render();
      } catch (e) { message.className = "error"; message.textContent = e.message; }
    });
    return [
      h("h1", {}, "Admins"),
      table([
        ["Username", (a) => a.username],
        ["Roles", (a) => h("div", { class: "row" }, a.grants.map((g) => {
          const expired = g.expires_at && new Date(g.expires_at) <= new Date();
          const b = h("button", { type: "button", class: "quiet", title: `Revoke ${g.role} from ${a.username}` }, "×");
          b.addEventListener("click", () => revoke(a.username, g.role));
          return h("span", { class: `pill ${expired ? "off" : "on"}` }, g.role,
            g.expires_at ? ` until ${when(g.expires_at)}` : "", " ", b);
        }))],
        ["Last sign-in", (a) => when(a.last_login_at)],
        ["Failed in a row", (a) => a.failed_logins],
        ["Active", (a) => (a.active ? "yes" : "no")],
      ], accounts, "No accounts."),
      h("h2", {}, "Grant a role"),
      form, message,
    ];
  },

  async audit() {
    const rows = await api("audit");
    return [
      h("h1", {}, "Admin audit log"),
      table([
        ["When", (r) => when(r.created_at)], ["Who", (r) => r.actor], ["What", (r) => r.action],
        ["On", (r) => [r.target_type, r.target_id].filter(Boolean).join(" ")], ["From", (r) => r.ip ?? "—"],
        ["Detail", (r) => JSON.stringify(r.detail)],
      ], rows, "Nothing yet."),
    ];
  },
};

function searchForm(label, search) {
  const input = h("input", { type: "search", name: "q", "aria-label": label, placeholder: label, size: 36 });
  const form = h("form", { class: "inline", role: "search" }, input, h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (event) => { event.preventDefault(); search(input.value.trim()); });
  return form;
}

function current() {
  const name = location.pathname.replace(/^\/admin\/?/, "").split("/")[0];
  return pages[name] ? name : "overview";
}

async function render() {
  const page = current();
  const main = document.getElementById("main");
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    main.replaceChildren(...(await pages[page]()));
  } catch (e) {
    main.replaceChildren(h("h1", {}, page[0].toUpperCase() + page.slice(1)), h("p", { class: "error" }, e.message));
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  try {
    me = await api("me");
  } catch {
    return;
  }
  document.getElementById("who").textContent = `${me.username} · ${me.roles.join(", ") || "no live role"}`;
  for (const link of document.querySelectorAll("#nav a[data-need]")) {
    if (!may(link.dataset.need)) link.hidden = true;
  }
  document.getElementById("nav").addEventListener("click", (event) => {
    const link = event.target.closest("a");
    if (!link || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    history.pushState(null, "", link.getAttribute("href"));
    render();
  });
  window.addEventListener("popstate", render);
  document.getElementById("logout").addEventListener("click", async () => {
    await api("logout", { method: "POST" }).catch(() => {});
    location.assign("/admin/");
  });
  render();
});
