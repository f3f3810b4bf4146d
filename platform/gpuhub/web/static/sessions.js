// gpuhub sessions page: the instructor's sessions, a new session, its roster import (the report),
// prewarm and stop all. Over /hub/api/gpuhub/v1/sessions through gpuhubPage (page.js).
(function () {
  "use strict";
  const root = document.querySelector(".gpuhub-sessions");
  if (!root) return;
  const { call, say, cell, button, body, empty, when } = window.gpuhubPage;
  const errorBox = document.getElementById("gpuhub-error");
  const okBox = document.getElementById("gpuhub-ok");
  const canCreate = root.dataset.canCreate === "true";
  const base = (window.jhdata && window.jhdata.base_url) || "/hub/";
  let current = null;

  function list(text) {
    return text.split(",").map((s) => s.trim()).filter(Boolean);
  }

  function utc(value) {
    return value ? value + (value.length === 16 ? ":00Z" : "Z") : "";
  }

  // Both ends with their dates: a window may end on another day ("2026-12-01 22:00 to 2026-12-02 00:00").
  function windowsText(windows) {
    return windows.map((w) => when(w.start) + " to " + when(w.end)).join("; ");
  }

  async function loadSessions() {
    const data = await call("GET", "sessions");
    const select = document.getElementById("s-profile");
    if (select && !select.options.length) {
      for (const p of data.profiles) {
        const o = document.createElement("option");
        o.value = p.name;
        o.textContent = p.title + " (" + p.name + ")";
        select.appendChild(o);
      }
    }
    document.getElementById("sessions-devices").textContent =
      "GPUs to reserve: " + (data.devices.map((d) => d.index + " " + d.name).join(", ") || "none on this hub") +
      (data.simulated ? " (SIMULATED inventory)" : "");
    const tbody = body("sessions-table");
    for (const s of data.sessions) {
      const tr = document.createElement("tr");
      tr.dataset.session = s.name;
      cell(tr, (s.title || s.name) + " (" + s.name + ")");
      cell(tr, s.profile + (s.devices.length ? " · " + s.devices.length + " GPU(s) reserved" : "") +
        (s.group_work ? " · group work: its students' servers reach each other" : ""));
      cell(tr, windowsText(s.windows));
      cell(tr, s.open_now ? "open until " + when(s.open_until) : s.next_start ? "opens " + when(s.next_start) : "over");
      cell(tr, s.roster_size);
      cell(tr, window.location.origin + base.replace(/hub\/$/, "") + s.start_link.replace(/^\//, ""));
      const actions = cell(tr, "");
      button(actions, "Roster", "btn-outline-secondary me-1", () => showDetail(s.name));
      button(actions, "Prewarm now", "btn-outline-primary me-1", () => act(s.name, "prewarm"));
      button(actions, "Stop all", "btn-outline-danger", () => {
        if (window.confirm("Stop every server started for " + (s.title || s.name) + "?\nThe students' files are kept.")) act(s.name, "stop");
      });
      tbody.appendChild(tr);
    }
    empty(tbody, canCreate ? "No sessions yet: create one with the form below." : "No sessions yet: an instructor's sessions show here.");
  }

  async function act(name, action) {
    try {
      await call("POST", "sessions/" + encodeURIComponent(name) + "/" + action);
      await loadSessions();
      say(okBox, (action === "prewarm" ? "Prewarm" : "Stop all") + " requested for " + name + ": the agent carries it out within seconds");
    } catch (e) {
      say(errorBox, e.message);
    }
  }

  async function showDetail(name) {
    const data = await call("GET", "sessions/" + encodeURIComponent(name));
    current = name;
    document.getElementById("session-detail").classList.remove("d-none");
    document.getElementById("detail-title").textContent = "Roster of " + (data.title || data.name) + " (" + data.roster.length + ")";
    const tbody = body("roster-table");
    for (const r of data.roster) {
      const tr = document.createElement("tr");
      tr.dataset.username = r.username;
      cell(tr, r.username);
      cell(tr, r.name);
      cell(tr, r.email);
      cell(tr, r.server.running ? (r.server.session === name ? "running (session)" : "running (other)") : "stopped");
      const actions = cell(tr, "");
      button(actions, "Remove", "btn-outline-secondary btn-sm", async () => {
        try {
          await call("DELETE", "sessions/" + encodeURIComponent(name) + "/roster/" + encodeURIComponent(r.username));
          await showDetail(name);
          say(okBox, "Took " + r.username + " off the roster");
        } catch (e) {
          say(errorBox, e.message);
        }
      });
      tbody.appendChild(tr);
    }
    empty(tbody, "No roster yet: nobody can start this session but its instructors. Import a CSV above.");
  }

  function report(data) {
    document.getElementById("roster-report").classList.remove("d-none");
    document.getElementById("roster-counts").textContent =
      data.added + " added, " + data.already_present + " already present, " + data.duplicates + " duplicate row(s), " + data.invalid + " invalid row(s)";
    const tbody = body("roster-problems");
    for (const r of data.duplicate_rows.concat(data.invalid_rows)) {
      const tr = document.createElement("tr");
      cell(tr, r.row);
      cell(tr, r.reason);
      cell(tr, r.text || r.username);
      tbody.appendChild(tr);
    }
    empty(tbody, "No problems: every row was read.");
  }

  document.getElementById("roster-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = document.getElementById("roster-file").files[0];
    if (!file || !current) return say(errorBox, "Choose a CSV file first");
    try {
      // as JSON: JupyterHub refuses a cookie-authenticated POST of text/csv
      const data = await call("POST", "sessions/" + encodeURIComponent(current) + "/roster", { csv: await file.text() });
      await showDetail(current);
      await loadSessions();
      report(data);
      say(okBox, "Imported the roster of " + current);
    } catch (e) {
      say(errorBox, e.message);
    }
  });

  const form = document.getElementById("session-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      for (const input of form.querySelectorAll(".is-invalid")) input.classList.remove("is-invalid");
      const value = (id) => document.getElementById("s-" + id).value.trim();
      const name = value("name");
      const prewarm = value("prewarm_minutes");
      const sessionBody = {
        title: value("title"),
        profile: value("profile"),
        windows: [{ start: utc(value("start")), end: utc(value("end")) }],
        devices: list(value("devices")),
        datasets: list(value("datasets")),
        instructors: list(value("instructors")),
        prewarm_minutes: /^\d+$/.test(prewarm) ? Number(prewarm) : prewarm,
        shared_folder: document.getElementById("s-shared_folder").checked,
        group_work: document.getElementById("s-group_work").checked,
        stop_at_end: document.getElementById("s-stop_at_end").checked,
      };
      try {
        await call("PUT", "sessions/" + encodeURIComponent(name || "-"), sessionBody);
        await loadSessions();
        await showDetail(name);
        say(okBox, "Saved session " + name);
      } catch (e) {
        const input = form.querySelector('[name="' + (e.field || "") + '"]');
        if (input) input.classList.add("is-invalid");
        say(errorBox, e.message);
      }
    });
  }

  loadSessions().catch((e) => say(errorBox, e.message));
})();
