// The session's CSRF token goes with every request the page sends; a page of another site
// cannot read it.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) {
    event.detail.headers["X-CSRF-Token"] = meta.content;
  }
});
// A session that ended (a restart, twelve hours unused) leads back to the login page.
document.addEventListener("htmx:responseError", function (event) {
  if (event.detail.xhr.status === 401) {
    window.location.assign("/login");
  }
});
// The folder picker: "Use this folder" puts the listed folder into the form's field.
document.addEventListener("click", function (event) {
  var button = event.target.closest(".pick-here");
  if (button) {
    var field = document.getElementById("folder");
    if (field) {
      field.value = button.getAttribute("data-path");
    }
  }
});
// After the first save boothsync starts again on the new config: once it answers as running,
// the login link made for this browser opens its dashboard.
function followWhenRunning() {
  var go = document.getElementById("go");
  if (!go || go.getAttribute("data-following")) {
    return;
  }
  go.setAttribute("data-following", "1");
  var tries = 0;
  var look = function () {
    tries += 1;
    fetch("/mode", { cache: "no-store" })
      .then(function (answer) { return answer.ok ? answer.text() : ""; })
      .catch(function () { return ""; })
      .then(function (mode) {
        if (mode === "running") {
          window.location.assign(go.getAttribute("data-login"));
        } else if (tries < 120) {
          window.setTimeout(look, 500);
        }
      });
  };
  look();
}
document.addEventListener("htmx:afterSettle", followWhenRunning);
