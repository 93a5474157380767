// Impact practice page. No dependencies, no inline code (strict CSP), and
// API data only ever reaches the page through textContent.
//
// Where the token comes from, as on the patient page:
//   - development (--dev): the token field;
//   - otherwise: the practice portal stores it in sessionStorage under the
//     key "impact_practice_token" before sending the user here, or passes
//     it once in the URL fragment (#token=...&incident=...), which is read
//     and removed from the address bar at once. Never in a query parameter.
//
// The register is read in the browser and checked in batches through
// POST /v1/incidents/{id}/practice/patients:check; only the practice's own
// patients come back. A register is shown whole or not at all: if a batch
// fails, no list is shown; if the incident is updated while it is checked,
// it is checked again, so every row comes from one snapshot version.
"use strict";

(function () {
  var STORAGE_KEY = "impact_practice_token";
  var BATCH = 1000; // ids per call (the API takes up to 10,000)
  var MAX_ID_BYTES = 128;
  var dev = document.body.getAttribute("data-mode") === "dev";
  var summary = document.getElementById("summary");
  var results = document.getElementById("results");
  var register = document.getElementById("register");
  var fileInput = document.getElementById("register-file");
  var progressArea = document.getElementById("progress-area");
  var progress = document.getElementById("progress");
  var progressText = document.getElementById("progress-text");
  var download = document.getElementById("download");
  var incidentInput = document.getElementById("incident");
  var token = "";
  var incident = "";
  var downloadURL = "";

  var STATUS_WORDS = { AFFECTED: "Affected", NOT_AFFECTED: "Not affected", UNDER_REVIEW: "Under review" };

  var el = ImpactPage.el; // common.js

  var readableCategory = ImpactPage.readableCategory; // common.js

  function formatDate(ts) {
    var d = new Date(ts);
    if (isNaN(d.getTime())) return String(ts);
    try {
      return d.toLocaleString(document.documentElement.lang, { dateStyle: "medium", timeStyle: "short" });
    } catch (e) {
      return d.toString();
    }
  }

  function setRegion(region, state, nodes) {
    region.setAttribute("data-state", state);
    region.setAttribute("aria-busy", state === "loading" || state === "running" ? "true" : "false");
    region.replaceChildren.apply(region, nodes);
  }

  function ApiError(code) {
    this.code = code;
  }

  function call(method, path, body) {
    var init = {
      method: method,
      headers: { Authorization: "Bearer " + token, Accept: "application/json" },
      credentials: "omit",
      cache: "no-store",
      redirect: "error"
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (r) {
      if (!r.ok) throw new ApiError(r.status);
      return r.json();
    }, function () {
      throw new ApiError(0);
    });
  }

  function errorText(e) {
    var code = e instanceof ApiError ? e.code : -1;
    switch (code) {
      case 401:
        return dev ? "Please sign in again: the token was not accepted. Paste a new token."
          : "Please sign in again through the practice portal.";
      case 403:
        return "This page is for general practices: your sign-in is not a practice's.";
      case 404:
        return "This incident is not known, or nothing has been published for it yet.";
      case 429:
        return "Too many patients were checked in a short time. Please wait a minute and try again.";
      case 0:
      case 503:
        return "The service is temporarily unavailable. Please try again in a moment.";
    }
    return "Something went wrong. Please try again later.";
  }

  function cell(tr, text, cls, header) {
    var c = el(header ? "th" : "td", cls, text);
    if (header) c.setAttribute("scope", "row");
    tr.appendChild(c);
    return c;
  }

  function renderSummary(s) {
    var box = el("section", s.affected ? "affected" : "clear");
    box.appendChild(el("h2", "", s.incident_title || s.incident_id));
    var total = (s.affected_patients || 0) + (s.under_review_patients || 0);
    box.appendChild(el("p", "headline", s.affected
      ? "Your practice is affected: " + total + (total === 1 ? " patient" : " patients")
      : "Your practice has no affected patients in this incident"));

    var wrap = el("div", "table-wrap");
    var table = el("table", "cohort-table");
    table.appendChild(el("caption", "", "Your patients, per cohort"));
    var head = el("tr");
    ["Cohort", "Affected", "Under review", "Notified", "Notice due"].forEach(function (h) {
      var th = el("th", "", h);
      th.setAttribute("scope", "col");
      head.appendChild(th);
    });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var tbody = el("tbody");
    (s.cohorts || []).forEach(function (c) {
      var tr = el("tr", "cohort");
      var th = cell(tr, "", "", true);
      th.appendChild(el("span", "cohort-title", c.title || c.cohort_id));
      var cats = (c.data_categories || []).map(readableCategory);
      if (cats.length) th.appendChild(el("span", "guidance", "Information concerned: " + cats.join(", ")));
      if (c.practice_guidance) th.appendChild(el("span", "guidance practice-guidance", c.practice_guidance));
      cell(tr, String(c.affected || 0), "num");
      cell(tr, String(c.under_review || 0), "num");
      cell(tr, String(c.notified || 0), "num");
      cell(tr, String(c.due || 0), "num");
      tbody.appendChild(tr);
    });
    var tot = el("tr", "totals");
    cell(tot, "All cohorts (each patient once)", "", true);
    cell(tot, String(s.affected_patients || 0), "num");
    cell(tot, String(s.under_review_patients || 0), "num");
    cell(tot, String(s.notified || 0), "num");
    cell(tot, String(s.due || 0), "num");
    tbody.appendChild(tot);
    table.appendChild(tbody);
    wrap.appendChild(table);
    box.appendChild(wrap);
    if (s.corrections_due) {
      box.appendChild(el("p", "pending", s.corrections_due + " of your patients who were told they were affected are now not affected; a correction is on its way to them."));
    }

    var pack = s.practice_notice;
    if (pack && (pack.subject || pack.body)) {
      var art = el("article", "pack");
      art.setAttribute("aria-label", "Information for practices");
      if (pack.subject) art.appendChild(el("h3", "pack-subject", pack.subject));
      if (pack.body) art.appendChild(el("div", "pack-body", pack.body));
      box.appendChild(art);
    }
    var meta = "Snapshot version " + s.version;
    if (s.counted_at) meta += "; notified counts as of " + formatDate(s.counted_at);
    box.appendChild(el("p", "meta", meta));
    return box;
  }

  function showSummary() {
    incident = incidentInput.value.trim();
    if (!token) {
      setRegion(summary, "error", [el("p", "message error", dev ? "Please paste a token first." : "Please sign in again through the practice portal.")]);
      return;
    }
    if (!/^[a-z0-9-]{1,64}$/.test(incident)) {
      setRegion(summary, "error", [el("p", "message error", "Please enter the incident id (lower-case letters, digits and dashes).")]);
      return;
    }
    setRegion(summary, "loading", [el("p", "message", "Loading your practice's summary…")]);
    call("GET", "/v1/incidents/" + encodeURIComponent(incident) + "/practice").then(function (s) {
      setRegion(summary, "done", [renderSummary(s)]);
      register.hidden = false;
    }, function (e) {
      register.hidden = true;
      setRegion(summary, "error", [el("p", "message error", errorText(e))]);
    });
  }

  // firstField returns the first CSV field of a line (RFC 4180 quoting).
  function firstField(line) {
    if (line.charAt(0) !== '"') return line.split(",")[0];
    var out = "";
    for (var i = 1; i < line.length; i++) {
      var ch = line.charAt(i);
      if (ch === '"') {
        if (line.charAt(i + 1) === '"') { out += '"'; i++; continue; }
        return out;
      }
      out += ch;
    }
    return out;
  }

  // parseRegister returns the distinct ids of a register and how many
  // lines it left out (empty, repeated, longer than the API takes).
  function parseRegister(text) {
    var lines = text.replace(/^\uFEFF/, "").split(/\r\n|\n|\r/);
    var seen = Object.create(null);
    var ids = [];
    var skipped = 0;
    var enc = new TextEncoder();
    lines.forEach(function (line, i) {
      var id = firstField(line).trim();
      if (i === 0 && /^subject[_ ]?id$/i.test(id)) return; // header
      if (id === "") { if (line.trim() !== "") skipped++; return; }
      if (seen[id] || enc.encode(id).length > MAX_ID_BYTES) { skipped++; return; }
      seen[id] = true;
      ids.push(id);
    });
    return { ids: ids, skipped: skipped };
  }

  function setProgress(done, total) {
    progress.max = Math.max(total, 1);
    progress.value = done;
    progressText.textContent = "Checked " + done + " of " + total + " ids";
  }

  // checkAll checks every batch at one snapshot version: if the version
  // moves while checking, it starts again.
  function checkAll(ids, attempt) {
    var found = [];
    var version = 0;
    var i = 0;
    setProgress(0, ids.length);
    function next() {
      if (i >= ids.length) return Promise.resolve({ version: version, patients: found });
      var batch = ids.slice(i, i + BATCH);
      return call("POST", "/v1/incidents/" + encodeURIComponent(incident) + "/practice/patients:check", { subject_ids: batch })
        .then(function (chk) {
          if (version !== 0 && chk.version !== version) {
            if (attempt >= 3) throw new ApiError(503);
            return checkAll(ids, attempt + 1); // updated meanwhile: all again, at the new version
          }
          version = chk.version;
          found = found.concat(chk.patients || []);
          i += batch.length;
          setProgress(i, ids.length);
          return next();
        });
    }
    return next();
  }

  function notifiedText(p) {
    if (!p.notice_id) return "Not yet notified";
    var s = "Notice " + p.notice_id;
    if (p.notified_at) s += ", " + formatDate(p.notified_at);
    if (p.notified_version) s += " (version " + p.notified_version + ")";
    return s;
  }

  function renderResults(r, total, skipped) {
    var nodes = [];
    var line = r.patients.length + " of the " + total + " ids checked " + (r.patients.length === 1 ? "is" : "are") +
      " your patients in this incident (snapshot version " + r.version + ").";
    if (skipped) line += " " + skipped + " lines were left out (empty, repeated or too long).";
    nodes.push(el("p", "message results-summary", line));
    if (r.patients.length === 0) return nodes;
    var wrap = el("div", "table-wrap");
    var table = el("table", "patients");
    table.appendChild(el("caption", "", "Your patients in this incident"));
    var thead = el("thead");
    var head = el("tr");
    ["Patient id", "Status", "Cohorts", "Notified", "Update"].forEach(function (h) {
      var th = el("th", "", h);
      th.setAttribute("scope", "col");
      head.appendChild(th);
    });
    thead.appendChild(head);
    table.appendChild(thead);
    var tbody = el("tbody");
    r.patients.forEach(function (p) {
      var tr = el("tr", "patient");
      cell(tr, p.subject_id, "", true);
      cell(tr, STATUS_WORDS[p.status] || p.status);
      cell(tr, (p.cohorts || []).map(function (c) { return c.title || c.id; }).join("; "));
      cell(tr, notifiedText(p));
      cell(tr, p.update_pending ? "Pending: now " + (STATUS_WORDS[p.visible_status] || "being checked").toLowerCase() : "", p.update_pending ? "pending" : "");
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    wrap.appendChild(table);
    nodes.push(wrap);
    return nodes;
  }

  // csvCell quotes a value and keeps spreadsheets from reading it as a
  // formula.
  function csvCell(v) {
    var s = String(v === undefined || v === null ? "" : v);
    if (/^[=+\-@\t\r]/.test(s)) s = "'" + s;
    if (/[",\r\n]/.test(s)) s = '"' + s.replace(/"/g, '""') + '"';
    return s;
  }

  function csvOf(patients) {
    var rows = [["subject_id", "status", "cohorts", "notified_version", "notified_at", "notice_id", "update_pending", "visible_status"]];
    patients.forEach(function (p) {
      rows.push([p.subject_id, p.status, (p.cohorts || []).map(function (c) { return c.id; }).join(";"),
        p.notified_version || "", p.notified_at || "", p.notice_id || "", p.update_pending ? "true" : "false", p.visible_status]);
    });
    return rows.map(function (r) { return r.map(csvCell).join(","); }).join("\r\n") + "\r\n";
  }

  function setDownload(patients) {
    if (downloadURL) URL.revokeObjectURL(downloadURL);
    downloadURL = "";
    download.hidden = true;
    download.removeAttribute("href");
    if (!patients || patients.length === 0) return;
    downloadURL = URL.createObjectURL(new Blob([csvOf(patients)], { type: "text/csv;charset=utf-8" }));
    download.href = downloadURL;
    download.hidden = false;
  }

  function checkRegister() {
    var f = fileInput.files && fileInput.files[0];
    setDownload(null);
    if (!f) return;
    setRegion(results, "running", [el("p", "message", "Reading the register…")]);
    f.text().then(function (text) {
      var reg = parseRegister(text);
      if (reg.ids.length === 0) {
        setRegion(results, "error", [el("p", "message error", "The file holds no patient ids.")]);
        return;
      }
      progressArea.hidden = false;
      setRegion(results, "running", [el("p", "message", "Checking " + reg.ids.length + " ids…")]);
      return checkAll(reg.ids, 1).then(function (r) {
        setRegion(results, "done", renderResults(r, reg.ids.length, reg.skipped));
        setDownload(r.patients);
      });
    }).catch(function (e) {
      setDownload(null);
      setRegion(results, "error", [el("p", "message error", "The check stopped and no list is shown: " + errorText(e))]);
    });
  }

  function fromPortal() {
    var h = window.location.hash.replace(/^#/, "");
    var params = {};
    h.split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0) {
        try { params[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1)); } catch (e) { /* ignore */ }
      }
    });
    if (h) history.replaceState(null, "", window.location.pathname);
    if (params.incident) incidentInput.value = params.incident;
    if (params.token) return params.token;
    try {
      return window.sessionStorage.getItem(STORAGE_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  var portalToken = fromPortal();
  if (dev) document.getElementById("dev-token").hidden = false;
  document.getElementById("sign-in").addEventListener("submit", function (ev) {
    ev.preventDefault();
    token = dev ? document.getElementById("token").value.trim().replace(/^Bearer\s+/i, "") : portalToken;
    showSummary();
  });
  fileInput.addEventListener("change", checkRegister);
  if (!dev && portalToken && incidentInput.value) {
    token = portalToken;
    showSummary();
  }
})();
