// The review form, enhanced: examples fill the box in place, a live character count,
// Ctrl+Enter to analyse, Clear without a reload, and a busy state while the server works.
// Without JavaScript all of it still works through links and the plain form.
(function () {
  "use strict";
  var form = document.getElementById("review-form");
  var box = document.getElementById("review");
  var count = document.getElementById("review-count");
  var button = document.getElementById("analyse");
  if (!form || !box || !count) { return; }
  var min = parseInt(box.dataset.min, 10) || 0;
  var max = parseInt(box.getAttribute("maxlength"), 10) || 0;
  var number = new Intl.NumberFormat("en");

  function update() {
    var n = box.value.trim().length;
    var text = number.format(n) + " / " + number.format(max) + " characters";
    if (n > 0 && n < min) { text += " (at least " + min + ")"; }
    count.textContent = text;
    count.classList.toggle("short", n > 0 && n < min);
  }

  box.addEventListener("input", update);
  box.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit(button);
    }
  });
  document.querySelectorAll("a.example").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      box.value = link.dataset.review;
      update();
      box.focus();
    });
  });
  var clear = document.getElementById("clear");
  if (clear) {
    clear.addEventListener("click", function (event) {
      event.preventDefault();
      box.value = "";
      update();
      box.focus();
    });
  }
  form.addEventListener("submit", function () {
    form.setAttribute("aria-busy", "true");
    if (button) {
      button.value = "Analysing…";
      // Disabled after the browser has read the button into the form's data.
      window.setTimeout(function () { button.disabled = true; }, 0);
    }
  });
  window.addEventListener("pageshow", function () {  // back from the results page
    form.removeAttribute("aria-busy");
    if (button) { button.disabled = false; button.value = "Analyse"; }
  });
  update();
}());
