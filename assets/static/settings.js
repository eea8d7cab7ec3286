// The settings page works without this script. It only shows the hint that the page is
// meant to be opened inside Flowlu when it is opened on its own (not in an iframe).
"use strict";
if (window.top === window.self) {
  var hint = document.getElementById("frame-hint");
  if (hint) {
    hint.hidden = false;
  }
}
