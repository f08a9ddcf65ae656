// chestx upload form: drag and drop, preview, and an in-page result from POST /predict.
// Without JavaScript the form posts to / and the server renders the same result page.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.fetch || !window.FormData) { return; }
  var input = document.getElementById("image");
  var drop = document.getElementById("drop");
  var preview = document.getElementById("preview");
  var filename = document.getElementById("filename");
  var status = document.getElementById("status");
  var button = document.getElementById("submit");
  var result = document.getElementById("result");
  var previewUrl = null;

  function showFile() {
    var file = input.files && input.files[0];
    if (previewUrl) { URL.revokeObjectURL(previewUrl); previewUrl = null; }
    preview.hidden = true;
    filename.textContent = file ? file.name + " (" + Math.round(file.size / 1024) + " kB)" : "";
    if (file && /^image\/(jpeg|png|bmp|gif|webp)$/.test(file.type)) {
      previewUrl = URL.createObjectURL(file);
      preview.src = previewUrl;
      preview.hidden = false;
    }
  }
  preview.addEventListener("error", function () { preview.hidden = true; });
  input.addEventListener("change", showFile);

  ["dragenter", "dragover"].forEach(function (name) {
    drop.addEventListener(name, function (e) {
      e.preventDefault(); drop.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    drop.addEventListener(name, function (e) {
      e.preventDefault(); drop.classList.remove("dragging");
    });
  });
  drop.addEventListener("drop", function (e) {
    if (e.dataTransfer && e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      showFile();
    }
  });

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  function svg(tag, attrs) {
    var node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }
  function bar(p, t, label) {
    var fig = el("figure", {"class": "bar"});
    var s = svg("svg", {"class": "prob-bar", viewBox: "0 0 100 14", preserveAspectRatio: "none",
                        role: "img",
                        "aria-label": "P(pneumonia) " + p.toFixed(3) + "; threshold " + t.toFixed(3)});
    s.appendChild(svg("rect", {"class": "track", x: 0, y: 3, width: 100, height: 8, rx: 1}));
    s.appendChild(svg("rect", {"class": "fill " + label.toLowerCase(), x: 0, y: 3,
                               width: (p * 100).toFixed(2), height: 8, rx: 1}));
    s.appendChild(svg("line", {"class": "threshold", x1: (t * 100).toFixed(2), x2: (t * 100).toFixed(2),
                               y1: 0, y2: 14, "vector-effect": "non-scaling-stroke"}));
    fig.appendChild(s);
    var cap = el("figcaption", {"class": "scale"});
    cap.appendChild(el("span", {}, "0"));
    cap.appendChild(el("span", {}, "threshold " + t.toFixed(3)));
    cap.appendChild(el("span", {}, "1"));
    fig.appendChild(cap);
    return fig;
  }

  function render(data) {
    var abnormal = data.label === "PNEUMONIA";
    result.textContent = "";
    var h = el("h2", {id: "verdict", "class": "verdict " + (abnormal ? "abnormal" : "normal")}, data.result);
    h.appendChild(el("small", {}, abnormal ? "pneumonia suspected" : "no pneumonia detected"));
    result.appendChild(h);
    var prob = el("p", {"class": "prob"}, "P(pneumonia) = ");
    prob.appendChild(el("b", {}, data.probability.toFixed(3)));
    prob.appendChild(document.createTextNode(
      (abnormal ? " \u2265 " : " < ") + "threshold " + data.threshold.toFixed(3)));
    result.appendChild(prob);
    result.appendChild(bar(data.probability, data.threshold, data.label));
    var images = el("div", {"class": "images"});
    if (previewUrl) {
      var f1 = el("figure");
      f1.appendChild(el("img", {src: previewUrl, alt: "The uploaded X-ray"}));
      f1.appendChild(el("figcaption", {}, "Your upload"));
      images.appendChild(f1);
    }
    var f2 = el("figure");
    var hm = data.heatmap;
    if (hm && hm.png_base64) {
      f2.appendChild(el("img", {id: "heatmap", src: "data:image/png;base64," + hm.png_base64,
        alt: "Grad-CAM heatmap over the X-ray: warm colours mark the regions that pushed the model towards " + hm.target}));
      f2.appendChild(el("figcaption", {}, "Grad-CAM: red marks the regions that pushed the model most towards " +
        hm.target + ", blue little. It shows where the model looked, not where disease is."));
    } else {
      f2.appendChild(el("p", {"class": "help"}, (hm && hm.unavailable) || "No heatmap."));
    }
    images.appendChild(f2);
    result.appendChild(images);
    result.appendChild(el("p", {"class": "model-line"}, "Model " + data.model.name + ", version " +
      data.model.version + " (" + data.model.runtime + " runtime). " + (data.notice || "")));
    result.hidden = false;
    result.scrollIntoView({behavior: "smooth", block: "start"});
    h.setAttribute("tabindex", "-1");
    h.focus({preventScroll: true});
  }

  // The input gate refused the upload (HTTP 422, reason not_a_chest_xray): no result, the
  // upload shown back, and why. The message starts with the gate's headline (chestx.gate):
  // not what the model reads, or a chest X-ray it cannot judge as it was sent.
  var UNJUDGEABLE = "a chest X-ray the model cannot judge: ";
  function refuse(message) {
    var unjudgeable = message.indexOf(UNJUDGEABLE) === 0;
    var why = unjudgeable ? message.slice(UNJUDGEABLE.length) :
      message.replace(/^not a chest X-ray: /, "");
    var headline = unjudgeable ? "this chest X-ray cannot be judged as it is" :
      "this does not look like a frontal chest X-ray";
    result.textContent = "";
    var h = el("h2", {id: "refusal", "class": "verdict refused"}, "No result");
    h.appendChild(el("small", {}, headline));
    result.appendChild(h);
    result.appendChild(el("p", {"class": "refusal-message", role: "alert"},
      headline.charAt(0).toUpperCase() + headline.slice(1) + ": " + why +
      ", so no result is given."));
    var images = el("div", {"class": "images"});
    if (previewUrl) {
      var f1 = el("figure");
      f1.appendChild(el("img", {id: "upload", src: previewUrl, alt: "Your upload"}));
      f1.appendChild(el("figcaption", {}, "Your upload"));
      images.appendChild(f1);
    }
    var f2 = el("figure");
    f2.appendChild(el("p", {"class": "help"}, unjudgeable ?
      "chestx judges a chest X-ray as a radiologist's viewer shows it, and checks every upload " +
      "before judging it. Upload the X-ray as it is read: its For Presentation image, exported " +
      "so the lungs show grey, neither faint nor clipped white." :
      "chestx was trained on frontal chest radiographs only, and checks every upload before " +
      "judging it. Upload an upright, frontal chest X-ray with normal (not inverted) grey levels."));
    images.appendChild(f2);
    result.appendChild(images);
    result.hidden = false;
    h.setAttribute("tabindex", "-1");
    h.focus({preventScroll: true});
  }

  function fail(message) {
    result.textContent = "";
    result.appendChild(el("h2", {}, "That upload could not be analysed"));
    result.appendChild(el("p", {"class": "error-message", role: "alert"}, message));
    result.hidden = false;
  }

  form.addEventListener("submit", function (e) {
    if (!input.files || !input.files.length) { return; }  // the browser's "required" message
    e.preventDefault();
    button.disabled = true;
    status.textContent = "Analysing\u2026";
    fetch("/predict?explain=1", {method: "POST", body: new FormData(form),
                                 headers: {"Accept": "application/json"}})
      .then(function (r) {
        return r.json().catch(function () { return {error: {message: "HTTP " + r.status}}; })
          .then(function (body) { return {ok: r.ok, status: r.status, body: body}; });
      })
      .then(function (r) {
        if (r.ok) { render(r.body); status.textContent = "Done."; }
        else if (r.status === 422 && r.body.error && r.body.error.reason === "not_a_chest_xray") {
          refuse(r.body.error.message || "");
          status.textContent = "";
        }
        else {
          fail((r.body.error && r.body.error.message) || ("HTTP " + r.status));
          status.textContent = "";
        }
      })
      .catch(function () { fail("The server could not be reached. Try again."); status.textContent = ""; })
      .then(function () { button.disabled = false; });
  });
}());
