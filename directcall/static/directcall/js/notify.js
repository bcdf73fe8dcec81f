// Browser notifications: asking for the permission, and telling the user of a call that rings
// while every tab of this device is hidden.
//
// The tabs of one browser ring together (docs/protocol.md, "Tabs"). A tab that shows a ringing
// call visibly says so on the BroadcastChannel `directcall.ringing` (`{type: "shown", callId}`),
// when it starts ringing, when it becomes visible, and when a hidden tab asks
// (`{type: "visible?", callId}`). A hidden tab asks, waits VISIBLE_WAIT_MS, and shows the
// notification only if no tab answered; one of the hidden tabs shows it (a Web Lock named
// after the call), and a tab that shows the call later closes it. Without BroadcastChannel,
// each hidden tab decides alone (their notifications share a tag: the browser shows one).

import { isValidUrl } from "./validation.js";

export const CHANNEL_NAME = "directcall.ringing";
// How long a hidden tab waits for a visible one to say it shows the call.
export const VISIBLE_WAIT_MS = 400;

let channel; // this page's BroadcastChannel (null: none), made at the first ringing call
const ringing = new Map(); // call id -> the Call ringing in this page
const waiting = new Map(); // call id -> resolve(), for a hidden tab waiting for "shown"

const isHidden = () => typeof document !== "undefined" && document.hidden === true;

function post(message) {
  try {
    if (channel) channel.postMessage(message);
  } catch {
    /* a closed channel: nothing to tell */
  }
}

function onMessage(message) {
  if (!message || typeof message.callId !== "string") return;
  const { callId } = message;
  if (message.type === "visible?") {
    if (ringing.has(callId) && !isHidden()) post({ type: "shown", callId });
  } else if (message.type === "shown") {
    const done = waiting.get(callId);
    if (done) done(true);
    const call = ringing.get(callId);
    if (call && call.notification) {
      call.notification.close(); // another tab shows the call now
      call.notification = null;
    }
  }
}

/** Tell the other tabs about each call ringing here, once this page is visible. */
function announceRinging() {
  if (isHidden()) return;
  for (const callId of ringing.keys()) post({ type: "shown", callId });
}

function tabsChannel() {
  if (channel !== undefined) return channel;
  channel = null;
  try {
    // Only in a page: a channel made outside one (server-side rendering) would only keep it alive.
    if (typeof BroadcastChannel === "function" && typeof document !== "undefined") {
      channel = new BroadcastChannel(CHANNEL_NAME);
      channel.onmessage = (event) => onMessage(event.data);
      document.addEventListener("visibilitychange", announceRinging);
    }
  } catch {
    channel = null; // an opaque origin
  }
  return channel;
}

/** Resolves true if a visible tab says it shows call `callId` within VISIBLE_WAIT_MS. */
function shownElsewhere(callId) {
  return new Promise((resolve) => {
    const done = (shown) => {
      clearTimeout(timer);
      waiting.delete(callId);
      resolve(shown);
    };
    const timer = setTimeout(() => done(false), VISIBLE_WAIT_MS);
    waiting.set(callId, done);
    post({ type: "visible?", callId });
  });
}

/** Run `show` in one hidden tab of this device (a Web Lock held while the call rings here). */
function inOneTab(call, show) {
  const locks = globalThis.navigator && globalThis.navigator.locks;
  if (!locks || typeof locks.request !== "function") return show();
  const rung = new Promise((resolve) => call.addEventListener("end", resolve, { once: true }));
  try {
    locks
      .request(`directcall.notify.${call.id}`, { ifAvailable: true }, (lock) => {
        if (!lock || call.isOver) return (call.notified = false);
        show();
        return rung; // keep it while the call rings here: the other hidden tabs stay quiet
      })
      .catch(() => {});
  } catch {
    show();
  }
}

/** Ask for the notification permission if the user has not decided yet (a courtesy). */
export function askNotificationPermission() {
  if (typeof Notification !== "undefined" && Notification.permission === "default") {
    Notification.requestPermission().catch(() => {});
  }
}

/**
 * Follow the incoming `call` ringing in this page: tell the other tabs when it is shown
 * here, and show a notification (title from `screens`, if any) when every tab is hidden.
 * `call.notified` becomes true or false once this page has decided.
 */
export async function notifyIncoming(call, screens) {
  call.notified = null;
  const ch = tabsChannel();
  if (call.id && !call.isOver) {
    ringing.set(call.id, call);
    call.addEventListener("end", () => ringing.delete(call.id), { once: true });
  }
  if (!isHidden()) {
    post({ type: "shown", callId: call.id });
    call.notified = false;
    return;
  }
  if (typeof Notification === "undefined" || Notification.permission !== "granted") {
    call.notified = false;
    return;
  }
  if (ch && (await shownElsewhere(call.id))) {
    call.notified = false;
    return;
  }
  if (call.isOver || !isHidden()) {
    call.notified = false;
    return;
  }
  inOneTab(call, () => show(call, screens));
}

function show(call, screens) {
  try {
    const title = screens ? screens.label("notification") : "Incoming call";
    // Notification text is plain text; the icon only if it is an http(s) URL.
    const options = { body: `${call.peer.name}: ${call.context}`, tag: `directcall-${call.id}` };
    if (isValidUrl(call.image)) options.icon = call.image;
    call.notification = new Notification(title, options);
    call.notification.onclick = () => window.focus();
    call.notified = true;
  } catch {
    call.notified = false; /* notifications are a courtesy */
  }
}
