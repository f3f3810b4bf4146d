// Shared by gpuhub's pages (admin.js, sessions.js): the REST client over /hub/api/gpuhub/v1 (JupyterHub's
// XSRF token on writes; errors carry the API's message and field), the message boxes, table cells,
// the line an empty table shows, and how a time is shown.
// Text only through textContent: names are user-chosen.
window.gpuhubPage = (function () {
  "use strict";
  const base = (window.jhdata && window.jhdata.base_url) || "/hub/";
  const api = base + "api/gpuhub/v1/";

  function say(box, text) {
    const errorBox = document.getElementById("gpuhub-error");
    const okBox = document.getElementById("gpuhub-ok");
    errorBox.classList.add("d-none");
    okBox.classList.add("d-none");
    if (box && text) {
      box.textContent = text;
      box.classList.remove("d-none");
    }
  }

  function headersFor(accept) {
    const headers = { Accept: accept };
    if (window.jhdata && window.jhdata.xsrf_token) headers["X-XSRFToken"] = window.jhdata.xsrf_token;
    return headers;
  }

  async function call(method, path, body) {
    const headers = headersFor("application/json");
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(api + path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 204) return null;
    const data = await response.json().catch(() => ({ message: response.statusText }));
    if (!response.ok) {
      const err = new Error(data.message || response.statusText);
      err.field = data.field;
      throw err;
    }
    return data;
  }

  // A plain-text answer (a job's output); errors as ``call``'s.
  async function text(path) {
    const response = await fetch(api + path, { headers: headersFor("text/plain"), credentials: "same-origin" });
    if (!response.ok) {
      const data = await response.json().catch(() => ({ message: response.statusText }));
      throw new Error(data.message || response.statusText);
    }
    return response.text();
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function button(td, label, cls, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "btn btn-sm " + cls;
    b.textContent = label;
    b.addEventListener("click", onClick);
    td.appendChild(b);
    return b;
  }

  function body(id) {
    const tbody = document.querySelector("#" + id + " tbody");
    tbody.replaceChildren();
    return tbody;
  }

  // An empty table says what its emptiness means: one row across every column, class gpuhub-empty.
  function empty(tbody, text) {
    if (tbody.rows.length) return;
    const tr = document.createElement("tr");
    tr.className = "gpuhub-empty";
    const td = cell(tr, text, "text-muted");
    td.colSpan = tbody.closest("table").querySelectorAll("thead th").length || 1;
    tbody.appendChild(tr);
  }

  // How the pages name a time from the API (ISO 8601 UTC): the full date and the minute, "2026-12-01 22:00".
  function when(iso) {
    return iso ? iso.replace("T", " ").slice(0, 16) : "";
  }

  return { api, call, text, say, cell, button, body, empty, when };
})();
