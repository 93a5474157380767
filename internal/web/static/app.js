// Impact patient page. No dependencies, no inline code (strict CSP), and
// API data only ever reaches the page through textContent.
//
// Where the token comes from:
//   - development (--dev): the token field of the form, or the URL fragment
//     (#token=...) as below;
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
    UNDER_REVIEW: "still being checked"
  };

  // Dates: the patient's language when the browser names one other than
  // (US) English, else New Zealand English; always New Zealand time, the
  // time of the emails and of the support line.
  var DEFAULT_LOCALE = "en-NZ";
  var TIME_ZONE = "Pacific/Auckland";

  var el = ImpactPage.el; // common.js

  var readableCategory = ImpactPage.readableCategory; // common.js

  function patientLocale() {
    var langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
    var first = String(langs[0] || "");
    if (first === "" || /^en(-US)?$/i.test(first)) return DEFAULT_LOCALE;
    return first;
  }

  function formatDate(ts) {
    var d = new Date(ts);
    if (isNaN(d.getTime())) return String(ts);
    var opts = { dateStyle: "long", timeStyle: "short", timeZone: TIME_ZONE };
    try {
      return d.toLocaleString(patientLocale(), opts);
    } catch (e) {
      try {
        return d.toLocaleString(DEFAULT_LOCALE, opts);
      } catch (e2) {
        return d.toISOString();
      }
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

  // The notice text without the email's closing reference paragraph
  // ("Reference: notice <id>, ..."): the page states the reference once, on
  // its own line, in words for support.
  function emailBody(body, noticeID) {
    if (!noticeID) return body;
    var i = body.lastIndexOf("\n\nReference: notice " + noticeID);
    return i >= 0 && body.indexOf("\n\n", i + 2) < 0 ? body.slice(0, i) : body;
  }

  function supportLine(contact) {
    var sc = el("p", "support");
    sc.appendChild(el("strong", "", "Questions? Call our support line for affected patients: "));
    sc.appendChild(el("span", "support-contact", contact));
    return sc;
  }

  // One card per incident. What the patient reads first: the headline, then
  // (affected) how to reach support, then what changed, what it concerns and
  // the notice; the reference for support last, on one line.
  function renderAnswer(a) {
    var status = a.status;
    var n = a.notice;
    var notified = !!a.notice_id;
    var pending = !!a.update_pending;
    var kind = pending ? "pending" : String(status).toLowerCase();
    var card = el("section", "incident status-" + kind);
    card.appendChild(el("h2", "", a.incident_title || a.incident_id));

    if (pending) {
      // The email said one thing and the records now say another: the
      // headline says exactly that, with both statuses, and nothing below
      // contradicts it.
      card.appendChild(el("p", "headline", "Your status has changed since we last wrote to you"));
      var up = el("div", "update-pending");
      up.setAttribute("role", "note");
      var change = el("p", "status-change");
      change.appendChild(document.createTextNode("Our email said: "));
      change.appendChild(el("strong", "was", STATUS_WORDS[status] || "being checked"));
      change.appendChild(document.createTextNode(". Now: "));
      change.appendChild(el("strong", "now", STATUS_WORDS[a.visible_status] || "being checked"));
      change.appendChild(document.createTextNode("."));
      up.appendChild(change);
      up.appendChild(el("p", "", "A new notice is on its way to you. Until it arrives, this page shows what our last email told you."));
      card.appendChild(up);
    } else {
      card.appendChild(el("p", "headline", HEADLINES[status] || "Your status is not available"));
    }

    if (status === "AFFECTED" && n && n.support_contact) {
      card.appendChild(supportLine(n.support_contact));
    }

    // A correction (notified, now not affected) needs no words of the
    // page's own: its notice is the spec's correction notice, the text the
    // email said, shown below like every notice.

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

    if (n && (n.subject || n.body)) {
      var notice = el("article", "notice");
      notice.setAttribute("aria-label", notified ? "Our email to you" : "Notice");
      if (notified && a.notified_at) {
        notice.appendChild(el("p", "notice-date", "Our email of " + formatDate(a.notified_at)));
      }
      if (n.subject) notice.appendChild(el("h3", "notice-subject", n.subject));
      var body = emailBody(n.body || "", a.notice_id);
      if (body) notice.appendChild(el("div", "notice-body", body));
      card.appendChild(notice);
    }

    // One line support staff can ask for: the notice id (which replays the
    // exact email) or the incident, and the version this page was read at.
    var ref = el("p", "reference");
    ref.appendChild(document.createTextNode("Reference for support: "));
    ref.appendChild(el("span", "reference-code", (notified ? a.notice_id : a.incident_id) + " · " + String(a.version)));
    card.appendChild(ref);
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

  // The token handed over in the URL fragment (#token=...), removed from
  // the address bar at once; "" when there is none.
  function tokenFromFragment() {
    var m = /^#token=([^&]+)/.exec(window.location.hash);
    if (!m) return "";
    history.replaceState(null, "", window.location.pathname);
    try {
      return decodeURIComponent(m[1]);
    } catch (e) {
      return "";
    }
  }

  function tokenFromPortal() {
    var t = tokenFromFragment();
    if (t) return t;
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
    // A link made for development (/#token=...) checks at once, as the
    // portal's hand-over does.
    var handed = tokenFromFragment();
    if (handed) {
      input.value = handed;
      token = handed;
      check();
    }
  } else {
    token = tokenFromPortal();
    document.getElementById("portal-actions").hidden = false;
    document.getElementById("refresh").addEventListener("click", check);
    check();
  }
})();
