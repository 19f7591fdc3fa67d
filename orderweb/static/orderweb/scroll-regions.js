/* The admin on a narrow screen: a read-only table that scrolls sideways in its box (the order's
 * inlines, its timeline) has nothing to focus, so a keyboard could not scroll it. Each one that
 * overflows becomes a focusable, named region (WCAG 2.1.1); the others stay out of the tab order.
 */
(function () {
  "use strict";
  function mark() {
    document.querySelectorAll("#content .inline-group, #content .readonly").forEach(function (box) {
      var scrolls = box.scrollWidth > box.clientWidth + 1 && /auto|scroll/.test(getComputedStyle(box).overflowX);
      if (scrolls && !box.hasAttribute("tabindex")) {
        var heading = box.querySelector("h2") || (box.closest(".form-row") || box).querySelector("label");
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", (heading ? heading.textContent.replace(":", "").trim() : "Table") + " (scrolls sideways)");
        box.setAttribute("data-scroll-region", "");
      } else if (!scrolls && box.hasAttribute("data-scroll-region")) {
        ["tabindex", "role", "aria-label", "data-scroll-region"].forEach(function (a) { box.removeAttribute(a); });
      }
    });
  }
  document.addEventListener("DOMContentLoaded", mark);
  window.addEventListener("resize", mark);
})();
