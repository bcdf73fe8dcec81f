// Microphones and speakers (docs/js-api.md, "Devices"): listing them, choosing them,
// switching the microphone during a call without renegotiating (the sender's track is
// replaced), and falling back to the default device when the chosen one goes away.
//
// A speaker can be chosen where the browser has HTMLMediaElement.setSinkId (Chromium,
// Firefox 116+); elsewhere (Safari, iOS) the system's output is used and setSpeaker()
// rejects ERR_NOT_SUPPORTED.

import { dcError, ERR } from "./errors.js";
import { getMicrophone } from "./media.js";

/** Whether this browser lets a page choose where the call's sound plays. */
export function speakerSelectionSupported() {
  return typeof HTMLMediaElement !== "undefined" && typeof HTMLMediaElement.prototype.setSinkId === "function";
}

const describe = (err) => (err && (err.message || err.name)) || String(err);
const plain = (info) => ({ deviceId: info.deviceId, groupId: info.groupId, label: info.label });

/**
 * The microphones and speakers: `{microphones, speakers, speakerSelection}`, each device
 * `{deviceId, groupId, label}`. Labels stay empty until the page has used the microphone
 * (a call, or preflight()); speakers are listed only where the browser exposes them.
 */
export async function listDevices() {
  const md = typeof navigator !== "undefined" ? navigator.mediaDevices : null;
  const all = md && md.enumerateDevices ? await md.enumerateDevices() : [];
  return {
    microphones: all.filter((d) => d.kind === "audioinput").map(plain),
    speakers: speakerSelectionSupported() ? all.filter((d) => d.kind === "audiooutput").map(plain) : [],
    speakerSelection: speakerSelectionSupported(),
  };
}

/** The device id a microphone stream captures from (null when the browser does not say). */
function trackDevice(stream) {
  const track = stream && stream.getAudioTracks()[0];
  const settings = track && track.getSettings ? track.getSettings() : {};
  return settings.deviceId || null;
}

/**
 * The devices of one client: the chosen microphone and speaker (null: the default) and
 * the current call's media they apply to (`current()`). Emits `devicechange`
 * `{kind: "microphone" | "speaker", deviceId, label, reason: "selected" | "lost"}`.
 */
export class Devices extends EventTarget {
  constructor(current = () => null) {
    super();
    this.current = current; // () => the Media of the call in progress, or null
    this.microphoneId = null;
    this.speakerId = null;
    this.checking = null;
    this._onChange = () => this.check();
    if (typeof navigator !== "undefined" && navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener("devicechange", this._onChange);
    }
  }

  close() {
    if (typeof navigator !== "undefined" && navigator.mediaDevices && navigator.mediaDevices.removeEventListener) {
      navigator.mediaDevices.removeEventListener("devicechange", this._onChange);
    }
  }

  /** The microphone for a new call: the chosen one, or the default if it cannot be had. */
  async openMicrophone() {
    if (this.microphoneId) {
      try {
        return await getMicrophone(this.microphoneId);
      } catch {
        await this._lost("microphone", null);
      }
    }
    return getMicrophone();
  }

  /** A new call's media: play it through the chosen speaker, follow its microphone. */
  adopt(media) {
    if (this.speakerId && speakerSelectionSupported()) media.setSpeaker(this.speakerId).catch(() => this._lost("speaker", null));
    this._watchTrack(media);
    return media;
  }

  /** Use microphone `deviceId` (null: the default) now and for the next calls. */
  async setMicrophone(deviceId) {
    const media = this.current();
    if (!media) {
      const known = await listDevices();
      if (deviceId && !known.microphones.some((d) => d.deviceId === deviceId)) {
        throw dcError(ERR.DEVICE_UNAVAILABLE, `No microphone with id ${deviceId}.`);
      }
      this.microphoneId = deviceId || null;
    } else {
      await this._switch(media, deviceId || null);
    }
    await this._announce("microphone", this.microphoneId, "selected");
  }

  async _switch(media, deviceId) {
    let stream;
    try {
      stream = await getMicrophone(deviceId);
    } catch (error) {
      throw dcError(ERR.DEVICE_UNAVAILABLE, `That microphone cannot be used: ${error.message || describe(error)}`);
    }
    const muted = media.stream.getAudioTracks().some((t) => !t.enabled);
    try {
      await media.replaceMicrophone(stream);
    } catch (error) {
      stream.getTracks().forEach((t) => t.stop());
      throw dcError(ERR.DEVICE_UNAVAILABLE, `The microphone could not be switched: ${describe(error)}`);
    }
    media.setMuted(muted);
    this.microphoneId = deviceId;
    this._watchTrack(media);
  }

  /** Play calls through speaker `deviceId` (null: the default). */
  async setSpeaker(deviceId) {
    if (!speakerSelectionSupported()) {
      throw dcError(ERR.NOT_SUPPORTED, "This browser plays calls through the system's speaker; it cannot be chosen.");
    }
    const media = this.current();
    if (media) {
      try {
        await media.setSpeaker(deviceId || "");
      } catch (error) {
        throw dcError(ERR.DEVICE_UNAVAILABLE, `That speaker cannot be used: ${describe(error)}`);
      }
    } else if (deviceId) {
      const known = await listDevices();
      if (!known.speakers.some((d) => d.deviceId === deviceId)) {
        throw dcError(ERR.DEVICE_UNAVAILABLE, `No speaker with id ${deviceId}.`);
      }
    }
    this.speakerId = deviceId || null;
    await this._announce("speaker", this.speakerId, "selected");
  }

  /** A microphone that ends by itself (unplugged) is checked at once. */
  _watchTrack(media) {
    const track = media.stream && media.stream.getAudioTracks()[0];
    if (track && track.addEventListener) track.addEventListener("ended", this._onChange, { once: true });
  }

  /** After a devicechange: fall back to the default for a chosen device that is gone. */
  check() {
    if (!this.checking) {
      this.checking = this._check().finally(() => {
        this.checking = null;
      });
    }
    return this.checking;
  }

  async _check() {
    const known = await listDevices();
    const media = this.current();
    const micIds = known.microphones.map((d) => d.deviceId);
    const track = media && media.stream.getAudioTracks()[0];
    const using = media ? trackDevice(media.stream) : this.microphoneId;
    const gone = (track && track.readyState === "ended") || (using && using !== "default" && !micIds.includes(using));
    if (gone) {
      if (media) {
        try {
          await this._switch(media, null);
        } catch {
          // no microphone left at all: the call goes on, silent, until one comes back
        }
      }
      await this._lost("microphone", trackDevice(media && media.stream));
    }
    if (this.speakerId && !known.speakers.some((d) => d.deviceId === this.speakerId)) {
      if (media) await media.setSpeaker("").catch(() => {});
      await this._lost("speaker", null);
    }
  }

  async _lost(kind, deviceId) {
    if (kind === "microphone") this.microphoneId = null;
    else this.speakerId = null;
    await this._announce(kind, deviceId, "lost");
  }

  async _announce(kind, deviceId, reason) {
    let label = "";
    try {
      const known = await listDevices();
      const list = kind === "microphone" ? known.microphones : known.speakers;
      const found = list.find((d) => d.deviceId === (deviceId || "default")) || list.find((d) => d.deviceId === deviceId);
      label = found ? found.label : "";
    } catch {
      // the list is unavailable: the event goes without a label
    }
    this.dispatchEvent(new CustomEvent("devicechange", { detail: { kind, deviceId: deviceId || null, label, reason } }));
  }
}
