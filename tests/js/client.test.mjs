// The device-level client (client.js) in node, with a fake socket and storage: tabs of one
// device (the device key), a call that rang in several tabs, the call a tab keeps for a reload
// and takes back, leaving the page, one client per page, and why a connection was refused.
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";

import { DirectCallClient, initDirectCall } from "../../directcall/static/directcall/js/client.js";
import { RING_BOUND_MARGIN_S } from "../../directcall/static/directcall/js/call.js";
import { ERR } from "../../directcall/static/directcall/js/errors.js";
import { LOCK_WAIT_MS } from "../../directcall/static/directcall/js/resume.js";
import { CALL_ITEM, DEVICE_KEY_ITEM } from "../../directcall/static/directcall/js/storage.js";
import { FakeMedia, flush, installTab, makeStream, MemoryStorage } from "./fakes.mjs";

const KEY = "devkey_" + "a".repeat(36);
const CALL_KEY = "callkey_" + "b".repeat(35);
const OPTIONS = {
  accountId: "acct1",
  apikey: "pre.secret",
  cuid: "tutor_jane",
  clevertap: null,
  showScreens: false,
  serverUrl: "http://127.0.0.1:8000/directcall/",
};
const READY = { type: "ready", cuid: "tutor_jane", name: "Jane", calls: [], reconnect_grace: 20, page_grace: 8 };

// Media in node: the fakes (a Call's env comes from the client).
const realEnv = DirectCallClient.prototype._callEnv;
DirectCallClient.prototype._callEnv = function () {
  const env = realEnv.call(this);
  this.medias = this.medias || [];
  return {
    ...env,
    getMicrophone: async () => makeStream(),
    createMedia: (stream, onCandidates) => {
      const media = new FakeMedia(stream, onCandidates);
      this.medias.push(media);
      return media;
    },
  };
};

let tab = null;
const clients = [];
afterEach(() => {
  for (const client of clients.splice(0)) client.logout(); // no reconnect timer outlives its test
  if (tab) tab.restore();
  tab = null;
});

async function until(predicate, what) {
  for (const started = Date.now(); Date.now() - started < 5000; ) {
    if (predicate()) return;
    await flush();
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The server answers `ws` (open, its auth sent) with `ready`: `pending` resolves the client. */
async function readyOn(ws, pending) {
  ws.receive(READY);
  const client = await pending;
  clients.push(client);
  assert.equal(client.cuid, "tutor_jane");
  return client;
}

/** initDirectCall in `tab`, the server's part played with `ready` (or a refusal). */
async function signIn(t, { ready = READY, options = OPTIONS } = {}) {
  const socketsBefore = t.sockets.length;
  const pending = initDirectCall({ ...options });
  await until(() => t.sockets.length > socketsBefore, "the socket");
  const ws = t.sockets.at(-1);
  ws.open();
  const auth = ws.sent[0];
  ws.receive(ready);
  const client = await pending;
  clients.push(client);
  const seen = [];
  for (const type of ["resumed", "callend", "logout", "error", "incoming", "audioblocked"]) {
    client.addEventListener(type, (e) => seen.push([type, e.detail]));
  }
  return { client, ws, auth, seen };
}

const incoming = { type: "incoming", call_id: "call-9", caller: { cuid: "student_sam", name: "Sam" }, context: "Hi", sdp: "o" };

// -- tabs of one device ---------------------------------------------------------------------------

test("the first tab stores the device key the server issues; the next tab presents it", async () => {
  tab = installTab();
  const first = await signIn(tab, { ready: { ...READY, device_key: KEY } });
  assert.equal(first.auth.type, "auth");
  assert.equal("device_key" in first.auth, false);
  assert.equal(tab.localStorage.getItem(DEVICE_KEY_ITEM), KEY);
  first.client.logout();
  const second = await signIn(tab);
  assert.equal(second.auth.device_key, KEY);
  assert.equal(second.auth.token, "tok");
  assert.deepEqual(second.auth.resume, []);
});

test("refused while another tab signs in for the first time: tried again once its key arrives", async () => {
  tab = installTab();
  const pending = initDirectCall({ ...OPTIONS });
  await until(() => tab.sockets.length === 1, "the socket");
  tab.sockets[0].open();
  tab.sockets[0].receive({ type: "error", code: "ERR_ALREADY_SIGNEDIN", message: "elsewhere" });
  tab.localStorage.setItem(DEVICE_KEY_ITEM, KEY); // the other tab got `ready`
  await until(() => tab.sockets.length === 2, "a second socket");
  const ws = tab.sockets[1];
  ws.open();
  assert.equal(ws.sent[0].device_key, KEY);
  await readyOn(ws, pending);
});

test("refused with no key coming: ERR_ALREADY_SIGNEDIN (another device)", async () => {
  tab = installTab();
  const pending = initDirectCall({ ...OPTIONS });
  await until(() => tab.sockets.length === 1, "the socket");
  tab.sockets[0].open();
  tab.sockets[0].receive({ type: "error", code: "ERR_ALREADY_SIGNEDIN", message: "elsewhere" });
  await assert.rejects(pending, (error) => error.code === ERR.ALREADY_SIGNEDIN && error.message === "elsewhere");
  assert.equal(tab.sockets.length, 1);
});

test("refused while another, closed browser's hold lasts: signed in when it ends", async (t) => {
  tab = installTab();
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const pending = initDirectCall({ ...OPTIONS });
  await until(() => tab.sockets.length === 1, "the socket");
  tab.sockets[0].open();
  tab.sockets[0].receive({ type: "error", code: "ERR_ALREADY_SIGNEDIN", message: "elsewhere", retry_after: 11 });
  tab.sockets[0].closeFromServer(4002);
  await flush();
  t.mock.timers.tick(10900);
  await flush();
  assert.equal(tab.sockets.length, 1); // not before the hold has ended
  t.mock.timers.tick(200);
  await until(() => tab.sockets.length === 2, "a second socket");
  t.mock.timers.reset();
  const ws = tab.sockets[1];
  ws.open();
  await readyOn(ws, pending);
});

test("a hold longer than a minute is not waited for; the error stays {code, message}", async () => {
  tab = installTab();
  const pending = initDirectCall({ ...OPTIONS });
  await until(() => tab.sockets.length === 1, "the socket");
  tab.sockets[0].open();
  tab.sockets[0].receive({ type: "error", code: "ERR_ALREADY_SIGNEDIN", message: "elsewhere", retry_after: 62 });
  const error = await pending.catch((e) => e);
  assert.deepEqual(error, { code: "ERR_ALREADY_SIGNEDIN", message: "elsewhere" });
  assert.equal(JSON.stringify(error), '{"code":"ERR_ALREADY_SIGNEDIN","message":"elsewhere"}');
  assert.equal(tab.sockets.length, 1);
});

test("an old server's `replaced` signs this tab out quietly", async () => {
  tab = installTab();
  const { client, ws, seen } = await signIn(tab);
  ws.receive({ type: "replaced" });
  assert.deepEqual(seen, [["logout", { reason: "replaced" }]]);
  const refused = await client.call("student_sam", "hi").catch((e) => e);
  assert.equal(refused.code, ERR.NOT_INITIALIZED);
});

test("a call that rang here was answered in another tab: callend answered_elsewhere, nothing sent", async () => {
  tab = installTab();
  const { client, ws, seen } = await signIn(tab);
  ws.receive(incoming);
  assert.deepEqual(ws.sent.at(-1), { type: "ringing", call_id: "call-9" });
  const sent = ws.sent.length;
  ws.receive({ type: "state", call_id: "call-9", status: "answered", elsewhere: true });
  assert.deepEqual(seen.filter((e) => e[0] === "callend").map((e) => e[1].status), ["answered_elsewhere"]);
  assert.equal(client.activeCall, null);
  assert.equal(ws.sent.length, sent);
  assert.equal(tab.sessionStorage.getItem(CALL_ITEM), null);
});

test("a call whose end never reaches the callee stops ringing on its own; the next call rings", async (t) => {
  tab = installTab();
  const { client, ws, seen } = await signIn(tab);
  t.mock.timers.enable({ apis: ["setTimeout"] });
  ws.receive({ ...incoming, ring_timeout: 1 });
  assert.deepEqual(ws.sent.at(-1), { type: "ringing", call_id: "call-9" });
  // The server's "missed" is lost: the client's own bound (ring timeout + margin) ends it.
  t.mock.timers.tick((1 + RING_BOUND_MARGIN_S) * 1000 - 1);
  assert.equal(client.activeCall?.callId, "call-9");
  t.mock.timers.tick(1);
  await flush();
  const ends = seen.filter((e) => e[0] === "callend").map((e) => [e[1].callId, e[1].status]);
  assert.deepEqual(ends, [["call-9", "missed"]]);
  assert.equal(client.activeCall, null);
  // The next call is shown, not refused as busy by a screen that rings for ever.
  ws.receive({ ...incoming, call_id: "call-10", ring_timeout: 1 });
  assert.deepEqual(ws.sent.at(-1), { type: "ringing", call_id: "call-10" });
  assert.equal(ws.sent.some((f) => f.type === "decline"), false);
  assert.deepEqual(seen.filter((e) => e[0] === "incoming").map((e) => e[1].callId), ["call-9", "call-10"]);
  assert.equal(client.activeCall?.callId, "call-10");
});

test("answering in two tabs at once: the loser's ERR_CALL_STATE is no error event", async () => {
  tab = installTab();
  const { client, ws, seen } = await signIn(tab);
  ws.receive(incoming);
  await client.answer();
  ws.receive({ type: "error", code: "ERR_CALL_STATE", message: "m", call_id: "call-9", in_reply_to: "accept" });
  ws.receive({ type: "state", call_id: "call-9", status: "answered", elsewhere: true });
  assert.deepEqual(seen.filter((e) => e[0] === "error"), []);
  assert.equal(client.medias[0].closed.keepStream, false);
  // Other refusals are still errors.
  ws.receive({ type: "error", code: "ERR_RATE_LIMITED", message: "slow down" });
  assert.deepEqual(seen.filter((e) => e[0] === "error").map((e) => e[1].code), ["ERR_RATE_LIMITED"]);
});

// -- the call a tab keeps for a reload ---------------------------------------------------------------

test("the caller's tab keeps its call (with the key from invited) and forgets it at the end", async () => {
  tab = installTab();
  const { client, ws } = await signIn(tab);
  const result = client.call("student_sam", "Homework");
  await until(() => ws.sent.some((f) => f.type === "invite"), "the invite");
  const invite = ws.sent.find((f) => f.type === "invite");
  ws.receive({ type: "invited", ref: invite.ref, call_id: "call-1", receiver: { cuid: "student_sam", name: "Sam" }, call_key: CALL_KEY });
  await flush();
  const kept = JSON.parse(tab.sessionStorage.getItem(CALL_ITEM));
  assert.deepEqual(kept, {
    cuid: "tutor_jane",
    call_id: "call-1",
    call_key: CALL_KEY,
    role: "caller",
    answered_at: null,
    peer: { cuid: "student_sam", name: "Sam", image: null },
    context: "Homework",
  });
  ws.receive({ type: "state", call_id: "call-1", status: "answered", sdp: "a" });
  await flush();
  assert.ok(JSON.parse(tab.sessionStorage.getItem(CALL_ITEM)).answered_at > 1_600_000_000);
  // While it holds the call, a reconnect binds the new connection with the key.
  ws.closeFromServer(1006);
  ws.receive({ type: "state", call_id: "call-1", status: "over", reason: "user_hangup" });
  assert.equal(await result, "over");
  assert.equal(tab.sessionStorage.getItem(CALL_ITEM), null);
});

test("a reconnecting tab presents its call with the call key", async (t) => {
  tab = installTab();
  const { client, ws } = await signIn(tab);
  ws.receive(incoming);
  await client.answer();
  ws.receive({ type: "state", call_id: "call-9", status: "answered", call_key: CALL_KEY });
  assert.equal(JSON.parse(tab.sessionStorage.getItem(CALL_ITEM)).call_key, CALL_KEY);
  t.mock.timers.enable({ apis: ["setTimeout"] });
  ws.closeFromServer(1006);
  t.mock.timers.tick(20_000);
  t.mock.timers.reset();
  await until(() => tab.sockets.length === 2, "the reconnect");
  tab.sockets[1].open();
  assert.deepEqual(tab.sockets[1].sent[0].resume, [{ call_id: "call-9", call_key: CALL_KEY }]);
});

function keepCall(storage, record = {}) {
  storage.setItem(
    CALL_ITEM,
    JSON.stringify({
      cuid: "tutor_jane",
      call_id: "call-1",
      call_key: CALL_KEY,
      role: "caller",
      answered_at: 1_700_000_000,
      peer: { cuid: "student_sam", name: "Sam", image: "https://img.example/sam.png" },
      context: "Homework",
      left: Date.now() - 500, // the page before went away (pagehide) half a second ago
      ...record,
    }),
  );
}

const summary = {
  call_id: "call-1",
  status: "answered",
  role: "caller",
  peer: { cuid: "student_sam", name: "Sam S." },
  context: "Homework",
  answered_at: 1_700_000_100,
};

test("after a reload: resume with the key, the call back answered, a replace offer, `resumed`", async () => {
  tab = installTab();
  keepCall(tab.sessionStorage);
  const { client, ws, auth, seen } = await signIn(tab, { ready: { ...READY, calls: [summary] } });
  assert.deepEqual(auth.resume, [{ call_id: "call-1", call_key: CALL_KEY }]);
  assert.deepEqual(client.activeCall, {
    callId: "call-1",
    role: "caller",
    status: "answered",
    peer: { cuid: "student_sam", name: "Sam S." },
  });
  assert.equal(client.current.answeredAt, 1_700_000_100_000);
  assert.equal(client.current.image, "https://img.example/sam.png");
  // This page holds the call now: the record no longer says its page left.
  assert.equal("left" in JSON.parse(tab.sessionStorage.getItem(CALL_ITEM)), false);
  await until(() => ws.sent.some((f) => f.type === "renegotiate"), "the replace offer");
  assert.deepEqual(ws.sent.find((f) => f.type === "renegotiate"), {
    type: "renegotiate",
    call_id: "call-1",
    sdp_type: "offer",
    sdp: `offer-${client.medias[0].n}`,
    replace: true,
  });
  await until(() => seen.some((e) => e[0] === "resumed"), "resumed");
  assert.deepEqual(seen.find((e) => e[0] === "resumed")[1], {
    callId: "call-1",
    role: "caller",
    peer: { cuid: "student_sam", name: "Sam S." },
  });
  // The page has no call() promise: the end is a callend event, and the record is gone.
  ws.receive({ type: "state", call_id: "call-1", status: "over", reason: "user_hangup" });
  assert.equal(seen.find((e) => e[0] === "callend")[1].status, "over");
  assert.equal(tab.sessionStorage.getItem(CALL_ITEM), null);
});

test("after a reload the server no longer lists the call: forgotten, nothing resumed", async () => {
  tab = installTab();
  keepCall(tab.sessionStorage);
  const { client, seen } = await signIn(tab);
  assert.equal(client.activeCall, null);
  assert.equal(tab.sessionStorage.getItem(CALL_ITEM), null);
  await flush();
  assert.deepEqual(seen, []);
});

test("a kept call that was still ringing is not presented: it went with the page that placed it", async () => {
  tab = installTab();
  keepCall(tab.sessionStorage, { answered_at: null });
  const { client, auth } = await signIn(tab, { ready: { ...READY, calls: [{ ...summary, status: "ringing", answered_at: null }] } });
  assert.deepEqual(auth.resume, []);
  assert.equal(client.activeCall, null);
  assert.equal(tab.sessionStorage.getItem(CALL_ITEM), null);
});

test("a kept call of another cuid is neither presented nor resumed", async () => {
  tab = installTab();
  keepCall(tab.sessionStorage, { cuid: "someone_else" });
  const { client, auth } = await signIn(tab, { ready: { ...READY, calls: [summary] } });
  assert.deepEqual(auth.resume, []);
  assert.equal(client.activeCall, null);
});

test("pagehide with an answered call sends leaving; without one, nothing", async () => {
  tab = installTab();
  keepCall(tab.sessionStorage);
  const { ws } = await signIn(tab, { ready: { ...READY, calls: [summary] } });
  tab.window.dispatchEvent(new Event("pagehide"));
  assert.deepEqual(ws.sent.at(-1), { type: "leaving" });
  // The record stays for the page that comes next, marked: its page left.
  const kept = JSON.parse(tab.sessionStorage.getItem(CALL_ITEM));
  assert.equal(kept.call_id, "call-1");
  assert.ok(Math.abs(kept.left - Date.now()) < 1000);
  // Back from the back/forward cache, the page holds its call again: the mark goes.
  tab.window.dispatchEvent(Object.assign(new Event("pageshow"), { persisted: true }));
  assert.equal("left" in JSON.parse(tab.sessionStorage.getItem(CALL_ITEM)), false);
  tab.restore();
  tab = installTab();
  const idle = await signIn(tab);
  const before = idle.ws.sent.length;
  tab.window.dispatchEvent(new Event("pagehide"));
  assert.equal(idle.ws.sent.length, before);
});

// -- a copy of a live tab (Duplicate tab, window.open keeping the opener) -------------------------------

test("a copied record without a `left` mark (its page lives on) is not presented, and forgotten", async () => {
  tab = installTab();
  keepCall(tab.sessionStorage, { left: undefined });
  const { client, auth, seen } = await signIn(tab, { ready: { ...READY, calls: [summary] } });
  assert.deepEqual(auth.resume, []);
  assert.equal(client.activeCall, null);
  assert.equal(tab.sessionStorage.getItem(CALL_ITEM), null);
  await flush();
  assert.deepEqual(seen, []);
});

test("a record whose page left long ago is not presented", async () => {
  tab = installTab();
  keepCall(tab.sessionStorage, { left: Date.now() - 10 * 60_000 });
  const { client, auth } = await signIn(tab, { ready: { ...READY, calls: [summary] } });
  assert.deepEqual(auth.resume, []);
  assert.equal(client.activeCall, null);
  assert.equal(tab.sessionStorage.getItem(CALL_ITEM), null);
});

/** Web Locks enough for resume.js: exclusive, `ifAvailable`, `signal`. */
class FakeLocks {
  constructor() {
    this.held = new Map(); // name -> true while granted
    this.waiting = new Map(); // name -> grants queued
  }
  request(name, options, callback) {
    return new Promise((resolve, reject) => {
      const grant = () => {
        this.held.set(name, true);
        Promise.resolve(callback({ name })).finally(() => {
          this.held.delete(name);
          const next = (this.waiting.get(name) || []).shift();
          if (next) next();
        }).then(resolve, reject);
      };
      if (!this.held.has(name)) return grant();
      if (options.ifAvailable) return Promise.resolve(callback(null)).then(resolve, reject);
      const queue = this.waiting.get(name) || [];
      this.waiting.set(name, queue);
      queue.push(grant);
      options.signal?.addEventListener("abort", () => {
        queue.splice(queue.indexOf(grant), 1);
        reject(new DOMException("aborted", "AbortError"));
      });
    });
  }
}

async function withLocks(body) {
  const saved = Object.getOwnPropertyDescriptor(globalThis, "navigator");
  const locks = new FakeLocks();
  Object.defineProperty(globalThis, "navigator", { value: { locks }, configurable: true, writable: true });
  try {
    await body(locks);
  } finally {
    if (saved) Object.defineProperty(globalThis, "navigator", saved);
    else delete globalThis.navigator;
  }
}

test("a marked record whose call lock a live page holds is not presented (after waiting for it)", () =>
  withLocks(async (locks) => {
    let letGo;
    locks.request("directcall.call.call-1", {}, () => new Promise((r) => (letGo = r))); // the live tab
    tab = installTab();
    keepCall(tab.sessionStorage);
    const started = Date.now();
    const { client, auth } = await signIn(tab, { ready: { ...READY, calls: [summary] } });
    assert.ok(Date.now() - started >= LOCK_WAIT_MS - 50);
    assert.deepEqual(auth.resume, []);
    assert.equal(client.activeCall, null);
    assert.equal(tab.sessionStorage.getItem(CALL_ITEM), null);
    letGo();
  }));

test("the page that takes the call back holds its lock until the call ends; the holder of a call holds it", () =>
  withLocks(async (locks) => {
    tab = installTab();
    keepCall(tab.sessionStorage);
    const { client, ws, auth } = await signIn(tab, { ready: { ...READY, calls: [summary] } });
    assert.deepEqual(auth.resume, [{ call_id: "call-1", call_key: CALL_KEY }]);
    assert.equal(locks.held.has("directcall.call.call-1"), true);
    ws.receive({ type: "state", call_id: "call-1", status: "over", reason: "user_hangup" });
    await flush();
    assert.equal(locks.held.has("directcall.call.call-1"), false);
    // A callee's tab takes the lock of the call it answered, and lets it go at the end.
    ws.receive(incoming);
    await client.answer();
    ws.receive({ type: "state", call_id: "call-9", status: "answered", call_key: CALL_KEY });
    await flush();
    assert.equal(locks.held.has("directcall.call.call-9"), true);
    ws.receive({ type: "state", call_id: "call-9", status: "over", reason: "user_hangup" });
    await flush();
    assert.equal(locks.held.has("directcall.call.call-9"), false);
  }));

// -- one client per page -------------------------------------------------------------------------------

test("initDirectCall twice in one page: ERR_ALREADY_SIGNEDIN; after logout() it signs in again", async () => {
  tab = installTab();
  const { client } = await signIn(tab);
  await assert.rejects(initDirectCall({ ...OPTIONS }), (error) => {
    assert.equal(error.code, ERR.ALREADY_SIGNEDIN);
    assert.match(error.message, /already signed in/);
    return true;
  });
  assert.equal(tab.sockets.length, 1); // nothing was opened for it
  client.logout();
  const again = await signIn(tab);
  assert.notEqual(again.client, client);
});

test("a failed initDirectCall leaves the page free to try again", async () => {
  tab = installTab();
  const pending = initDirectCall({ ...OPTIONS });
  await until(() => tab.sockets.length === 1, "the socket");
  tab.sockets[0].closeFromServer(1006);
  await assert.rejects(pending, (error) => error.code === ERR.INTERNET_LOST);
  await signIn(tab);
});

/** Advance mocked timers a retry's wait at a time (1 s, plus up to a fifth) until `done()`. */
async function tickUntil(t, done) {
  for (let i = 0; i < 200 && !done(); i++) {
    t.mock.timers.tick(1200);
    await flush();
  }
  t.mock.timers.reset();
}

/** `fetch` answering `statuses` in turn (then 200), each with `headers`; the answers counted. */
function answering(statuses, headers = {}) {
  const replies = [...statuses];
  const seen = [];
  const real = globalThis.fetch;
  globalThis.fetch = async (url, options) => {
    const status = replies.shift();
    if (status === undefined) return real(url, options);
    seen.push(status);
    const body =
      status === 503
        ? { code: "ERR_SERVICE_UNAVAILABLE", message: "Try again." }
        : status === 429
          ? { code: "ERR_RATE_LIMITED", message: "Too many requests; try again later." }
          : null;
    return {
      ok: false,
      status,
      headers: new Headers(headers),
      json: async () => {
        if (body === null) throw new SyntaxError("not JSON"); // a proxy's HTML page
        return body;
      },
    };
  };
  return seen;
}

test("a page that loads while the server restarts waits it out: 503 and 502 are tried again", async () => {
  tab = installTab();
  const seen = answering([503, 502, 504], { "Retry-After": "0" });
  const { client } = await signIn(tab);
  assert.deepEqual(seen, [503, 502, 504]);
  assert.equal(tab.requests.length, 1); // the fourth attempt, answered
  assert.equal(client.cuid, "tutor_jane");
});

test("no answer at all (a preflight refused, the network down) is tried again too", async (t) => {
  tab = installTab();
  const real = globalThis.fetch;
  let failures = 0;
  globalThis.fetch = async (url, options) => {
    if (failures < 2) {
      failures += 1;
      throw new TypeError("Failed to fetch");
    }
    return real(url, options);
  };
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const pending = signIn(tab);
  await tickUntil(t, () => tab.sockets.length > 0);
  const { client } = await pending;
  assert.equal(failures, 2);
  assert.equal(client.cuid, "tutor_jane");
});

test("an auth the server cannot serve for a moment (error frame, close 1011) is tried again", async (t) => {
  tab = installTab();
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const pending = initDirectCall({ ...OPTIONS });
  await until(() => tab.sockets.length === 1, "the socket");
  const first = tab.sockets[0];
  first.open();
  first.receive({ type: "error", code: "ERR_SERVICE_UNAVAILABLE", message: "Try again." });
  first.closeFromServer(1011);
  await tickUntil(t, () => tab.sockets.length > 1);
  const second = tab.sockets[1];
  second.open();
  assert.equal(second.sent[0].token, first.sent[0].token); // the same session
  await readyOn(second, pending);
});

test("an outage longer than the attempts rejects ERR_SERVICE_UNAVAILABLE; other refusals are not retried", async () => {
  tab = installTab();
  const seen = answering([503, 503, 503, 503, 503], { "Retry-After": "0" });
  await assert.rejects(initDirectCall({ ...OPTIONS }), (error) => error.code === "ERR_SERVICE_UNAVAILABLE");
  assert.deepEqual(seen, [503, 503, 503, 503]);
  assert.equal(tab.sockets.length, 0);
  tab.restore();
  tab = installTab();
  const refused = answering([502, 401], { "Retry-After": "0" });
  await assert.rejects(initDirectCall({ ...OPTIONS }), (error) => error.code === ERR.INTERNET_LOST);
  assert.deepEqual(refused, [502, 401]); // 401 (not JSON here) is final at once
});

test("a sign-in refused by a throttle is tried again once its window has passed", async (t) => {
  tab = installTab();
  const seen = answering([429, 429], { "Retry-After": "30" });
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const pending = signIn(tab);
  await until(() => seen.length === 1, "the first answer");
  t.mock.timers.tick(29000);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(seen.length, 1); // not before the window has passed
  await tickUntil(t, () => tab.sockets.length > 0);
  const { client } = await pending;
  assert.deepEqual(seen, [429, 429]);
  assert.equal(client.cuid, "tutor_jane");
});

test("a throttle's refusal with a long or no Retry-After, or past the attempts, is final", async () => {
  for (const [headers, statuses, tried] of [
    [{ "Retry-After": "3600" }, [429], [429]],
    [{}, [429], [429]],
    [{ "Retry-After": "0" }, [429, 429, 429, 429, 429], [429, 429, 429, 429]],
  ]) {
    tab?.restore();
    tab = installTab();
    const seen = answering(statuses, headers);
    await assert.rejects(initDirectCall({ ...OPTIONS }), (error) => error.code === "ERR_RATE_LIMITED");
    assert.deepEqual(seen, tried);
    assert.equal(tab.sockets.length, 0);
  }
});

test("a userToken function that throws or rejects: {code, message}, never an Error", async () => {
  for (const userToken of [
    () => Promise.reject(new Error("token endpoint said 500")),
    () => {
      throw new TypeError("Failed to fetch");
    },
  ]) {
    tab?.restore();
    tab = installTab();
    const error = await initDirectCall({ ...OPTIONS, userToken }).catch((e) => e);
    assert.deepEqual(Object.keys(error), ["code", "message"]);
    assert.equal(error.code, ERR.INVALID_USER_TOKEN);
    assert.match(error.message, /token endpoint said 500|Failed to fetch/);
    assert.equal(tab.requests.length, 0); // nothing was sent
  }
  tab.restore();
  tab = installTab();
  const refused = { code: "MY_SITE_SAYS_NO", message: "Log in first." }; // the page's own
  const error = await initDirectCall({ ...OPTIONS, userToken: () => Promise.reject(refused) }).catch((e) => e);
  assert.deepEqual(error, {
    code: "ERR_INVALID_USER_TOKEN",
    message: "Your userToken function failed: Log in first.",
  });
});

test("hangup() with no call does nothing and sends nothing", async () => {
  tab = installTab();
  const { client, ws } = await signIn(tab);
  const before = ws.sent.length;
  client.hangup();
  client.decline();
  await client.answer();
  assert.equal(ws.sent.length, before);
});

// -- why a connection was refused -----------------------------------------------------------------------

test("close codes say why: 4010 before ready is ERR_ORIGIN_NOT_ALLOWED", async () => {
  tab = installTab();
  const pending = initDirectCall({ ...OPTIONS });
  await until(() => tab.sockets.length === 1, "the socket");
  tab.sockets[0].closeFromServer(4010);
  await assert.rejects(pending, (error) => error.code === ERR.ORIGIN_NOT_ALLOWED && typeof error.message === "string");
});

test("close 4011 after ready: signed out as revoked, the call rejects ERR_SESSION_REVOKED, no reconnect", async () => {
  tab = installTab();
  const { client, ws, seen } = await signIn(tab);
  const result = client.call("student_sam", "Homework");
  await until(() => ws.sent.some((f) => f.type === "invite"), "the invite");
  ws.closeFromServer(4011);
  await assert.rejects(result, (error) => error.code === ERR.SESSION_REVOKED);
  const logout = seen.find((e) => e[0] === "logout")[1];
  assert.equal(logout.reason, "revoked");
  assert.equal(logout.error.code, ERR.SESSION_REVOKED);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(tab.sockets.length, 1);
});

test("a revocation's error frame ends the call with ERR_SESSION_REVOKED and signs out at once", async () => {
  tab = installTab();
  const { client, ws, seen } = await signIn(tab);
  ws.receive(incoming);
  await client.answer();
  ws.receive({ type: "state", call_id: "call-9", status: "answered", call_key: CALL_KEY });
  ws.receive({ type: "error", code: "ERR_SESSION_REVOKED", message: "This session was revoked; sign in again." });
  const end = seen.find((e) => e[0] === "callend")[1];
  assert.deepEqual([end.status, end.reason], ["over", "revoked"]);
  assert.equal(seen.find((e) => e[0] === "logout")[1].reason, "revoked");
  assert.deepEqual(seen.filter((e) => e[0] === "error"), []);
  assert.equal(tab.sessionStorage.getItem(CALL_ITEM), null);
  ws.closeFromServer(4011); // what follows changes nothing
  assert.equal(seen.filter((e) => e[0] === "logout").length, 1);
});

test("a WebSocket the browser refuses to open is ERR_INTERNET_LOST, not a DOMException", async () => {
  tab = installTab();
  globalThis.WebSocket = class {
    constructor() {
      throw new DOMException("The URL's scheme must be either 'ws' or 'wss'.", "SyntaxError");
    }
  };
  const error = await initDirectCall({ ...OPTIONS }).catch((e) => e);
  assert.deepEqual(Object.keys(error), ["code", "message"]);
  assert.equal(error.code, ERR.INTERNET_LOST);
  assert.match(error.message, /SyntaxError/);
});

test("storage blocked: signing in still works, nothing is kept", async () => {
  const throwing = new MemoryStorage();
  throwing.getItem = () => {
    throw new DOMException("denied", "SecurityError");
  };
  throwing.setItem = throwing.getItem;
  tab = installTab({ localStorage: throwing, sessionStorage: throwing });
  const { auth } = await signIn(tab, { ready: { ...READY, device_key: KEY } });
  assert.equal("device_key" in auth, false);
});
