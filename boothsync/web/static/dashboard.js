// The session's CSRF token goes with every request the page sends; a page of another site
// cannot read it.
document.addEventListener("htmx:configRequest", function (event) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) {
    event.detail.headers["X-CSRF-Token"] = meta.content;
  }
});
// A step of the setup that the server turns down (a key the gallery refuses, a folder that is
// not there) comes back as the same step saying why, with 400 or 409: shown like any step.
document.addEventListener("htmx:beforeSwap", function (event) {
  var xhr = event.detail.xhr;
  var type = xhr.getResponseHeader("Content-Type") || "";
  if ((xhr.status === 400 || xhr.status === 409) && type.indexOf("text/html") === 0) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
// One line at the top of the page for what went wrong, as text (a server's words are not markup).
function notice(text, kind) {
  var box = document.getElementById("notice");
  if (box) {
    box.textContent = text;
    box.setAttribute("data-kind", kind);
    box.hidden = !text;
  }
}
function reason(xhr) {
  try {
    var answer = JSON.parse(xhr.responseText);
    if (answer && typeof answer.error === "string") {
      return answer.error;
    }
  } catch (ignored) {
    // not JSON: the answer's own text
  }
  return (xhr.responseText || "").slice(0, 300) || "the answer was " + xhr.status;
}
// A session that ended (a restart, twelve hours unused) leads back to the login page; any other
// refusal (a command boothsync cannot do now) is said at the top.
document.addEventListener("htmx:responseError", function (event) {
  var xhr = event.detail.xhr;
  if (xhr.status === 401) {
    window.location.assign("/login");
  } else {
    notice(reason(xhr), "refused");
  }
});
// boothsync stopped (or the network to it is gone): say so rather than show a page that no
// longer moves; the next answer takes it back.
document.addEventListener("htmx:sendError", function () {
  notice("boothsync does not answer: is it still running?", "offline");
});
document.addEventListener("htmx:afterRequest", function (event) {
  var box = document.getElementById("notice");
  if (!box || box.hidden || !event.detail.successful) {
    return;
  }
  // The live part's refresh ends "does not answer"; a refusal stays until the next command.
  var verb = event.detail.requestConfig ? event.detail.requestConfig.verb : "get";
  if (box.getAttribute("data-kind") === "offline" || verb !== "get") {
    notice("", "");
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
