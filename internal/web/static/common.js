// Helpers the patient page and the practice page share (loaded before
// either page's app.js). No dependencies, no inline code (strict CSP); text
// only ever reaches the page through textContent.
"use strict";

var ImpactPage = (function () {
  // Data categories as words: discharge_summary -> "Discharge summary",
  // nhi_number -> "NHI number".
  var ACRONYMS = { nhi: "NHI", gp: "GP", id: "ID", dob: "date of birth" };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function readableCategory(c) {
    var words = String(c).split(/[_\s]+/).filter(Boolean).map(function (w) {
      return ACRONYMS[w.toLowerCase()] || w.toLowerCase();
    });
    var s = words.join(" ");
    return s.charAt(0).toUpperCase() + s.slice(1);
  }

  return { el: el, readableCategory: readableCategory };
})();
