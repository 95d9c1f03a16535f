/* RefundLens console: keyboard shortcuts, live deadline countdowns, the before/after
   slider, dialogs, and notes sent with fetch. Every page works without this script;
   it only adds. Plain ES2017, no dependencies, nothing loaded from elsewhere. */
(function () {
  "use strict";

  var body = document.body;
  var page = body.getAttribute("data-page") || "";

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) {
    return Array.prototype.slice.call((root || document).querySelectorAll(selector));
  }

  /* --- deadline countdowns ------------------------------------------------------------ */
  var units = (body.getAttribute("data-t-units") || "d|h|m").split("|");
  var spaced = body.getAttribute("data-lang") === "en";

  function duration(seconds) {
    seconds = Math.abs(Math.floor(seconds));
    var d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600),
        m = Math.floor((seconds % 3600) / 60), sep = spaced ? " " : "";
    if (d) { return d + units[0] + sep + h + units[1]; }
    if (h) { return h + units[1] + sep + m + units[2]; }
    return m + units[2];
  }

  function tick() {
    var now = Date.now();
    $all("[data-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-due"));
      if (isNaN(due)) { return; }
      var left = (due - now) / 1000;
      var near = Number(el.getAttribute("data-near") || 2);
      var template = body.getAttribute(left < 0 ? "data-t-overdue" : "data-t-left");
      el.textContent = template.replace("{t}", duration(left));
      el.classList.remove("sla-ok", "sla-near", "sla-overdue");
      el.classList.add(left < 0 ? "sla-overdue" : left < near * 3600 ? "sla-near" : "sla-ok");
    });
  }
  setInterval(tick, 30000);

  /* --- dialogs -------------------------------------------------------------------------- */
  function openDialog(id) {
    var dialog = document.getElementById(id);
    if (dialog && !dialog.open && dialog.showModal) { dialog.showModal(); }
  }
  $all("[data-open-dialog]").forEach(function (button) {
    button.addEventListener("click", function () {
      openDialog(button.getAttribute("data-open-dialog"));
    });
  });
  $all("[data-close-dialog]").forEach(function (button) {
    button.addEventListener("click", function () { button.closest("dialog").close(); });
  });

  /* --- before/after slider -------------------------------------------------------------- */
  function placeReference(box) {
    var base = $(".compare-base", box), ref = $(".compare-ref", box);
    var raw = box.getAttribute("data-transform");
    if (!base.naturalWidth || !ref.naturalWidth) { return; }
    if (!raw) {  /* no transform: stretch the reference over the photo */
      ref.style.width = "100%"; ref.style.height = "100%"; ref.style.transform = "";
      return;
    }
    /* The match's homography maps reference pixels to claim pixels; scale it to the
       displayed size and hand it to CSS as a matrix3d (column-major). */
    var H = JSON.parse(raw), s = base.clientWidth / base.naturalWidth;
    var a = H[0], b = H[1], c = H[2];
    var m = [s * a[0], s * b[0], 0, c[0],
             s * a[1], s * b[1], 0, c[1],
             0, 0, 1, 0,
             s * a[2], s * b[2], 0, c[2]];
    ref.style.width = ref.naturalWidth + "px";
    ref.style.height = ref.naturalHeight + "px";
    ref.style.transform = "matrix3d(" + m.join(",") + ")";
  }

  $all(".compare-block").forEach(function (block) {
    var box = $(".compare", block), range = $(".compare-range", block);
    var top = $(".compare-top", box), line = $(".compare-line", box);
    function clip() {
      var v = Number(range.value);
      top.style.clipPath = "inset(0 " + (100 - v) + "% 0 0)";
      line.style.left = v + "%";
    }
    range.addEventListener("input", clip);
    $all("img", box).forEach(function (img) {
      if (img.complete) { placeReference(box); } else {
        img.addEventListener("load", function () { placeReference(box); });
      }
    });
    window.addEventListener("resize", function () { placeReference(box); });
    clip();
  });

  /* --- notes with fetch (the form posts normally without script) ------------------------ */
  var noteForm = $("#note-form");
  if (noteForm && window.fetch && window.FormData) {
    noteForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = $("#note-text");
      var token = $("meta[name=csrf-token]").getAttribute("content");
      var data = new FormData(noteForm);
      data.delete("csrf_token");  /* the header carries it */
      fetch(noteForm.action, {method: "POST", body: data, credentials: "same-origin",
                              headers: {"X-CSRF-Token": token, "Accept": "application/json"}})
        .then(function (response) {
          return response.json().then(function (json) { return [response.ok, json]; });
        })
        .then(function (pair) {
          if (!pair[0]) { throw new Error(pair[1].error ? pair[1].error.message : "failed"); }
          var note = pair[1].result, li = document.createElement("li");
          var who = document.createElement("span"), what = document.createElement("span");
          who.className = "muted"; who.textContent = note.actor + " · " + body.getAttribute("data-t-note-saved");
          what.className = "pre"; what.textContent = note.text;
          li.appendChild(who); li.appendChild(document.createElement("br")); li.appendChild(what);
          $("#notes-list").insertBefore(li, $("#notes-list").firstChild);
          text.value = "";
        })
        .catch(function () { noteForm.submit(); });  /* fall back to the plain form post */
    });
  }

  /* --- keyboard ------------------------------------------------------------------------- */
  var NOT_TEXT = /^(checkbox|radio|range|button|submit|reset|file|color)$/;
  function typing(el) {
    if (!el) { return false; }
    if (el.tagName === "INPUT") { return !NOT_TEXT.test(el.type); }
    return el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT";
  }
  function focusField(id) {
    var el = document.getElementById(id);
    if (el) { el.scrollIntoView({block: "center"}); el.focus(); }
    return !!el;
  }
  function follow(id) {
    var link = document.getElementById(id);
    if (link) { window.location.href = link.href; }
  }
  function toggle(id) {
    var box = document.getElementById(id);
    if (box && !box.disabled) { box.click(); }
  }

  var rows = $all(".queue-row"), selected = -1;
  function select(index) {
    if (!rows.length) { return; }
    selected = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach(function (row, i) { row.classList.toggle("selected", i === selected); });
    var link = $("a.claim-link", rows[selected]);
    if (link) { link.focus(); }
  }

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target.tagName === "TEXTAREA"
        && target.form) {
      event.preventDefault();
      if (target.form.reportValidity()) { target.form.requestSubmit(); }
      return;
    }
    if (event.key === "Escape" && typing(target)) { target.blur(); return; }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(target)) { return; }
    if ($("dialog[open]") && event.key !== "?") { return; }
    var handled = true;
    switch (event.key) {
      case "?": var help = $("#shortcuts-dialog");
        if (help.open) { help.close(); } else { openDialog("shortcuts-dialog"); } break;
      case "j": if (rows.length) { select(selected + 1); } else { follow("next-claim"); } break;
      case "k": if (rows.length) { select(selected - 1); } else { follow("prev-claim"); } break;
      case "o": if (rows.length && selected >= 0) { window.location.href = rows[selected].getAttribute("data-href"); } break;
      case "a": openDialog("approve-dialog"); break;
      case "r": handled = focusField("reject-reason"); break;
      case "e": handled = focusField("evidence-note"); break;
      case "x": handled = focusField("escalate-reason"); break;
      case "n": handled = focusField("note-text"); break;
      case "b": toggle("toggle-boxes"); break;
      case "h": toggle("toggle-heat"); break;
      default: handled = false;
    }
    if (handled) { event.preventDefault(); }
  });
})();
