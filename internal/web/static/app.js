// Impact patient page. No dependencies, no inline code (strict CSP), and
// API data only ever reaches the page through textContent.
//
// Where the token comes from:
//   - development (--dev): the token field of the form;
//   - otherwise: the portal either stores it in sessionStorage under the key
//     "impact_token" before sending the patient here, or passes it once in
//     the URL fragment (#token=...), which is read and removed from the
//     address bar at once. Never in a query parameter (it would reach logs).
"use strict";

(function () {
  var STORAGE_KEY = "impact_token";
  var dev = document.body.getAttribute("data-mode") === "dev";
  var result = document.getElementById("result");
  var token = "";
  // Highest version shown per incident: a refresh is never answered from
  // an older snapshot (at_least_version).
  var shown = {};

  var HEADLINES = {
    AFFECTED: "You are affected",
    NOT_AFFECTED: "You are not affected",
    UNDER_REVIEW: "We are still checking whether you are affected"
  };
  var STATUS_WORDS = {
    AFFECTED: "affected",
    NOT_AFFECTED: "not affected",
    UNDER_REVIEW: "under review"
  };
  var ACRONYMS = { nhi: "NHI", gp: "GP", id: "ID", dob: "date of birth" };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // discharge_summary -> "Discharge summary", nhi_number -> "NHI number".
  function readableCategory(c) {
    var words = String(c).split(/[_\s]+/).filter(Boolean).map(function (w) {
      return ACRONYMS[w.toLowerCase()] || w.toLowerCase();
    });
    var s = words.join(" ");
    return s.charAt(0).toUpperCase() + s.slice(1);
  }

  function formatDate(ts) {
    var d = new Date(ts);
    if (isNaN(d.getTime())) return String(ts);
    try {
      return d.toLocaleString(document.documentElement.lang, { dateStyle: "long", timeStyle: "short" });
    } catch (e) {
      return d.toString();
    }
  }

  function setState(state, nodes) {
    result.setAttribute("data-state", state);
    result.setAttribute("aria-busy", state === "loading" ? "true" : "false");
    result.replaceChildren.apply(result, nodes);
  }

  function message(state, text, cls) {
    setState(state, [el("p", cls || "message", text)]);
  }

  function renderAnswer(a) {
    var status = a.status;
    var card = el("section", "incident status-" + String(status).toLowerCase());
    var h2 = el("h2", "", a.incident_title || a.incident_id);
    card.appendChild(h2);
    card.appendChild(el("p", "headline", HEADLINES[status] || "Your status is not available"));

    if (a.update_pending) {
      var up = el("div", "update-pending");
      up.setAttribute("role", "note");
      var first = el("p");
      first.appendChild(el("strong", "", "Update pending: "));
      first.appendChild(document.createTextNode("our records about you have changed since we last wrote to you. " +
        "Your status is now: " + (STATUS_WORDS[a.visible_status] || "being checked") + "."));
      up.appendChild(first);
      up.appendChild(el("p", "", "A new notice is on its way to you. Until it arrives, this page shows what we last told you."));
      card.appendChild(up);
    }

    var cohorts = a.cohorts || [];
    if (cohorts.length > 0) {
      card.appendChild(el("h3", "", "What this concerns"));
      var ul = el("ul", "cohorts");
      cohorts.forEach(function (c) {
        var li = el("li");
        li.appendChild(el("span", "cohort-title", c.title || c.id));
        var cats = (c.data_categories || []).map(readableCategory);
        if (cats.length > 0) {
          li.appendChild(el("span", "categories", "Information concerned: " + cats.join(", ")));
        }
        ul.appendChild(li);
      });
      card.appendChild(ul);
    }

    var n = a.notice;
    if (n && (n.subject || n.body)) {
      var notice = el("article", "notice");
      notice.setAttribute("aria-label", "Notice");
      if (n.subject) notice.appendChild(el("h3", "notice-subject", n.subject));
      if (n.body) notice.appendChild(el("div", "notice-body", n.body));
      card.appendChild(notice);
    }
    if (status === "AFFECTED" && n && n.support_contact) {
      var sc = el("p", "support");
      sc.appendChild(el("strong", "", "Support for affected patients: "));
      sc.appendChild(document.createTextNode(n.support_contact));
      card.appendChild(sc);
    }

    var meta = el("dl", "meta");
    function row(k, v) {
      meta.appendChild(el("dt", "", k));
      meta.appendChild(el("dd", "", v));
    }
    row("Snapshot version", String(a.version));
    if (a.notice_id) {
      row("Notice", a.notice_id);
      if (a.notified_at) row("Notified on", formatDate(a.notified_at));
      if (a.notified_version) row("Notice written from version", String(a.notified_version));
    }
    card.appendChild(meta);
    return card;
  }

  function ApiError(code) {
    this.code = code;
  }

  function get(path) {
    return fetch(path, {
      headers: { Authorization: "Bearer " + token, Accept: "application/json" },
      credentials: "omit",
      cache: "no-store",
      redirect: "error"
    }).then(function (r) {
      if (!r.ok) throw new ApiError(r.status);
      return r.json();
    }, function () {
      throw new ApiError(0);
    });
  }

  // An answer older than one already shown is asked again with
  // at_least_version, so the page never goes back to an older snapshot.
  function atLeastShown(a) {
    var min = shown[a.incident_id] || 0;
    if (a.version >= min) return Promise.resolve(a);
    // The answer is the response body; the server answers at >= min or
    // fails (400, retry), never older.
    return get("/v1/incidents/" + encodeURIComponent(a.incident_id) + "/status?at_least_version=" + min)
      .catch(function (e) {
        throw e instanceof ApiError && e.code === 400 ? new ApiError(503) : e; // not there yet: try again
      });
  }

  function showError(e) {
    var code = e instanceof ApiError ? e.code : -1;
    if (code === 401) {
      message("error", dev ? "Please sign in again: the token was not accepted. Paste a new token."
        : "Please sign in again through the portal to see your status.", "message error");
    } else if (code === 503 || code === 0) {
      message("error", "The service is temporarily unavailable. Please try again in a moment.", "message error");
    } else {
      message("error", "Something went wrong and we could not check your status. Please try again later.", "message error");
    }
  }

  function check() {
    if (!token) {
      message("error", dev ? "Please paste a token first." : "Please sign in again through the portal to see your status.", "message error");
      return;
    }
    message("loading", "Checking your status…");
    get("/v1/status").then(function (body) {
      return Promise.all((body.statuses || []).map(atLeastShown));
    }).then(function (answers) {
      if (answers.length === 0) {
        message("done", "There is no incident to report at the moment.");
        return;
      }
      answers.forEach(function (a) { shown[a.incident_id] = Math.max(shown[a.incident_id] || 0, a.version); });
      setState("done", answers.map(renderAnswer));
    }).catch(showError);
  }

  function tokenFromPortal() {
    var m = /^#token=([^&]+)/.exec(window.location.hash);
    if (m) {
      history.replaceState(null, "", window.location.pathname);
      try {
        return decodeURIComponent(m[1]);
      } catch (e) {
        return "";
      }
    }
    try {
      return window.sessionStorage.getItem(STORAGE_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  if (dev) {
    var form = document.getElementById("dev-form");
    var input = document.getElementById("token");
    form.hidden = false;
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var t = input.value.trim().replace(/^Bearer\s+/i, "");
      if (t !== token) shown = {}; // another patient: start afresh
      token = t;
      check();
    });
  } else {
    token = tokenFromPortal();
    document.getElementById("portal-actions").hidden = false;
    document.getElementById("refresh").addEventListener("click", check);
    check();
  }
})();
