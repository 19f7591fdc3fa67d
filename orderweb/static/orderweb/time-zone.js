/* The reader's time zone, from the browser (the Intl API), for the session: posted once, on the
 * first page of a session whose zone is not known yet (this script's data-known="0"). Where the
 * page shows times (in UTC until now), it reloads once to show them in the reader's zone. A zone
 * the person chose on the settings page is kept: the server ignores the browser's then.
 */
(function () {
  "use strict";
  var script = document.getElementById("time-zone-script");
  if (!script || script.getAttribute("data-known") !== "0") return;
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  var url = script.getAttribute("data-url");
  var token = script.getAttribute("data-csrf-token");
  if (!zone || !url || !window.fetch) return;
  script.setAttribute("data-known", "sending");
  fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "X-CSRFToken": token, "Content-Type": "application/x-www-form-urlencoded" },
    body: "time_zone=" + encodeURIComponent(zone)
  }).then(function (response) {
    script.setAttribute("data-known", response.ok ? "1" : "refused");
    if (response.ok && zone !== "UTC" && document.querySelector("time[datetime]")) window.location.reload();
  }, function () { script.setAttribute("data-known", "failed"); });
})();
