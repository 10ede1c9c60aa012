/* repgeom live probe: draw on the canvas; when a stroke ends, its PNG goes to the probe image store.
 *
 * The canvas is Dash's <canvas id="probe-canvas"> (React may re-create it, so events are caught on the
 * document and the element is looked up by id each time). Ink is white on black, like MNIST; the server
 * prepares it (box, centring, normalisation) from the dataset's descriptor. "clear" wipes it and empties
 * the store. Served from the app's own assets folder (the page's script-src is 'self').
 */
(function () {
  "use strict";
  var CANVAS = "probe-canvas";
  var CLEAR = "probe-clear";
  var STORE = "probe-image";
  var LINE_WIDTH = 20; // canvas pixels of a 280-pixel canvas: an MNIST stroke at 10x
  var drawing = null;
  var last = null; // the drawing sent last: drawn again when Dash re-creates the canvas (a tab switch)

  function wipe(canvas) {
    var g = canvas.getContext("2d");
    g.fillStyle = "#000";
    g.fillRect(0, 0, canvas.width, canvas.height);
    canvas.setAttribute("data-ready", "1");
  }

  function at(canvas, event) {
    var r = canvas.getBoundingClientRect();
    return [(event.clientX - r.left) * canvas.width / r.width, (event.clientY - r.top) * canvas.height / r.height];
  }

  function restore(canvas) {
    wipe(canvas);
    if (!last) return;
    var img = new Image();
    img.onload = function () { canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height); };
    img.src = last;
  }

  new MutationObserver(function () {
    var canvas = document.getElementById(CANVAS);
    if (canvas && !canvas.getAttribute("data-ready")) restore(canvas);
  }).observe(document.documentElement, { childList: true, subtree: true });

  function send(value) {
    last = value;
    if (window.dash_clientside && window.dash_clientside.set_props) {
      window.dash_clientside.set_props(STORE, { data: value });
    }
  }

  function dot(g, p) {
    g.beginPath();
    g.arc(p[0], p[1], LINE_WIDTH / 2, 0, 2 * Math.PI);
    g.fill();
  }

  document.addEventListener("pointerdown", function (event) {
    var canvas = event.target;
    if (!canvas || canvas.id !== CANVAS) return;
    if (!canvas.getAttribute("data-ready")) wipe(canvas);
    var g = canvas.getContext("2d");
    g.strokeStyle = "#fff";
    g.fillStyle = "#fff";
    g.lineWidth = LINE_WIDTH;
    g.lineCap = "round";
    g.lineJoin = "round";
    drawing = { canvas: canvas, last: at(canvas, event) };
    dot(g, drawing.last);
    if (canvas.setPointerCapture) canvas.setPointerCapture(event.pointerId);
    event.preventDefault();
  });

  document.addEventListener("pointermove", function (event) {
    if (!drawing) return;
    var g = drawing.canvas.getContext("2d");
    var p = at(drawing.canvas, event);
    g.beginPath();
    g.moveTo(drawing.last[0], drawing.last[1]);
    g.lineTo(p[0], p[1]);
    g.stroke();
    drawing.last = p;
    event.preventDefault();
  });

  function end() {
    if (!drawing) return;
    var canvas = drawing.canvas;
    drawing = null;
    send(canvas.toDataURL("image/png"));
  }

  document.addEventListener("pointerup", end);
  document.addEventListener("pointercancel", end);

  document.addEventListener("click", function (event) {
    var button = event.target && event.target.closest ? event.target.closest("#" + CLEAR) : null;
    if (!button) return;
    var canvas = document.getElementById(CANVAS);
    if (canvas) wipe(canvas);
    send(null);
  });
})();
