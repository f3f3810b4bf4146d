// The home page's overview (templates/home.html): the person's servers and GPUs, notices, quota meters,
// class windows and GPU-hours per week, from GET users/NAME/overview. Text only through textContent.
(function () {
  "use strict";
  const { call, text, say, cell, button, body, empty, when } = window.gpuhubPage;
  const base = (window.jhdata && window.jhdata.base_url) || "/hub/";
  const root = document.getElementById("gpuhub-home");
  const user = root.dataset.user;

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 120) return seconds + " s";
    if (seconds < 7200) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  function meter(title, used, limit, unit, source) {
    const box = document.createElement("div");
    box.className = "mb-3 gpuhub-meter";
    const label = document.createElement("div");
    label.className = "d-flex justify-content-between small";
    const name = document.createElement("span");
    name.textContent = title;
    const figure = document.createElement("span");
    figure.className = "gpuhub-meter-figure";
    figure.textContent = limit === null
      ? used + " " + unit + " (no limit)"
      : used + " of " + limit + " " + unit + " (" + Math.max(0, +(limit - used).toFixed(2)) + " left)";
    label.append(name, figure);
    const bar = document.createElement("div");
    bar.className = "progress";
    bar.setAttribute("role", "progressbar");
    const share = limit ? Math.min(100, (100 * used) / limit) : 0;
    bar.setAttribute("aria-valuenow", String(Math.round(share)));
    bar.setAttribute("aria-label", title);
    const fill = document.createElement("div");
    fill.className = "progress-bar" + (share >= 90 ? " bg-danger" : share >= 70 ? " bg-warning" : "");
    fill.style.width = share + "%";
    bar.appendChild(fill);
    const from = document.createElement("div");
    from.className = "text-muted small";
    from.textContent = "Limit from: " + source;
    box.append(label, bar, from);
    return box;
  }

  function render(data) {
    const notices = document.getElementById("gpuhub-notices");
    notices.replaceChildren();
    for (const n of data.notices) {
      const div = document.createElement("div");
      div.className = "alert " + (n.level === "info" ? "alert-info" : "alert-warning");
      div.textContent = n.message;
      notices.appendChild(div);
    }

    const servers = body("gpuhub-servers");
    for (const s of data.servers) {
      const tr = document.createElement("tr");
      cell(tr, s.name || "(default)");
      cell(tr, (s.profile || "") + (s.pending ? " (" + s.pending + ")" : ""));
      const gpus = cell(tr, s.gpus.map((g) => g.model + " · " + g.mode + (g.node ? " · " + g.node : "")).join(", ") || "none");
      if (s.borrowed) {
        const mark = document.createElement("span");
        mark.className = "label label-warning gpuhub-borrowed";
        mark.textContent = s.taken_back_at ? "borrowed: stops " + when(s.taken_back_at) : "borrowed";
        mark.title = "Beyond your GPU quota: stopped (files kept, after a warning) when someone within their quota needs the GPU";
        gpus.appendChild(document.createTextNode(" "));
        gpus.appendChild(mark);
      }
      cell(tr, when(s.started));
      cell(tr, duration(s.idle_seconds));
      servers.appendChild(tr);
    }
    empty(servers, "No server running: start one above.");

    const classes = body("gpuhub-classes");
    for (const c of data.classes) {
      const tr = document.createElement("tr");
      cell(tr, c.title);
      cell(tr, c.open_until ? "open now, until " + when(c.open_until) : "opens " + when(c.next_start));
      const link = cell(tr, "");
      if (c.open_until) {
        const a = document.createElement("a");
        a.href = base + "spawn?session=" + encodeURIComponent(c.session);
        a.className = "btn btn-sm btn-primary";
        a.textContent = "Start";
        link.appendChild(a);
      }
      classes.appendChild(tr);
    }
    empty(classes, "No class window ahead for you.");

    const limits = data.quota.limits;
    const meters = document.getElementById("gpuhub-meters");
    meters.replaceChildren(
      meter("GPUs held", data.gpus_held, limits.max_gpus.value, "GPU(s)", limits.max_gpus.source),
      meter("Shared GPU slots held", data.shared_held, limits.max_shared_slices.value, "slot(s)", limits.max_shared_slices.source),
      meter("GPU-hours " + data.week_text, +data.quota.gpu_hours_used.toFixed(2), limits.gpu_hours_per_week.value, "GPU-hours",
            limits.gpu_hours_per_week.source),
    );

    const weeks = document.getElementById("gpuhub-weeks");
    weeks.replaceChildren();
    const most = Math.max(0.01, ...data.gpu_hours_by_week.map((w) => w.gpu_hours));
    const summary = [];
    for (const w of data.gpu_hours_by_week) {
      const bar = document.createElement("div");
      bar.className = "bg-primary flex-fill gpuhub-week";
      bar.style.height = Math.max(1, (100 * w.gpu_hours) / most) + "%";
      bar.title = "week of " + when(w.week_start).slice(0, 10) + ": " + w.gpu_hours.toFixed(2) + " GPU-hours";
      weeks.appendChild(bar);
      summary.push(bar.title);
    }
    weeks.setAttribute("aria-label", summary.join("; "));
    document.getElementById("gpuhub-simulated").textContent = data.simulated ? "(SIMULATED GPUs)" : "";
  }

  const errorBox = document.getElementById("gpuhub-error");
  const okBox = document.getElementById("gpuhub-ok");
  const keysPath = "users/" + encodeURIComponent(user) + "/ssh-keys";

  async function loadKeys() {
    const data = await call("GET", keysPath);
    const section = document.getElementById("gpuhub-ssh");
    section.classList.toggle("d-none", !data.ssh.enabled);
    if (!data.ssh.enabled) return;
    document.getElementById("gpuhub-ssh-command").textContent = "ssh -p " + data.ssh.port + " " + data.ssh.user + "@" + window.location.hostname;
    const tbody = body("gpuhub-ssh-keys");
    for (const k of data.keys) {
      const tr = document.createElement("tr");
      cell(tr, k.algorithm + (k.comment ? " " + k.comment : ""));
      cell(tr, k.fingerprint, "font-monospace small");
      cell(tr, when(k.added));
      cell(tr, k.last_used ? when(k.last_used) : "never");
      button(cell(tr, ""), "Remove", "btn-outline-danger", async () => {
        if (!window.confirm("Remove the key " + k.fingerprint + "? SSH with it stops working.")) return;
        try {
          await call("DELETE", keysPath + "/" + k.id);
          await loadKeys();
          say(okBox, "Key removed: " + k.fingerprint);
        } catch (e) {
          say(errorBox, e.message);
        }
      });
      tbody.appendChild(tr);
    }
    empty(tbody, "No key yet: add one below to use SSH.");
  }

  document.getElementById("gpuhub-ssh-add").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("gpuhub-ssh-key");
    try {
      const added = await call("POST", keysPath, { key: input.value });
      input.value = "";
      await loadKeys();
      say(okBox, "Key added: " + added.fingerprint);
    } catch (e) {
      say(errorBox, e.message);
    }
  });

  const jobsPath = "users/" + encodeURIComponent(user) + "/jobs";

  async function showOutput(job) {
    const pre = document.getElementById("gpuhub-job-output");
    const output = await text(jobsPath + "/" + job.id + "/output");
    pre.textContent = "job " + job.id + " (" + job.state + ")" + (job.reason ? ": " + job.reason : "") + "\n" + output;
    pre.classList.remove("d-none");
  }

  async function loadJobs() {
    const data = await call("GET", jobsPath);
    const tbody = body("gpuhub-job-list");
    for (const j of data.jobs) {
      const tr = document.createElement("tr");
      tr.dataset.job = String(j.id);
      cell(tr, String(j.id));
      cell(tr, j.name).title = j.command.join(" ");
      cell(tr, j.profile);
      cell(tr, j.state + (j.exit_code !== null && j.state !== "succeeded" ? " (exit " + j.exit_code + ")" : "")).title = j.reason || "";
      cell(tr, when(j.submitted));
      cell(tr, j.started ? duration(Math.round(((j.ended ? Date.parse(j.ended) : Date.now()) - Date.parse(j.started)) / 1000)) : "");
      cell(tr, j.gpu_hours === null ? "" : j.gpu_hours.toFixed(2));
      const actions = cell(tr, "");
      button(actions, "Output", "btn-outline-secondary", () => showOutput(j).catch((e) => say(errorBox, e.message)));
      if (!j.ended) {
        button(actions, "Cancel", "btn-outline-danger", async () => {
          if (!window.confirm("Cancel job " + j.id + " (" + j.name + ")?" + (j.state === "running" ? " It is stopped now." : ""))) return;
          try {
            await call("DELETE", jobsPath + "/" + j.id);
            say(okBox, "Job " + j.id + " cancelled.");
            setTimeout(loadJobs, 2500);
          } catch (e) {
            say(errorBox, e.message);
          }
        });
      }
      tbody.appendChild(tr);
    }
    empty(tbody, "No batch job yet.");
  }

  call("GET", "users/" + encodeURIComponent(user) + "/overview")
    .then(render)
    .then(loadJobs)
    .then(loadKeys)
    .catch((e) => say(errorBox, e.message));
})();
