/* The review back office's keyboard and live behaviour. Plain JS, no framework.
 *
 * Shortcuts (listed on every page, and in the dialog that "?" opens):
 *   queue:      j / k  move the selection      Enter  open it     c  claim it
 *               x  select it for a bulk decision (the checkboxes; "select all" in the header)
 *   order page: a  approve & next    r  reject (choose a reason 1-5, Enter confirms)
 *               c  claim            j / k  next / previous order of your queue
 *   everywhere: /  search           ?  the list of shortcuts      Esc  close
 * Keys are ignored while typing in a field (Esc leaves it) and with Ctrl, Alt or Cmd held.
 *
 * The queue's htmx refresh keeps the selected row, the focused element and the scroll position.
 * The order page's decision panel locks itself (buttons disabled, a message saying what
 * happened) as soon as the live status panel reports that the order has left review.
 * Its claim clock warns the holder before the claim lapses and offers to keep it (WCAG 2.2.1):
 * one announcement when the warning appears and one when the claim is kept or lapses, in a
 * polite live region; the seconds count down beside it, hidden from screen readers.
 */
(function () {
  "use strict";

  var selected = null; // data-order of the selected queue row
  var locked = false; // the decision panel is locked: a, r and c do nothing

  function typing(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "textarea" || tag === "select" || target.isContentEditable ||
      (tag === "input" && !["radio", "checkbox", "button", "submit"].includes(target.type));
  }

  // -- the queue: a selected row that j/k move and the refresh keeps --------------------------

  function queueRows() {
    return Array.prototype.slice.call(document.querySelectorAll("#queue tbody tr[data-order]"));
  }

  function select(row, focus) {
    queueRows().forEach(function (r) { r.classList.remove("selected"); r.removeAttribute("aria-selected"); });
    if (!row) { selected = null; return; }
    row.classList.add("selected");
    row.setAttribute("aria-selected", "true");
    selected = row.getAttribute("data-order");
    if (focus) {
      var link = row.querySelector(".order-id a");
      if (link) link.focus({ preventScroll: true });
      row.scrollIntoView({ block: "nearest" });
    }
  }

  function move(step) {
    var rows = queueRows();
    if (!rows.length) return;
    var index = rows.findIndex(function (r) { return r.getAttribute("data-order") === selected; });
    index = index < 0 ? (step > 0 ? 0 : rows.length - 1) : Math.min(Math.max(index + step, 0), rows.length - 1);
    select(rows[index], true);
  }

  // A "more" opened in a polled table stays open across the refresh.
  var openDetails = [];
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    openDetails = target ? Array.prototype.map.call(target.querySelectorAll("details[id][open]"), function (d) { return d.id; }) : [];
  });
  document.addEventListener("htmx:afterSettle", function () {
    openDetails.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
    openDetails = [];
  });

  var scrollBefore = null;
  var selectedIndexBefore = -1;
  var focusWasInQueue = false;
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "queue") {
      scrollBefore = window.scrollY;
      selectedIndexBefore = queueRows().findIndex(function (r) { return r.getAttribute("data-order") === selected; });
      focusWasInQueue = !!(document.activeElement && document.activeElement.closest &&
        document.activeElement.closest("#queue"));
    }
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail.target;
    if (target && target.id === "queue") {
      var rows = queueRows();
      var row = rows.find(function (r) { return r.getAttribute("data-order") === selected; });
      // The selected order left (a colleague decided it): select the one now in its place.
      if (!row && selected && selectedIndexBefore >= 0 && rows.length) row = rows[Math.min(selectedIndexBefore, rows.length - 1)];
      // htmx puts the focus back on the element with the same id; where that element is gone,
      // the selected row takes it, so the keyboard never falls back to the page's body.
      var focusLost = focusWasInQueue && !(document.activeElement && document.activeElement.closest &&
        document.activeElement.closest("#queue"));
      if (row) select(row, focusLost);
      if (scrollBefore !== null && window.scrollY !== scrollBefore) window.scrollTo(0, scrollBefore);
      scrollBefore = null;
      bulkRestore();
    }
    if (target && target.id === "live-status") lockIfLeftReview();
  });

  // -- the queue: orders selected for a bulk decision ------------------------------------------

  var chosen = new Set(); // order ids whose checkbox is ticked; the refresh keeps them

  function bulkForm() { return document.getElementById("bulk-form"); }

  function bulkBoxes() {
    return Array.prototype.slice.call(document.querySelectorAll("#queue input.bulk-select"));
  }

  function bulkUpdate() {
    var form = bulkForm();
    if (!form) return;
    var max = Number(form.getAttribute("data-bulk-max")) || 50;
    var n = chosen.size;
    var count = document.getElementById("bulk-count");
    var text = n === 0 ? "No order selected." : n + (n === 1 ? " order selected." : " orders selected.");
    if (n > max) text += " At most " + max + " at once: unselect " + (n - max) + ".";
    if (count.textContent !== text) count.textContent = text;
    ["bulk-approve", "bulk-reject"].forEach(function (id) {
      var button = document.getElementById(id);
      if (button) button.disabled = n === 0 || n > max;
    });
    var all = document.getElementById("select-all");
    var boxes = bulkBoxes();
    if (all) {
      var ticked = boxes.filter(function (b) { return b.checked; }).length;
      all.checked = boxes.length > 0 && ticked === boxes.length;
      all.indeterminate = ticked > 0 && ticked < boxes.length;
    }
  }

  function bulkToggle(box, on) {
    box.checked = on;
    if (on) chosen.add(box.value); else chosen.delete(box.value);
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.classList && target.classList.contains("bulk-select")) {
      bulkToggle(target, target.checked);
      bulkUpdate();
    } else if (target.id === "select-all") {
      bulkBoxes().forEach(function (box) { bulkToggle(box, target.checked); });
      bulkUpdate();
    }
  });

  function bulkRestore() {
    // The polled table came back: tick what was ticked; orders that left the queue are dropped.
    var present = new Set();
    bulkBoxes().forEach(function (box) { present.add(box.value); box.checked = chosen.has(box.value); });
    chosen.forEach(function (id) { if (!present.has(id)) chosen.delete(id); });
    bulkUpdate();
  }

  function toggleSelectedRow() {
    var row = queueRows().find(function (r) { return r.getAttribute("data-order") === selected; });
    var box = row && row.querySelector("input.bulk-select");
    if (!box) return;
    bulkToggle(box, !box.checked);
    bulkUpdate();
  }

  // -- the order page: the claim's clock ---------------------------------------------------------

  var claimTick = null;

  function two(n) { return (n < 10 ? "0" : "") + n; }

  function clock(seconds) { return two(new Date(seconds * 1000).getUTCHours()) + ":" + two(new Date(seconds * 1000).getUTCMinutes()); }

  function claimTimer() {
    var clockBox = document.getElementById("claim-clock");
    if (!clockBox) return;
    var timer = document.getElementById("claim-timer");
    var warning = document.getElementById("claim-warning");
    var countdown = timer.querySelector(".claim-countdown");
    var lapses = Number(clockBox.getAttribute("data-lapses-at"));
    var warn = Number(clockBox.getAttribute("data-warn-seconds"));
    var left = Math.round(lapses - Date.now() / 1000);
    var phase = left <= 0 ? "lapsed" : left <= warn ? "warned" : "held";
    if (phase === clockBox.getAttribute("data-phase")) {
      if (phase === "warned") countdown.textContent = Math.floor(left / 60) + ":" + two(left % 60) + " left";
      return;
    }
    clockBox.setAttribute("data-phase", phase);
    timer.hidden = phase === "held";
    countdown.textContent = "";
    // Said once when the phase changes; the seconds counting down are not read out.
    if (phase === "lapsed") {
      warning.textContent = "Your claim lapsed at " + clock(lapses) + " UTC: a colleague may take this order. " +
        "Keep it if you are still on it.";
    } else if (phase === "warned") {
      var minutes = Math.ceil(left / 60);
      warning.textContent = "Your claim on " + clockBox.getAttribute("data-order") + " lapses at " + clock(lapses) +
        " UTC, in " + minutes + " minute" + (minutes === 1 ? "" : "s") + ". Keep it if you are still on it.";
      countdown.textContent = Math.floor(left / 60) + ":" + two(left % 60) + " left";
    }
  }

  function claimKeep(event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("extend-form") || !window.fetch) return;
    event.preventDefault();
    var clockBox = document.getElementById("claim-clock");
    fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { "Accept": "application/json" },
    }).then(function (response) { return response.json(); }).then(function (answer) {
      if (answer.ok) {
        clockBox.setAttribute("data-lapses-at", String(answer.lapses_at));
        clockBox.setAttribute("data-phase", "held");
        document.getElementById("claim-timer").hidden = true;
      }
      document.getElementById("claim-warning").textContent = answer.message;
    }).catch(function () { form.submit(); });
  }
  document.addEventListener("submit", claimKeep);

  // -- the order page: lock the decision panel when the order left review ---------------------

  function lockIfLeftReview() {
    var panel = document.getElementById("review-panel");
    var left = document.getElementById("left-review");
    if (!panel || panel.getAttribute("data-open") !== "1" || !left || locked) return;
    locked = true;
    panel.classList.add("locked");
    panel.querySelectorAll("button, input, textarea, select").forEach(function (el) { el.disabled = true; });
    panel.querySelectorAll("details").forEach(function (el) { el.open = false; });
    var message = document.getElementById("review-lock");
    message.textContent = left.getAttribute("data-message");
    message.hidden = false;
    var badge = document.getElementById("order-status");
    if (badge && left.getAttribute("data-state")) {
      badge.textContent = left.getAttribute("data-state-label") || left.getAttribute("data-state");
      badge.className = "badge badge-" + left.getAttribute("data-state");
    }
  }

  // -- the reject form: a reason (1-5), the note required for "other", Enter confirms ----------

  function rejectForm() { return document.querySelector(".reject-form"); }

  function openReject() {
    var form = rejectForm();
    if (!form || locked) return;
    var details = form.closest("details");
    if (details) details.open = true;
    var first = form.querySelector("input[name=reason_code]:checked") || form.querySelector("input[name=reason_code]");
    if (first) first.focus();
  }

  document.addEventListener("change", function (event) {
    if (event.target.name === "reason_code") {
      var note = rejectForm().querySelector("textarea[name=note]");
      note.required = event.target.value === "other";
      note.placeholder = note.required ? "Required: say why" : "Optional: anything worth recording";
    }
  });

  function submitWith(selector) {
    var button = document.querySelector(selector);
    if (!button || button.disabled) return false;
    var form = button.form;
    if (form.requestSubmit) form.requestSubmit(button); else button.click();
    return true;
  }

  // -- shortcuts -----------------------------------------------------------------------------

  function dialog() { return document.getElementById("shortcuts"); }

  function toggleHelp() {
    var d = dialog();
    if (!d) return;
    if (d.open) d.close(); else d.showModal();
  }

  function focusSearch() {
    var field = document.querySelector("[data-search]");
    if (field) { field.focus(); field.select(); return; }
    var queue = document.querySelector("[data-queue-url]");
    if (queue) window.location.href = queue.getAttribute("data-queue-url") + "#search";
  }

  function claim() {
    if (locked) return;
    var button;
    if (document.getElementById("queue")) {
      var row = queueRows().find(function (r) { return r.getAttribute("data-order") === selected; });
      button = row && row.querySelector(".claim-button");
    } else {
      button = document.querySelector("#review-panel .claim-button");
    }
    if (button && !button.disabled) button.click();
  }

  function follow(selector) {
    var link = document.querySelector(selector);
    if (link) window.location.href = link.href;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var key = event.key;
    var inReject = event.target.closest && event.target.closest(".reject-form");
    if (key === "Escape") {
      if (inReject) { event.target.closest("details").open = false; event.target.blur(); }
      else if (typing(event.target)) event.target.blur();
      return;
    }
    // In the reject form: digits choose the reason, Enter confirms (Ctrl+Enter in the note).
    if (inReject && event.target.tagName.toLowerCase() !== "textarea") {
      if (/^[1-9]$/.test(key)) {
        var radios = rejectForm().querySelectorAll("input[name=reason_code]");
        var radio = radios[Number(key) - 1];
        if (radio) { radio.checked = true; radio.focus(); radio.dispatchEvent(new Event("change", { bubbles: true })); }
        event.preventDefault();
        return;
      }
      if (key === "Enter") { event.preventDefault(); submitWith(".reject-form .btn-next"); return; }
    }
    if (typing(event.target)) return;
    if (dialog() && dialog().open && key !== "?") return;
    var onOrder = !!document.getElementById("review-panel");
    var handled = true;
    switch (key) {
      case "j": if (onOrder) follow("#next-order"); else move(1); break;
      case "k": if (onOrder) follow("#previous-order"); else move(-1); break;
      case "a": if (onOrder && !locked) submitWith(".approve-form .btn-next"); else handled = false; break;
      case "r": if (onOrder) openReject(); else handled = false; break;
      case "c": claim(); break;
      case "x": if (!onOrder) toggleSelectedRow(); else handled = false; break;
      case "/": focusSearch(); break;
      case "?": toggleHelp(); break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });

  // The shortcuts are listening (a test, or a script, can wait for this).
  document.documentElement.setAttribute("data-keys", "on");

  window.addEventListener("load", function () {
    // Arrived by "/" from another page: the search field takes the keyboard.
    if (window.location.hash === "#search") focusSearch();
  });
  document.addEventListener("DOMContentLoaded", function () {
    // Filters that apply on change (the button stays for people without JavaScript).
    document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { el.form.requestSubmit(); });
    });
    lockIfLeftReview();
    bulkRestore();
    if (document.getElementById("claim-clock")) {
      // A claim that has lapsed already is said by the page itself (rendered in its live region).
      var box = document.getElementById("claim-clock");
      if (!document.getElementById("claim-timer").hidden) box.setAttribute("data-phase", "lapsed");
      claimTimer();
      claimTick = window.setInterval(claimTimer, 1000);
    }
  });
})();
