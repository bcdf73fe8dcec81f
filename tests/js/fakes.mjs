// Surroundings for the SDK's classes in node: a signaling connection that records frames,
// media that records what was asked of it, storage, and a browser-ish window.

/** Signaling as a Call sees it: `send` records, `request` answers with `invited`. */
export class FakeSignaling {
  constructor() {
    this.ready = true;
    this.sent = [];
    this.invited = { type: "invited", call_id: "call-1", receiver: { cuid: "student_sam", name: "Sam" } };
  }
  send(frame) {
    if (!this.ready) return false;
    this.sent.push(frame);
    return true;
  }
  request(frame) {
    this.sent.push(frame);
    return Promise.resolve(this.invited);
  }
  types() {
    return this.sent.map((frame) => frame.type);
  }
}

let mediaCount = 0;

/** Media whose SDPs name the instance (`offer-2`, `answer-3`), so tests see which one spoke. */
export class FakeMedia extends EventTarget {
  constructor(stream, onCandidates, fail = {}) {
    super();
    this.n = ++mediaCount;
    this.stream = stream;
    this.onCandidates = onCandidates;
    this.fail = fail;
    this.connected = false;
    this.closed = null; // {keepStream} once closed
    this.restarts = 0;
    this.remote = []; // [type, sdp] of every remote description applied
    this.audioBlocked = false;
  }
  async _maybeFail(step) {
    if (this.fail[step]) throw new DOMException(`${step}: bad SDP`, "OperationError");
  }
  async createOffer() {
    await this._maybeFail("createOffer");
    return `offer-${this.n}`;
  }
  async acceptOffer(sdp) {
    await this._maybeFail("acceptOffer");
    this.remote.push(["offer", sdp]);
    return `answer-${this.n}`;
  }
  async setAnswer(sdp) {
    await this._maybeFail("setAnswer");
    this.remote.push(["answer", sdp]);
  }
  async renegotiate(type, sdp) {
    await this._maybeFail("renegotiate");
    this.remote.push([type, sdp]);
    return type === "offer" ? `reanswer-${this.n}` : null;
  }
  async restartIce() {
    this.restarts += 1;
    return `restart-offer-${this.n}`;
  }
  async addRemoteCandidates() {}
  async playRemote() {
    this.audioBlocked = false;
  }
  setMuted(muted) {
    this.muted = muted;
  }
  close({ keepStream = false } = {}) {
    this.closed = { keepStream };
    if (!keepStream) this.stream.stopped = true;
  }
  ice(state) {
    this.connected = state === "connected" || state === "completed";
    this.dispatchEvent(new CustomEvent("ice", { detail: state }));
  }
}

export const makeStream = () => {
  const stream = { stopped: false, getTracks: () => [{ stop: () => (stream.stopped = true) }] };
  return stream;
};

export const flush = () => new Promise((resolve) => setImmediate(resolve));

/** A Storage with the Web Storage API, in memory. */
export class MemoryStorage {
  constructor() {
    this.items = new Map();
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

/**
 * A WebSocket the test drives: `sent` holds the parsed frames, `receive(frame)` delivers one,
 * `open()` and `closeFromServer(code)` play the server's part. `FakeWebSocket.all` lists every
 * socket made, in order.
 */
export class FakeWebSocket {
  static OPEN = 1;
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.all.push(this);
  }
  open() {
    this.readyState = FakeWebSocket.OPEN;
    this.onopen && this.onopen();
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  receive(frame) {
    this.onmessage && this.onmessage({ data: JSON.stringify(frame) });
  }
  close(code = 1000) {
    this.closeFromServer(code);
  }
  closeFromServer(code) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose && this.onclose({ code });
  }
}

/**
 * Make this node process look enough like one browser tab for client.js: `window` (an
 * EventTarget), `localStorage` (shared with `tab.shareLocalStorage`) and `sessionStorage`,
 * `WebSocket`, `fetch` answering v1/init. Returns the tab's parts; `restore()` undoes it.
 */
export function installTab({ localStorage = new MemoryStorage(), sessionStorage = new MemoryStorage(), init } = {}) {
  const saved = {};
  const set = (name, value) => {
    saved[name] = Object.getOwnPropertyDescriptor(globalThis, name);
    Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  };
  const win = new EventTarget();
  set("window", win);
  set("localStorage", localStorage);
  set("sessionStorage", sessionStorage);
  set("WebSocket", FakeWebSocket);
  const requests = [];
  set("fetch", async (url, options) => {
    requests.push([String(url), JSON.parse(options.body)]);
    const body = init || { cuid: JSON.parse(options.body).cuid, token: "tok", websocketUrl: "ws://127.0.0.1:1/ws/directcall/v1/", iceServers: [] };
    return { ok: true, status: 200, json: async () => body };
  });
  FakeWebSocket.all = [];
  return {
    window: win,
    localStorage,
    sessionStorage,
    requests,
    sockets: FakeWebSocket.all,
    restore() {
      for (const [name, descriptor] of Object.entries(saved)) {
        if (descriptor) Object.defineProperty(globalThis, name, descriptor);
        else delete globalThis[name];
      }
      delete globalThis[Symbol.for("directcall.pageClient")];
    },
  };
}

/** The options of a client signed in as student_sam, and the `ready` its server answers. */
export const CLIENT_OPTIONS = {
  accountId: "acct1",
  apikey: "pre.secret",
  cuid: "student_sam",
  clevertap: null,
  showScreens: false,
  serverUrl: "http://127.0.0.1:8000/directcall/",
};
export const READY = { type: "ready", cuid: "student_sam", name: "Sam", calls: [], reconnect_grace: 20 };

/**
 * A client signed in on a fresh fake tab: `{tab, client, ws}` (ws: its open socket);
 * `end()` logs it out and restores the globals. `initDirectCall` comes from the test, so
 * that this file does not load the SDK for tests that do not need it.
 */
export async function signedInSession(initDirectCall) {
  const tab = installTab();
  const pending = initDirectCall({ ...CLIENT_OPTIONS });
  for (let i = 0; i < 200 && tab.sockets.length === 0; i++) await flush();
  const ws = tab.sockets[0];
  ws.open();
  ws.receive(READY);
  const client = await pending;
  return {
    tab,
    client,
    ws,
    end() {
      client.logout();
      tab.restore();
    },
  };
}
