// Taking a call back after a reload or a navigation: the call record this tab keeps in
// sessionStorage, what the `auth` frame asks about, and the answered call rebuilt from it.

import { Call } from "./call.js";
import { clearCallRecord, readCallRecord, writeCallRecord } from "./storage.js";
import { isValidUrl } from "./validation.js";

/**
 * The calls to ask about: the current one when reconnecting, with its key so that this
 * connection is bound to it; on the first sign-in, the one this tab held before a reload.
 */
export function resumeList(call, signedIn, cuid) {
  if (call && call.id) return [call.callKey ? { call_id: call.id, call_key: call.callKey } : call.id];
  if (signedIn) return [];
  // Only an answered call can be taken back by a new page: one that still rang went with
  // the page that placed it (its offer and its call() promise are gone; the server cancels it).
  const record = readCallRecord();
  if (record && record.cuid === cuid && record.answered_at) {
    return [{ call_id: record.call_id, call_key: record.call_key }];
  }
  return [];
}

/**
 * The Call fields of the call this tab held before the page reloaded or navigated, if the
 * server has handed it back (listed answered in `ready.calls`); else null (record cleared).
 */
export function resumedCallFields(ready, cuid) {
  const record = readCallRecord();
  if (!record) return null;
  const summary =
    record.cuid === cuid &&
    (ready.calls || []).find((c) => c && c.call_id === record.call_id && c.status === "answered");
  if (!summary) {
    clearCallRecord();
    return null;
  }
  const peer = summary.peer && typeof summary.peer.cuid === "string" ? summary.peer : record.peer;
  const image = [peer.image, record.peer.image].find((url) => isValidUrl(url)) || null;
  const answeredAt = Number(summary.answered_at || record.answered_at) * 1000 || Date.now();
  return {
    role: summary.role === "caller" || summary.role === "callee" ? summary.role : record.role,
    id: summary.call_id,
    status: "answered",
    answeredAt,
    peer: { cuid: peer.cuid, name: peer.name || peer.cuid },
    context: String(summary.context ?? record.context ?? ""),
    image,
    callKey: record.call_key,
  };
}

/** The Call rebuilt from resumedCallFields (or null), its call() promise awaited by no page. */
export function resumedCall(ready, cuid, env) {
  const fields = resumedCallFields(ready, cuid);
  if (!fields) return null;
  const call = new Call(fields, env);
  call.result.catch(() => {}); // the page that awaited call() is gone
  return call;
}

/** Keep the call this tab holds (for `cuid`) in sessionStorage, for a reload or a navigation. */
export function saveCallRecord(cuid, call) {
  if (!call.id || !call.callKey || call.isOver) return;
  writeCallRecord({
    cuid,
    call_id: call.id,
    call_key: call.callKey,
    role: call.role,
    answered_at: call.answeredAt ? call.answeredAt / 1000 : null,
    peer: { cuid: call.peer.cuid, name: call.peer.name, image: call.image },
    context: call.context,
  });
}
