// The client's two-way link with what the user sees: the call screens' buttons act on the
// current call, blocked audio is retried from a click, and each Call's events reach the
// screens first, then the page (under the names in docs/js-api.md), the call record kept
// for a reload and the CleverTap events.

import { trackCall } from "./clevertap.js";
import { ANSWERED_ELSEWHERE } from "./outcome.js";
import { clearCallRecord } from "./storage.js";
import { saveCallRecord } from "./resume.js";
import { Screens } from "./screens.js";
import { mountWidgets } from "./widgets.js";

// A Call's events (call.js) that the page sees, under their public names.
const PUBLIC_EVENTS = {
  statechange: "statechange",
  media: "media",
  peer: "peer",
  mute: "mute",
  audioblocked: "audioblocked",
  error: "error",
  quality: "quality",
  warning: "warning",
  warningcleared: "warningcleared",
  end: "callend",
};
const CALL_EVENTS = ["placed", "connecting", "answered", "reconnecting", ...Object.keys(PUBLIC_EVENTS)];

/** The call screens for `client` (null without markup), their buttons wired to its current call. */
export function mountScreens(client, markup, session) {
  if (!markup) return null;
  const screens = new Screens(markup, session.branding || {}, {
    ringtone: session.ringtone || client.config.ringtone,
    assetsUrl: client.config.assetsUrl,
  });
  screens.addEventListener("action", (e) => onAction(client, e.detail));
  screens.addEventListener("audioblocked", (e) => {
    if (client.current) client._emit("audioblocked", { callId: client.current.id, kind: e.detail.kind });
  });
  // The connection indicator, weak-connection notice, device picker and rating prompt.
  client.widgets = mountWidgets(client, screens);
  return screens;
}

async function onAction(client, action) {
  if (action === "enable-audio") return enableAudio(client);
  const call = client.current;
  if (!call) return;
  if (action === "answer") await call.answer();
  else if (action === "decline") call.decline();
  else if (action === "cancel" || action === "hangup") call.hangup();
  else if (action === "mute") call.setMuted(!call.muted);
}

/** Play what the browser refused to start without a gesture; resolves whether all plays now. */
export async function enableAudio(client) {
  const tries = [];
  const media = client.current && client.current.media;
  if (media && media.audioBlocked) tries.push(media.playRemote());
  if (client.screens) tries.push(client.screens.retryTone());
  const results = await Promise.allSettled(tries);
  const playing = results.every((r) => r.status === "fulfilled");
  if (playing && client.screens) client.screens.setRemoteBlocked(false);
  return playing;
}

/** Make `call` the client's current one and relay its events: screens first, then the page. */
export function adoptCall(client, call) {
  client.current = call;
  for (const type of CALL_EVENTS) {
    call.addEventListener(type, (event) => relay(client, call, type, event.detail));
  }
}

function relay(client, call, type, detail) {
  const { config, session, screens } = client;
  if (screens && call.showScreens) {
    screens.update(call, type, detail);
    client.widgets.update(call, type, detail);
  }
  if (type === "placed") {
    saveCallRecord(config.cuid, call);
    trackCall(config, session, "DCOutgoing", call);
  }
  if (type === "answered") saveCallRecord(config.cuid, call);
  if (type === "end") {
    if (client.current === call) client.current = null;
    if (detail.duration !== null && call.id) client.lastAnsweredCall = call.id; // postFeedback()
    if (client.resumedCall === call) client.resumedCall = null;
    clearCallRecord(call.id);
    // The tab that answered reports the call; the others only stop ringing.
    if (call.id && detail.status !== ANSWERED_ELSEWHERE) {
      trackCall(config, session, "DCEnd", call, { call_status: detail.status });
    }
  }
  if (PUBLIC_EVENTS[type]) client._emit(PUBLIC_EVENTS[type], detail);
}
