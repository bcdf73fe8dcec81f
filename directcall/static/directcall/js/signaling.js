// The signaling socket: auth as first frame, ping, request/response by `ref`, and
// reconnection with jittered exponential backoff (docs/protocol.md). Every rejection is a
// `{code, message}` error from errors.js.

import { dcError, ERR, fromCloseCode, fromServer } from "./errors.js";

const PING_INTERVAL_MS = 15000;

// Refusals that another try would only repeat: reconnecting stops with them.
const FINAL_REFUSALS = [
  ERR.ALREADY_SIGNEDIN,
  ERR.INVALID_CREDENTIALS,
  ERR.ORIGIN_NOT_ALLOWED,
  ERR.SESSION_REVOKED,
  "ERR_NOT_SIGNED_IN",
];

/** Delay before reconnect attempt `attempt` (0-based): 0.5 s doubling to 8 s, ±50 % jitter. */
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(8000, 500 * 2 ** attempt);
  return Math.round(base * (0.5 + random()));
}

export class Signaling extends EventTarget {
  /**
   * @param {() => Promise<{token: string, websocketUrl: string}>} getSession
   *   returns a fresh session (calls the init endpoint again when reconnecting).
   * @param {object} [options]
   * @param {() => object} [options.authFields]  what else goes into each `auth` frame
   *   (`device_key`, `resume`), asked when the socket opens
   * @param {(error: object) => boolean} [options.retryRefusal]  after `auth` was refused with
   *   `error` while reconnecting: whether to try again rather than give up
   */
  constructor(getSession, { authFields = () => ({}), retryRefusal = () => false } = {}) {
    super();
    this.getSession = getSession;
    this.ws = null;
    this.ready = false;
    this.closedByUs = false;
    this.attempt = 0;
    this.pingTimer = null;
    this.reconnectTimer = null;
    this.pending = new Map(); // ref -> {resolve, reject}
    this.nextRef = 1;
    this.authFields = authFields;
    this.retryRefusal = retryRefusal;
  }

  /** Open the socket and authenticate; resolves with the `ready` frame, rejects `{code, message}`. */
  connect(session) {
    return new Promise((resolve, reject) => {
      let settled = false;
      let opened = false; // this socket got `ready`
      let ws;
      try {
        ws = new WebSocket(session.websocketUrl);
      } catch (err) {
        // A URL the browser refuses (SyntaxError) or may not open from this page
        // (SecurityError: ws: from an https page, a blocked port).
        const why = (err && (err.name || err.message)) || String(err);
        reject(dcError(ERR.INTERNET_LOST, `The signaling connection could not be opened (${why}).`));
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        ws.send(JSON.stringify({ ...this.authFields(), type: "auth", token: session.token }));
      };
      ws.onmessage = (event) => {
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch {
          return;
        }
        if (!settled) {
          if (frame.type === "ready") {
            settled = true;
            opened = true;
            this.ready = true;
            this.attempt = 0;
            this._startPing();
            resolve(frame);
          } else if (frame.type === "error") {
            settled = true;
            reject(fromServer(frame, ERR.INTERNET_LOST));
            ws.close(1000); // refused: the server closes it too
          }
          if (settled) return;
        }
        this._dispatch(frame);
      };
      ws.onclose = (event) => {
        // A close code that says why (no error frame came first): origin refused, revoked, …
        const error = fromCloseCode(event.code);
        if (ws !== this.ws) {
          if (!settled) reject(error || dcError(ERR.INTERNET_LOST));
          return; // a socket we have already replaced
        }
        const wasReady = this.ready;
        this.ready = false;
        this._stopPing();
        for (const { reject: fail } of this.pending.values()) fail(dcError(ERR.INTERNET_LOST));
        this.pending.clear();
        if (!settled) {
          settled = true;
          reject(error || dcError(ERR.INTERNET_LOST));
          return;
        }
        // Refused before `ready`: the rejection of connect() has told the caller.
        if (!opened) return;
        // Final: closed by us, a close code with a reason (4001 token, 4002 another device,
        // 4010 origin, 4011 revoked), or 4003 (an old server: this device took over elsewhere).
        const final = this.closedByUs || error !== null || event.code === 4003;
        this.dispatchEvent(new CustomEvent("down", { detail: { code: event.code, final, wasReady, error } }));
        if (!final) this._scheduleReconnect();
      };
    });
  }

  _scheduleReconnect() {
    clearTimeout(this.reconnectTimer);
    const delay = backoffDelay(this.attempt++);
    this.reconnectTimer = setTimeout(async () => {
      if (this.closedByUs) return;
      try {
        const session = await this.getSession();
        const ready = await this.connect(session);
        this.dispatchEvent(new CustomEvent("up", { detail: ready }));
      } catch (err) {
        const code = err && err.code;
        if (FINAL_REFUSALS.includes(code) && !this.closedByUs && !this.retryRefusal(err)) {
          this.dispatchEvent(new CustomEvent("down", { detail: { code, final: true, error: err } }));
          return;
        }
        if (!this.closedByUs && !(this.ws && this.ready)) this._scheduleReconnect();
      }
    }, delay);
  }

  _dispatch(frame) {
    const reply = ["invited", "blocked", "saved", "watching", "unwatched", "error"].includes(frame.type);
    if (frame.ref != null && this.pending.has(frame.ref) && reply) {
      const { resolve, reject } = this.pending.get(frame.ref);
      this.pending.delete(frame.ref);
      if (frame.type === "error") reject(fromServer(frame, ERR.INTERNET_LOST));
      else resolve(frame);
      return;
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }

  _startPing() {
    this._stopPing();
    this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_INTERVAL_MS);
  }

  _stopPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  /** Send a frame if the socket is up; returns whether it was sent. */
  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || !this.ready) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Send a frame with a fresh `ref`; resolves the reply that echoes it, rejects `{code, message}`. */
  request(frame) {
    const ref = String(this.nextRef++);
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject });
      if (!this.send({ ...frame, ref })) {
        this.pending.delete(ref);
        reject(dcError(ERR.INTERNET_LOST));
      }
    });
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.reconnectTimer);
    this._stopPing();
    if (this.ws) this.ws.close(1000);
    this.ready = false;
  }
}
