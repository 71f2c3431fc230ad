// The wine form: built from GET /features, posts to POST /predict, draws the probabilities
// and shows each out-of-range warning of the answer beside its field. Under the answer, the
// true cultivar can be sent back (POST /feedback with the answer's prediction_id).
"use strict";

const state = { features: [], classes: [], predictionId: null };

function fieldLabel(name) {
  const f = state.features.find((feature) => feature.name === name);
  return f ? f.label : name;
}

function clearWarning(name) {
  const note = document.getElementById(name + "-warning");
  if (!note) return;
  note.hidden = true;
  note.textContent = "";
  const input = document.getElementById(name);
  input.removeAttribute("data-out-of-range");
  input.setAttribute("aria-describedby", name + "-range");
}

function clearWarnings() {
  for (const f of state.features) clearWarning(f.name);
  const summary = document.getElementById("warnings");
  summary.hidden = true;
  summary.replaceChildren();
}

function showWarnings(warnings) {
  clearWarnings();
  if (!warnings || !warnings.length) return;
  for (const w of warnings) {
    const note = document.getElementById(w.feature + "-warning");
    if (!note) continue;
    note.textContent = "⚠ " + w.value + " is outside the training range " +
      w.training_min + " – " + w.training_max;
    note.hidden = false;
    const input = document.getElementById(w.feature);
    input.setAttribute("data-out-of-range", "true");
    input.setAttribute("aria-describedby", w.feature + "-warning " + w.feature + "-range");
  }
  const summary = document.getElementById("warnings");
  const count = warnings.length === 1 ? "1 value is" : warnings.length + " values are";
  summary.append(el("strong", {}, "Caution: "),
    count + " outside the range the model was trained on (" +
    warnings.map((w) => fieldLabel(w.feature)).join(", ") +
    "). The prediction is an extrapolation: check for a unit mix-up or a typo.");
  summary.hidden = false;
}

function showTrainingRanges(ranges) {
  // The served version's own training ranges, when it carries them: what its warnings use.
  if (!ranges) return;
  for (const f of state.features) {
    const range = ranges[f.name];
    const box = document.getElementById(f.name + "-range");
    if (range && box) box.textContent = "training range " + range.min + " – " + range.max;
  }
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

function showMessage(text) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.hidden = false;
  document.getElementById("result").hidden = true;
  document.getElementById("placeholder").hidden = true;
}

function clearMessage() {
  document.getElementById("message").hidden = true;
  for (const input of document.querySelectorAll("#fields input")) {
    input.removeAttribute("aria-invalid");
  }
}

function markInvalid(names) {
  for (const name of names) {
    const input = document.getElementById(name);
    if (input) input.setAttribute("aria-invalid", "true");
  }
}

function buildForm(spec) {
  state.features = spec.features;
  const fields = document.getElementById("fields");
  for (const f of spec.features) {
    const box = el("div", { class: "field" });
    const label = el("label", { for: f.name }, f.label + " ");
    if (f.unit) label.append(el("span", { class: "unit" }, "(" + f.unit + ")"));
    const input = el("input", {
      id: f.name, name: f.name, type: "number", step: "any", inputmode: "decimal",
      min: "0", placeholder: String(f.training_mean), "aria-describedby": f.name + "-range",
    });
    const range = el("div", { id: f.name + "-range", class: "range" },
      "training range " + f.training_min + " – " + f.training_max);
    const warning = el("div", { id: f.name + "-warning", class: "warning" });
    warning.hidden = true;
    input.addEventListener("input", () => clearWarning(f.name));
    box.append(label, input, range, warning);
    fields.append(box);
  }
  state.classes = spec.samples.map((s) => ({ id: s.class_id, name: s.class_name }));
  const choices = document.getElementById("feedback-classes");
  for (const c of state.classes) {
    const button = el("button", { type: "button", "data-class-id": String(c.id),
      "aria-pressed": "false" }, c.name);
    button.addEventListener("click", () => sendFeedback(c));
    choices.append(button);
  }
  const samples = document.getElementById("samples");
  for (const sample of spec.samples) {
    const button = el("button", { type: "button", "data-class-id": String(sample.class_id) },
      "Typical " + sample.class_name);
    button.addEventListener("click", () => {
      for (const [name, value] of Object.entries(sample.values)) {
        document.getElementById(name).value = value;
      }
      clearMessage();
      clearWarnings();
    });
    samples.append(button);
  }
}

function readForm() {
  const wine = {};
  const missing = [];
  for (const f of state.features) {
    const input = document.getElementById(f.name);
    if (input.value.trim() === "" || Number.isNaN(input.valueAsNumber)) {
      missing.push(f);
    } else {
      wine[f.name] = input.valueAsNumber;
    }
  }
  return { wine, missing };
}

function drawResult(answer) {
  document.getElementById("cultivar").textContent = answer.class_name;
  const bars = document.getElementById("bars");
  bars.replaceChildren();
  for (const [label, p] of Object.entries(answer.probabilities)) {
    const row = el("div", { class: "bar" + (label === answer.class_name ? " best" : ""), role: "listitem" });
    const track = el("div", { class: "track" });
    const fill = el("div", { class: "fill" });
    fill.style.width = (100 * p).toFixed(1) + "%";
    track.append(fill);
    row.append(el("span", { class: "label" }, label), track,
      el("span", { class: "value" }, (100 * p).toFixed(1) + " %"));
    bars.append(row);
  }
  showWarnings(answer.warnings);
  document.getElementById("served-by").textContent =
    "Model " + answer.model_name + " version " + answer.model_version;
  resetFeedback(answer.prediction_id);
  document.getElementById("message").hidden = true;
  document.getElementById("placeholder").hidden = true;
  document.getElementById("result").hidden = false;
}

function resetFeedback(predictionId) {
  state.predictionId = predictionId || null;
  document.getElementById("feedback").hidden = !state.predictionId;
  const result = document.getElementById("feedback-result");
  result.hidden = true;
  result.textContent = "";
  result.removeAttribute("data-outcome");
  for (const button of document.querySelectorAll("#feedback-classes button")) {
    button.disabled = false;
    button.setAttribute("aria-pressed", "false");
  }
}

function showFeedback(text, outcome) {
  const result = document.getElementById("feedback-result");
  result.textContent = text;
  result.dataset.outcome = outcome;
  result.hidden = false;
}

async function sendFeedback(trueClass) {
  const predictionId = state.predictionId;
  if (!predictionId) return;
  const buttons = document.querySelectorAll("#feedback-classes button");
  for (const button of buttons) button.disabled = true;
  let done = false;
  try {
    const response = await fetch("/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prediction_id: predictionId, true_class_id: trueClass.id }),
    });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (predictionId !== state.predictionId) return;  // a newer prediction is shown
    if (response.ok && body) {
      done = true;
      for (const button of buttons) {
        button.setAttribute("aria-pressed", String(button.dataset.classId === String(trueClass.id)));
      }
      const verdict = body.correct ? "the prediction was right" : "the prediction was wrong";
      showFeedback((body.recorded ? "Thank you: recorded " : "Already recorded: ") +
        trueClass.name + ", " + verdict + ".", body.correct ? "right" : "wrong");
    } else if (response.status === 409) {
      done = true;
      showFeedback("Another cultivar was recorded for this prediction before; it is kept." +
        (body && body.detail ? "\n(" + body.detail + ")" : ""), "error");
    } else if (response.status === 503) {
      showFeedback("Feedback cannot be recorded right now" +
        (body && body.detail ? ": " + body.detail : "."), "error");
    } else {
      showFeedback("Feedback was refused (HTTP " + response.status + ")" +
        (body && body.detail ? ": " + body.detail : "."), "error");
    }
  } catch (error) {
    showFeedback("Could not reach the prediction service: " + error.message, "error");
  } finally {
    if (!done && predictionId === state.predictionId) {
      for (const button of buttons) button.disabled = false;
    }
  }
}

async function predict(event) {
  event.preventDefault();
  clearMessage();
  const { wine, missing } = readForm();
  if (missing.length) {
    markInvalid(missing.map((f) => f.name));
    showMessage("Please enter a number for: " + missing.map((f) => f.label).join(", ") + ".");
    return;
  }
  const button = document.getElementById("predict");
  button.disabled = true;
  try {
    const response = await fetch("/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(wine),
    });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (response.ok && body) {
      drawResult(body);
    } else if (response.status === 422 && body && Array.isArray(body.errors)) {
      // An RFC 9457 problem document: `errors` names each field and its problem.
      markInvalid(body.errors.map((e) => e.field));
      showMessage("Invalid input:\n" + body.errors.map((e) => "• " + e.problem).join("\n"));
    } else if (response.status === 503) {
      showMessage("The service has no model loaded yet; please try again in a moment." +
        (body && body.detail ? "\n(" + body.detail + ")" : ""));
    } else {
      showMessage("The prediction service answered with an error (HTTP " + response.status + ")" +
        (body && body.detail ? ": " + body.detail : "."));
    }
  } catch (error) {
    showMessage("Could not reach the prediction service: " + error.message);
  } finally {
    button.disabled = false;
  }
}

async function showModel() {
  const status = document.getElementById("model-status");
  try {
    const response = await fetch("/model");
    const body = await response.json();
    if (response.ok) {
      status.textContent = "Served model: " + body.model_name + " version " + body.model_version +
        (body.model_family ? " (" + body.model_family + ")" : "") +
        (body.metrics && body.metrics.accuracy !== undefined
          ? ", test accuracy " + (100 * body.metrics.accuracy).toFixed(1) + " %" : "");
      status.dataset.state = "ready";
      showTrainingRanges(body.training_ranges);
    } else {
      status.textContent = "No model loaded yet: predictions will fail until training has run.";
      status.dataset.state = "error";
    }
  } catch (error) {
    status.textContent = "The prediction service cannot be reached.";
    status.dataset.state = "error";
  }
}

async function init() {
  document.getElementById("wine-form").addEventListener("submit", predict);
  document.getElementById("clear").addEventListener("click", () => {
    clearMessage();
    clearWarnings();
  });
  try {
    const response = await fetch("/features");
    if (!response.ok) throw new Error("HTTP " + response.status);
    buildForm(await response.json());
    document.body.dataset.ready = "true";
  } catch (error) {
    showMessage("Could not load the form's feature list: " + error.message);
  }
  showModel();
}

document.addEventListener("DOMContentLoaded", init);
