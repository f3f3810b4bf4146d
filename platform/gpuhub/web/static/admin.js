// gpuhub admin page: GPUs, quotas, usage, queue, batch jobs over /hub/api/gpuhub/v1. Text only through
// textContent (names are user-chosen); writes carry JupyterHub's XSRF token. After a change the
// table is reloaded first, then the confirmation shown: what it confirms is on screen.
(function () {
  "use strict";
  const root = document.querySelector(".gpuhub-admin");
  if (!root) return;
  const { api, call, say, cell, button, body, empty, when } = window.gpuhubPage;
  const canChange = root.dataset.canChange === "true";
  const errorBox = document.getElementById("gpuhub-error");
  const okBox = document.getElementById("gpuhub-ok");

  function gb(bytes) {
    return bytes === null || bytes === undefined ? "" : (bytes / 1024 ** 3).toFixed(1) + " GB";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 120) return seconds + " s";
    if (seconds < 7200) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  // --- GPUs ---------------------------------------------------------------------------------------
  async function loadGpus() {
    const data = await call("GET", "gpus");
    const source = document.getElementById("gpus-source");
    source.textContent =
      "Inventory: " + data.source + (data.simulated ? " (SIMULATED: these are not real GPUs)" : "") +
      (data.live_memory ? "; memory read live through NVML" : "; live memory needs NVML");
    const tbody = body("gpus-table");
    for (const d of data.devices) {
      const tr = document.createElement("tr");
      tr.dataset.uuid = d.uuid;
      cell(tr, d.index);
      cell(tr, d.name + " " + d.uuid);
      cell(tr, d.state + (d.simulated ? " (simulated)" : "") + (d.health ? ": " + d.health : ""), "gpuhub-state-" + d.state);
      cell(tr, d.holders.map((h) => h.user + (h.server ? ":" + h.server : "") + " (" + h.profile + (h.borrowed ? ", borrowed" : "") + ")").join(", "));
      cell(tr, d.holders.map((h) => h.since + " (" + duration(h.held_seconds) + ")").join(", "));
      cell(tr, (d.memory_used === null ? "" : gb(d.memory_used) + " / ") + gb(d.memory_total));
      const actions = cell(tr, "");
      if (canChange && d.holders.length) {
        button(actions, "Force free", "btn-outline-danger", async () => {
          const who = d.holders.map((h) => h.user).join(", ");
          if (!window.confirm("Free " + d.name + " " + d.uuid + " held by " + who + "?\nTheir server is stopped; their files are kept.")) return;
          try {
            const result = await call("POST", "gpus/" + encodeURIComponent(d.uuid) + "/free");
            await loadGpus();
            say(okBox, "Freed " + result.freed.length + " allocation(s) on " + result.device);
          } catch (e) {
            say(errorBox, e.message);
          }
        });
      }
      tbody.appendChild(tr);
    }
    empty(tbody, "No GPUs on this hub: GPU profiles cannot start here (inventory: " + data.source + "). " +
      "Name where GPUs come from in the settings file, [gpus] inventory (docs/admin.md, \"GPUs\").");
  }

  // --- quotas -------------------------------------------------------------------------------------
  // the settings schema's [[quotas]] keys (name, label, kind: "number", "size" or "list"), from the page
  const FIELDS = JSON.parse(root.dataset.quotaFields);

  function shown(field, value) {
    if (value === null || value === undefined) return "";
    if (field.kind === "size") return gb(value);
    if (field.kind === "list") return value.join(", ") || "(none)";
    return String(value);
  }

  async function loadQuotas() {
    const data = await call("GET", "quotas");
    const tbody = body("quotas-table");
    for (const r of data.rules) {
      const tr = document.createElement("tr");
      cell(tr, r.scope);
      cell(tr, r.name || "(everyone)");
      for (const f of FIELDS) cell(tr, shown(f, r[f.name]));
      cell(tr, r.origin === "database" ? "set here" : "settings file");
      const actions = cell(tr, "");
      if (canChange && r.origin === "database") {
        button(actions, "Remove", "btn-outline-secondary", async () => {
          try {
            await call("DELETE", "quotas/" + r.scope + (r.name ? "/" + encodeURIComponent(r.name) : ""));
            await loadQuotas();
            say(okBox, "Removed the " + r.scope + " quota " + (r.name || ""));
          } catch (e) {
            say(errorBox, e.message);
          }
        });
      }
      tbody.appendChild(tr);
    }
    empty(tbody, "No quota rules: nobody has a limit. " +
      (canChange ? "Set one below, or in [[quotas]] of the settings file." : "An admin sets them here, or in [[quotas]] of the settings file."));
  }

  // The form only shapes data: numbers where the text is a number, the rest as typed (the API says
  // which field is wrong and what it accepts).
  function shape(form) {
    const out = {};
    for (const f of FIELDS) {
      const raw = form.elements[f.name].value.trim();
      if (raw === "") continue;
      if (f.kind === "list") out[f.name] = raw.split(",").map((p) => p.trim()).filter((p) => p);
      else if (/^-?\d+(\.\d+)?$/.test(raw)) out[f.name] = Number(raw);
      else out[f.name] = raw;
    }
    return out;
  }

  const quotaForm = document.getElementById("quota-form");
  if (quotaForm) {
    quotaForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const scope = quotaForm.elements.scope.value;
      const name = quotaForm.elements.name.value.trim();
      const path = "quotas/" + scope + (scope === "default" ? "" : "/" + encodeURIComponent(name));
      for (const el of quotaForm.querySelectorAll(".is-invalid")) el.classList.remove("is-invalid");
      try {
        await call("PUT", path, shape(quotaForm));
        await loadQuotas();
        say(okBox, "Saved the " + scope + " quota " + name);
      } catch (e) {
        say(errorBox, e.message);
        const el = e.field && quotaForm.elements[e.field];
        if (el) el.classList.add("is-invalid");
      }
    });
  }

  document.getElementById("effective-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const user = document.getElementById("e-user").value.trim();
    try {
      const data = await call("GET", "users/" + encodeURIComponent(user) + "/quota");
      const table = document.getElementById("effective-table");
      const tbody = body("effective-table");
      for (const f of FIELDS) {
        const tr = document.createElement("tr");
        const limit = data.limits[f.name];
        cell(tr, f.name);
        cell(tr, limit.value === null ? "no limit" : shown(f, limit.value));
        cell(tr, limit.source);
        tbody.appendChild(tr);
      }
      const tr = document.createElement("tr");
      cell(tr, "GPU-hours used this week");
      cell(tr, data.gpu_hours_used.toFixed(2) + (data.gpu_hours_remaining === null ? "" : " (" + data.gpu_hours_remaining.toFixed(2) + " remain)"));
      cell(tr, "groups: " + (data.groups.join(", ") || "none"));
      tbody.appendChild(tr);
      table.classList.remove("d-none");
      say(null);
    } catch (e) {
      say(errorBox, e.message);
    }
  });

  // --- usage --------------------------------------------------------------------------------------
  function usageQuery(extra) {
    const params = new URLSearchParams(extra);
    const since = document.getElementById("u-since").value;
    const until = document.getElementById("u-until").value;
    if (since) params.set("since", since);
    if (until) params.set("until", until);
    params.set("by", document.getElementById("u-by").value);
    return params.toString();
  }

  function chart(daily) {
    const box = document.getElementById("usage-chart");
    box.replaceChildren();
    const days = Object.keys(daily || {});
    if (!days.length) return;
    const totals = days.map((d) => Object.values(daily[d]).reduce((a, b) => a + b, 0));
    if (!totals.some((t) => t > 0)) return; // no use in the range: the table's line says so
    const max = Math.max(...totals, 0.001);
    const ns = "http://www.w3.org/2000/svg";
    const w = Math.max(300, days.length * 24), h = 160;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + (h + 20));
    svg.setAttribute("width", "100%");
    svg.setAttribute("height", String(h + 20));
    svg.setAttribute("role", "img");
    days.forEach((d, i) => {
      const bar = document.createElementNS(ns, "rect");
      const bh = (totals[i] / max) * h;
      bar.setAttribute("x", String(i * (w / days.length) + 2));
      bar.setAttribute("y", String(h - bh));
      bar.setAttribute("width", String(Math.max(2, w / days.length - 4)));
      bar.setAttribute("height", String(bh));
      bar.setAttribute("fill", "#4a7fb5");
      const title = document.createElementNS(ns, "title");
      title.textContent = d + ": " + totals[i].toFixed(2) + " GPU-hours";
      bar.appendChild(title);
      svg.appendChild(bar);
    });
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "0");
    label.setAttribute("y", String(h + 16));
    label.setAttribute("font-size", "11");
    label.textContent = days[0] + " … " + days[days.length - 1] + " · peak " + max.toFixed(2) + " GPU-hours/day";
    svg.appendChild(label);
    box.appendChild(svg);
  }

  const READINGS = {
    nvml: "Busy: utilisation above [reclaim] busy_utilisation in the NVML readings the agent takes every check_interval; measured: the held time those readings cover.",
    simulated: "Busy figures from SIMULATED readings (a file), not from real GPUs.",
    mixed: "Busy figures partly from SIMULATED readings (a file), partly from NVML.",
    none: "No utilisation readings in this range: the busy columns are empty.",
  };

  async function loadIdle() {
    const data = await call("GET", "usage/idle");
    const tbody = body("idle-table");
    for (const h of data.idle) {
      const tr = document.createElement("tr");
      cell(tr, h.user + (h.server ? ":" + h.server : ""));
      cell(tr, h.profile);
      cell(tr, h.gpus.join(", "));
      cell(tr, when(h.held_since));
      cell(tr, duration(h.idle_seconds));
      tbody.appendChild(tr);
    }
    empty(tbody, data.readings === null ? "No utilisation readings yet (the agent sends them every [reclaim] check_interval)." : "Every held GPU was busy at its latest reading.");
    document.getElementById("idle-note").textContent =
      "Servers whose GPUs were all at or below " + data.threshold + " % utilisation at the latest reading, the longest idle first" +
      (data.readings === "simulated" ? " [SIMULATED readings]" : "") + ".";
  }

  async function loadUsage() {
    const data = await call("GET", "usage?" + usageQuery({}));
    document.getElementById("usage-by").textContent = data.by === "group" ? "Group" : "User";
    const tbody = body("usage-table");
    for (const t of data.totals) {
      const tr = document.createElement("tr");
      cell(tr, t[data.by]);
      cell(tr, t.gpu_hours.toFixed(2));
      cell(tr, t.measured_gpu_hours.toFixed(2));
      cell(tr, t.measured_gpu_hours ? t.busy_gpu_hours.toFixed(2) : "");
      cell(tr, t.busy_share === null ? "not measured" : Math.round(t.busy_share * 100) + " %");
      tbody.appendChild(tr);
    }
    empty(tbody, "No GPU-hours from " + data.since.slice(0, 10) + " to " + data.until.slice(0, 10) + " (UTC): nobody held a GPU in this range.");
    document.getElementById("usage-readings").textContent = READINGS[data.readings] || "";
    await loadIdle();
    chart(data.daily_gpu_hours);
    document.getElementById("usage-csv").href = api + "usage?" + usageQuery({ format: "csv" });
    document.getElementById("usage-records-csv").href = api + "usage?" + usageQuery({ format: "csv", records: "true" });
  }

  document.getElementById("usage-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await loadUsage();
      say(null);
    } catch (e) {
      say(errorBox, e.message);
    }
  });

  // --- queue --------------------------------------------------------------------------------------
  async function loadQueue() {
    const data = await call("GET", "queue");
    document.getElementById("queue-policy").textContent = data.policy === "fair-share"
      ? "Lines in fair-share order ([fairness]): priority, one start per person at a time, recent GPU-hours, then arrival."
      : "Lines in arrival order ([fairness] policy = \"fifo\").";
    const tbody = body("queue-table");
    for (const q of data.waiting) {
      const tr = document.createElement("tr");
      cell(tr, q.ticket);
      cell(tr, q.holder);
      cell(tr, q.profile);
      cell(tr, q.pool);
      cell(tr, q.position + " of " + q.in_line);
      cell(tr, q.order);
      cell(tr, q.since + " (" + duration(q.waiting_seconds) + ")");
      const actions = cell(tr, "");
      if (canChange) {
        button(actions, "Remove", "btn-outline-danger", async () => {
          if (!window.confirm("Take " + q.holder + " out of the line? Their start ends with a message.")) return;
          try {
            await call("DELETE", "queue/" + q.ticket);
            await loadQueue();
            say(okBox, "Removed " + q.holder + " from the line");
          } catch (e) {
            say(errorBox, e.message);
          }
        });
      }
      tbody.appendChild(tr);
    }
    empty(tbody, "Nobody is waiting for a GPU: every start that asked for one got it (a start waits here only while no GPU of its kind is free).");
  }

  // --- batch jobs -------------------------------------------------------------------------------------
  async function loadJobs() {
    const data = await call("GET", "jobs");
    const tbody = body("jobs-table");
    for (const j of data.jobs) {
      const tr = document.createElement("tr");
      cell(tr, j.id);
      cell(tr, j.user);
      cell(tr, j.name).title = j.command.join(" ");
      cell(tr, j.profile);
      cell(tr, j.state + (j.reason ? ": " + j.reason : ""));
      cell(tr, when(j.submitted));
      cell(tr, j.started ? duration(Math.round(((j.ended ? Date.parse(j.ended) : Date.now()) - Date.parse(j.started)) / 1000)) : "");
      cell(tr, j.gpus.length ? j.gpus.join(", ") : "none", "small font-monospace");
      cell(tr, j.gpu_hours === null ? "" : j.gpu_hours.toFixed(2));
      const actions = cell(tr, "");
      if (canChange && !j.ended) {
        button(actions, "Cancel", "btn-outline-danger", async () => {
          if (!window.confirm("Cancel " + j.user + "'s job " + j.id + " (" + j.name + ")?")) return;
          try {
            await call("DELETE", "users/" + encodeURIComponent(j.user) + "/jobs/" + j.id);
            say(okBox, "Job " + j.id + " of " + j.user + " cancelled");
            setTimeout(loadJobs, 2500);
          } catch (e) {
            say(errorBox, e.message);
          }
        });
      }
      tbody.appendChild(tr);
    }
    empty(tbody, "No batch job yet (gpuhub job submit, or POST users/NAME/jobs).");
  }

  // --- nodes (a Swarm) ------------------------------------------------------------------------------
  async function loadNodes() {
    const data = await call("GET", "nodes");
    const tbody = body("nodes-table");
    for (const n of data.nodes) {
      const tr = document.createElement("tr");
      tr.dataset.node = n.hostname;
      cell(tr, n.hostname);
      cell(tr, n.role);
      cell(tr, n.state + (n.availability !== "active" ? " (" + n.availability + ")" : ""), "gpuhub-node-" + n.state);
      cell(tr, n.takes_servers ? "yes" : "no: " + n.why_not);
      const free = n.takes_servers ? Math.max(0, n.gpus - n.gpus_held) : 0;
      cell(tr, free + " / " + n.gpus_held + " / " + n.gpus + (n.mig_slices ? " (" + n.mig_slices + " MIG slices)" : ""));
      cell(tr, (n.source || "none yet") + (n.simulated ? " (SIMULATED)" : ""));
      cell(tr, n.reported || "never");
      tbody.appendChild(tr);
    }
    empty(tbody, "No nodes: the hub's engine is " + data.engine + ". Join GPU nodes to the Swarm (docs/scale-out.md).");
    const homes = (await call("GET", "homes")).homes;
    const hbody = body("homes-table");
    for (const h of homes) {
      const tr = document.createElement("tr");
      cell(tr, h.user);
      cell(tr, h.node);
      cell(tr, h.since);
      hbody.appendChild(tr);
    }
    empty(hbody, "No home lives on a node yet (a user's first server makes one; with shared homes, none ever does).");
  }

  // --- tabs ---------------------------------------------------------------------------------------
  const loaders = { gpus: loadGpus, quotas: loadQuotas, usage: loadUsage, queue: loadQueue, jobs: loadJobs };
  if (document.getElementById("tab-nodes")) loaders.nodes = loadNodes;
  async function show(tab) {
    for (const b of root.querySelectorAll("[data-tab]")) b.classList.toggle("active", b.dataset.tab === tab);
    for (const s of root.querySelectorAll(".gpuhub-tab")) s.classList.toggle("d-none", s.id !== "tab-" + tab);
    try {
      await loaders[tab]();
    } catch (e) {
      say(errorBox, e.message);
    }
  }
  for (const b of root.querySelectorAll("[data-tab]")) b.addEventListener("click", () => show(b.dataset.tab));
  show(location.hash.slice(1) in loaders ? location.hash.slice(1) : "gpus");
})();
