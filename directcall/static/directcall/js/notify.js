// Browser notifications: asking for the permission, and telling a hidden page of a ringing call.

import { isValidUrl } from "./validation.js";

/** Ask for the notification permission if the user has not decided yet (a courtesy). */
export function askNotificationPermission() {
  if (typeof Notification !== "undefined" && Notification.permission === "default") {
    Notification.requestPermission().catch(() => {});
  }
}

/** Show a notification of the incoming `call` when the page is hidden (title from `screens`, if any). */
export function notifyIncoming(call, screens) {
  if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
  if (!document.hidden) return;
  try {
    const title = screens ? screens.label("notification") : "Incoming call";
    // Notification text is plain text; the icon only if it is an http(s) URL.
    const options = { body: `${call.peer.name}: ${call.context}`, tag: `directcall-${call.id}` };
    if (isValidUrl(call.image)) options.icon = call.image;
    call.notification = new Notification(title, options);
    call.notification.onclick = () => window.focus();
  } catch {
    /* notifications are a courtesy */
  }
}
