// What the call screens show besides the call itself (mounted into the screens' regions,
// screens.mount): a connection indicator and a short "weak connection" notice during a
// call (quality.js), a device picker (devices.js), and after an answered call, when the
// account asks for feedback, a rating prompt (client.postFeedback()). Every text goes
// through screens.t() (directcall/screen_strings.py), every value is set as text.

import { listDevices } from "./devices.js";
import { FEEDBACK_ISSUES } from "./feedback.js";
import { LEVEL_WARNING } from "./quality.js";

// English for markup that predates these texts (a host's overridden template); the server's
// markup carries them translated (directcall/screen_strings.py has the same keys).
export const WIDGET_STRINGS = Object.freeze({
  connectionLabel: "Connection quality: %(bars)s of 5",
  weakConnection: "Weak connection",
  silentMicrophone: "Your microphone seems silent",
  audioDevices: "Audio devices",
  microphone: "Microphone",
  speaker: "Speaker",
  defaultDevice: "Default",
  announceMicrophone: "Microphone: %(name)s",
  announceSpeaker: "Speaker: %(name)s",
  rateCall: "How was the call with %(name)s?",
  rateScore: "%(score)s of 5",
  feedbackIssues: "What went wrong?",
  issueAudioLatency: "Audio delay",
  issueChoppyAudio: "Choppy audio",
  issueDroppedCall: "Dropped call",
  issueEcho: "Echo",
  issueNoisyCall: "Noise",
  issueOneWayAudio: "Only one of us could hear",
  sendFeedback: "Send",
  skipFeedback: "Not now",
  announceFeedbackThanks: "Thank you for your feedback",
});

/** "one-way-audio" -> "issueOneWayAudio": the screen string of a feedback issue. */
const issueKey = (issue) => `issue${issue.replace(/(^|-)([a-z])/g, (_, _dash, c) => c.toUpperCase())}`;

function element(tag, props = {}, children = []) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") el.textContent = value;
    else if (key === "className") el.className = value;
    else el.setAttribute(key, value);
  }
  el.append(...children);
  return el;
}

/** Mount the widgets into `screens` for `client`; returns `{update(call, type, detail)}`. */
export function mountWidgets(client, screens) {
  const t = (key, params = {}) => screens.t(key, params, WIDGET_STRINGS[key]);
  return new Widgets(client, screens, t);
}

class Widgets {
  constructor(client, screens, t) {
    this.client = client;
    this.screens = screens;
    this.t = t;
    this.bars = element("span", { className: "dc-signal", role: "img", hidden: "" });
    for (let i = 1; i <= 5; i++) this.bars.append(element("span", { className: `dc-bar dc-bar-${i}` }));
    screens.mount("indicator", this.bars);
    this.notice = element("p", { className: "dc-weak", hidden: "" });
    screens.mount("notice", this.notice);
    this.warnings = new Set();
    this.picker = this._picker();
    screens.mount("controls", this.picker.root);
    client.addEventListener("devicechange", (e) => this._onDeviceChange(e.detail));
  }

  /** A call event, as the screens see it (ui.js relays them here). */
  update(call, type, detail) {
    if (type === "quality") this._showBars(detail.bars);
    else if (type === "warning" || type === "warningcleared") this._onWarning(type === "warning", detail.name);
    else if (type === "end") {
      this._reset();
      if (detail.duration !== null && this.client.feedback && call.id) this._askRating(call);
    }
  }

  _reset() {
    this.warnings.clear();
    this._showNotice();
    this.bars.hidden = true;
    this.picker.close();
  }

  // -- connection indicator and notice ----------------------------------------------------

  _showBars(bars) {
    if (!bars) return;
    this.bars.hidden = false;
    this.bars.setAttribute("data-bars", String(bars));
    this.bars.setAttribute("aria-label", this.t("connectionLabel", { bars }));
    this.bars.setAttribute("title", this.t("connectionLabel", { bars }));
  }

  _onWarning(raised, name) {
    if (raised) this.warnings.add(name);
    else this.warnings.delete(name);
    this._showNotice(raised);
  }

  _showNotice(announce = false) {
    const network = [...this.warnings].some((name) => name !== LEVEL_WARNING);
    const key = network ? "weakConnection" : this.warnings.has(LEVEL_WARNING) ? "silentMicrophone" : null;
    const text = key ? this.t(key) : "";
    const changed = this.notice.textContent !== text;
    this.notice.textContent = text;
    this.notice.hidden = !key;
    this.notice.setAttribute("data-warning", key || "");
    if (announce && changed && key) this.screens.announce(text);
  }

  // -- device picker ---------------------------------------------------------------------------

  _picker() {
    const toggle = element("button", {
      type: "button",
      className: "dc-btn dc-plain dc-devices-toggle",
      "aria-expanded": "false",
      text: this.t("audioDevices"),
    });
    const mic = element("select", { className: "dc-select", "data-device": "microphone" });
    const speaker = element("select", { className: "dc-select", "data-device": "speaker" });
    const speakerField = element("label", { className: "dc-field" }, [this.t("speaker"), speaker]);
    const panel = element("div", { className: "dc-devices", hidden: "" }, [
      element("label", { className: "dc-field" }, [this.t("microphone"), mic]),
      speakerField,
    ]);
    const root = element("div", { className: "dc-device-picker" }, [toggle, panel]);
    const close = () => {
      panel.hidden = true;
      toggle.setAttribute("aria-expanded", "false");
    };
    const fill = async () => {
      const found = await listDevices().catch(() => null);
      if (!found) return;
      const options = (select, devices, chosen) => {
        select.replaceChildren(
          element("option", { value: "", text: this.t("defaultDevice") }),
          ...devices
            .filter((d) => d.deviceId && d.deviceId !== "default")
            .map((d, i) => element("option", { value: d.deviceId, text: d.label || `${select.dataset.device} ${i + 1}` })),
        );
        select.value = chosen || "";
      };
      options(mic, found.microphones, this.client.devices.microphoneId);
      options(speaker, found.speakers, this.client.devices.speakerId);
      // Firefox has setSinkId but lists a speaker only once the user picked it in its own
      // prompt (selectAudioOutput): without any listed, there is nothing to choose.
      speakerField.hidden = !found.speakerSelection || !found.speakers.length;
    };
    toggle.addEventListener("click", async () => {
      if (!panel.hidden) return close();
      await fill();
      panel.hidden = false;
      toggle.setAttribute("aria-expanded", "true");
      mic.focus();
    });
    const choose = (select, set) =>
      select.addEventListener("change", () => set(select.value || null).catch(() => fill()));
    choose(mic, (id) => this.client.setMicrophone(id));
    choose(speaker, (id) => this.client.setSpeaker(id));
    return { root, close, fill };
  }

  _onDeviceChange({ kind, label }) {
    if (this.screens.screen !== "ongoing") return;
    const name = label || this.t("defaultDevice");
    this.screens.announce(this.t(kind === "speaker" ? "announceSpeaker" : "announceMicrophone", { name }));
    this.picker.fill();
  }

  // -- rating prompt -------------------------------------------------------------------------

  _askRating(call) {
    let score = 0;
    const titleId = `dc-rate-${call.id}`;
    const title = element("p", { className: "dc-rate-title", id: titleId, text: this.t("rateCall", { name: call.peer.name }) });
    const stars = [1, 2, 3, 4, 5].map((n) =>
      element("button", {
        type: "button",
        className: "dc-star",
        "data-score": String(n),
        "aria-pressed": "false",
        "aria-label": this.t("rateScore", { score: n }),
        text: "★",
      }),
    );
    const starRow = element("div", { className: "dc-stars", role: "group", "aria-labelledby": titleId }, stars);
    const boxes = FEEDBACK_ISSUES.map((issue) => element("input", { type: "checkbox", value: issue }));
    const issues = element("fieldset", { className: "dc-issues" }, [
      element("legend", { text: this.t("feedbackIssues") }),
      ...boxes.map((box) => element("label", { className: "dc-issue" }, [box, this.t(issueKey(box.value))])),
    ]);
    const send = element("button", { type: "button", className: "dc-btn dc-green", disabled: "", text: this.t("sendFeedback") });
    const skip = element("button", { type: "button", className: "dc-btn dc-plain", text: this.t("skipFeedback") });
    const root = element("div", { className: "dc-rating" }, [
      title,
      starRow,
      issues,
      element("div", { className: "dc-actions" }, [send, skip]),
    ]);
    for (const star of stars) {
      star.addEventListener("click", () => {
        score = Number(star.dataset.score);
        for (const other of stars) other.setAttribute("aria-pressed", String(Number(other.dataset.score) <= score));
        send.removeAttribute("disabled");
      });
    }
    const close = this.screens.showPrompt(root, { label: this.t("rateCall", { name: call.peer.name }) });
    skip.addEventListener("click", () => close());
    send.addEventListener("click", async () => {
      send.setAttribute("disabled", "");
      const chosen = boxes.filter((box) => box.checked).map((box) => box.value);
      try {
        await this.client.postFeedback(score, chosen, call.id);
        this.screens.announce(this.t("announceFeedbackThanks"));
      } finally {
        close();
      }
    });
  }
}
