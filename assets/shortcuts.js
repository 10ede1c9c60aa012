/* Keyboard shortcuts for teaching (listed in the header in presentation mode):
   Space  play / pause the first animated figure on screen
   ← / →  previous / next node (or step) of that figure's slider
   T      next tab
   Esc    leave presentation mode
   Keys typed into a field, a dropdown or a text box are left alone. */
(function () {
  "use strict";

  function typing(target) {
    if (!target || !target.closest) return false;
    return Boolean(target.closest("input, textarea, select, [contenteditable=true], .Select, .dash-dropdown"));
  }

  function visible(el) {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.bottom > 0 && r.top < window.innerHeight;
  }

  // the first figure with a slider that is on screen (or, failing that, anywhere in the shown tab)
  function animated() {
    const plots = Array.from(document.querySelectorAll(".js-plotly-plot")).filter(
      (gd) => gd.layout && gd.layout.sliders && gd.layout.sliders.length && gd.offsetParent !== null
    );
    return plots.find(visible) || plots[0] || null;
  }

  function current(gd) {
    const slider = (gd._fullLayout && gd._fullLayout.sliders && gd._fullLayout.sliders[0]) || gd.layout.sliders[0];
    return slider.active || 0;
  }

  function step(gd, by) {
    const steps = gd.layout.sliders[0].steps;
    const next = Math.min(Math.max(current(gd) + by, 0), steps.length - 1);
    const args = steps[next].args;
    window.Plotly.animate(gd, args[0], args[1]);
    window.Plotly.relayout(gd, { "sliders[0].active": next });
  }

  function playPause(gd) {
    const buttons = gd.querySelectorAll(".updatemenu-button");
    if (buttons.length < 2) return;
    const playing = gd.dataset.repgeomPlaying === "1";
    gd.dataset.repgeomPlaying = playing ? "0" : "1";
    buttons[playing ? 1 : 0].dispatchEvent(new MouseEvent("click", { bubbles: true }));
    if (!playing && !gd.dataset.repgeomWatched) {
      gd.dataset.repgeomWatched = "1";
      gd.on("plotly_animated", () => { gd.dataset.repgeomPlaying = "0"; });
    }
  }

  function nextTab() {
    const tabs = Array.from(document.querySelectorAll("#tab .tab"));
    const at = tabs.findIndex((t) => t.classList.contains("tab--selected"));
    if (tabs.length) tabs[(at + 1) % tabs.length].click();
  }

  function explore() {
    const radio = document.querySelector('#mode input[value="explore"]');
    if (radio && !radio.checked) radio.click();
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const gd = animated();
    if (event.key === " " && gd) {
      playPause(gd);
    } else if (event.key === "ArrowRight" && gd) {
      step(gd, 1);
    } else if (event.key === "ArrowLeft" && gd) {
      step(gd, -1);
    } else if (event.key === "t" || event.key === "T") {
      nextTab();
    } else if (event.key === "Escape") {
      explore();
    } else {
      return;
    }
    event.preventDefault();
  });
})();
