// The signaling socket: auth as first frame, ping, request/response by `ref`, and
// reconnection with jittered exponential backoff (docs/protocol.md). Every rejection is a
// `{code, message}` error from errors.js.

import { dcError, ERR, fromServer } from "./errors.js";

const PING_INTERVAL_MS = 15000;

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
   * @param {() => string[]} [options.resumeIds]  ids of the calls to ask about when
   *   (re)authenticating (the `resume` field of `auth`)
   */
  constructor(getSession, { resumeIds = () => [] } = {}) {
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
    this.resumeIds = resumeIds;
  }

  /** Open the socket and authenticate; resolves with the `ready` frame, rejects `{code, message}`. */
  connect(session) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const ws = new WebSocket(session.websocketUrl);
      this.ws = ws;
      ws.onopen = () => {
        ws.send(JSON.stringify({ type: "auth", token: session.token, resume: this.resumeIds() }));
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
            this.ready = true;
            this.attempt = 0;
            this._startPing();
            resolve(frame);
          } else if (frame.type === "error") {
            settled = true;
            reject(fromServer(frame, ERR.INTERNET_LOST));
          }
          if (settled) return;
        }
        this._dispatch(frame);
      };
      ws.onclose = (event) => {
        const wasReady = this.ready;
        this.ready = false;
        this._stopPing();
        for (const { reject: fail } of this.pending.values()) fail(dcError(ERR.INTERNET_LOST));
        this.pending.clear();
        if (!settled) {
          settled = true;
          reject(dcError(ERR.INTERNET_LOST));
          return;
        }
        if (ws !== this.ws) return;
        // 4002: another device holds the cuid; 4003: this device took over elsewhere.
        const final = this.closedByUs || event.code === 4002 || event.code === 4003 || event.code === 4001;
        this.dispatchEvent(new CustomEvent("down", { detail: { code: event.code, final, wasReady } }));
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
        if (code === ERR.ALREADY_SIGNEDIN || code === ERR.INVALID_CREDENTIALS) {
          this.dispatchEvent(new CustomEvent("down", { detail: { code, final: true } }));
          return;
        }
        if (!this.closedByUs && !(this.ws && this.ready)) this._scheduleReconnect();
      }
    }, delay);
  }

  _dispatch(frame) {
    if (frame.ref != null && this.pending.has(frame.ref) && (frame.type === "invited" || frame.type === "error")) {
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
