// What the client does as its signaling connection and its page come and go: the current
// call waits for the connection (and ends with ERR_INTERNET_LOST only when it does not come
// back), frames held for it are sent once it is back, a network change restarts ICE, a page
// being left says so, and a revoked or refused session signs the client out.

import { ERR } from "./errors.js";
import { markCallRecordLeft } from "./storage.js";

/** Follow `client`'s connection and page; returns the function that stops following. */
export function followConnection(client) {
  const { signaling } = client;
  signaling.addEventListener("down", (e) => down(client, e.detail));
  signaling.addEventListener("up", (e) => up(client, e.detail));
  const online = () => client.current && client.current.restartIce();
  // Leaving the page (reload, navigation, closing the tab) with an answered call: tell the
  // server, so that the other side waits only PAGE_GRACE for this page to come back.
  // The call record is marked as left: the next page of this tab may take the call back, a
  // copy of this tab made while this page lives (its record has no mark) may not (resume.js).
  const pagehide = () => {
    const call = client.current;
    if (call && call.id && call.status === "answered" && !call.isOver) signaling.send({ type: "leaving" });
    markCallRecordLeft(Date.now());
  };
  // Back from the back/forward cache: this page holds its call again.
  const pageshow = (event) => {
    if (event.persisted) markCallRecordLeft(null);
  };
  window.addEventListener("online", online);
  window.addEventListener("pagehide", pagehide);
  window.addEventListener("pageshow", pageshow);
  return () => {
    window.removeEventListener("online", online);
    window.removeEventListener("pagehide", pagehide);
    window.removeEventListener("pageshow", pageshow);
  };
}

/** The host revoked this session (its user logged out, …): close 4011 follows. Signed out. */
export function revoked(client, error) {
  const call = client.current;
  if (call) call.signalingLost({ final: true, error });
  client._logout({ reason: "revoked", error });
}

function down(client, detail) {
  const final = !!detail.final;
  const error = detail.error || null;
  client._emit("connection", { state: "down", final });
  const call = client.current;
  if (call) call.signalingLost({ final, graceMs: (client.reconnectGrace + 2) * 1000, error });
  // Closed for good with a reason (revoked, origin refused, another device): signed out.
  if (final && error && !client.loggedOut) {
    client._logout(error.code === ERR.SESSION_REVOKED ? { reason: "revoked", error } : { reason: "refused", error });
  }
}

function up(client, ready) {
  client._onReady(ready);
  for (const frame of client.outbox.splice(0)) client.signaling.send(frame);
  client._emit("connection", { state: "up" });
  const call = client.current;
  if (call) call.signalingBack((ready.calls || []).some((c) => c.call_id === call.id));
}
