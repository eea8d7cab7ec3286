// The settings page works without this script. It only
// - shows the hint that the page is meant to be opened inside Flowlu when it is opened
//   on its own (not in an iframe);
// - refreshes the page every few seconds while a history import runs (the card's
//   "Refresh" form), until the admin touches anything else on the page.
"use strict";
if (window.top === window.self) {
  var hint = document.getElementById("frame-hint");
  if (hint) {
    hint.hidden = false;
  }
}
(function () {
  var refresh = document.getElementById("history-status");
  if (!refresh) {
    return;
  }
  var touched = false;
  document.addEventListener("input", function () { touched = true; }, true);
  document.addEventListener("focusin", function (e) {
    if (!refresh.contains(e.target)) { touched = true; }
  }, true);
  window.setTimeout(function () {
    if (!touched) {
      refresh.submit();
    }
  }, 4000);
})();
