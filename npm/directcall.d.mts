// Types of the directcall browser SDK (@directcall/web-sdk), written by hand from its
// documented API (docs/js-api.md). Checked by `npm run typecheck` against npm/usage.ts.

/** Every error code the SDK rejects or reports with (docs/errors.md). */
export type DirectCallErrorCode =
  | "ERR_MISSING_INITPARAMETERS"
  | "ERR_INVALID_INITPARAMETERS"
  | "ERR_MISSING_CT_ACCOUNTID"
  | "ERR_MISSING_CT_ID"
  | "ERR_INVALID_CREDENTIALS"
  | "ERR_ALREADY_SIGNEDIN"
  | "ERR_ORIGIN_NOT_ALLOWED"
  | "ERR_RATE_LIMITED"
  | "ERR_MIC_UNAVAILABLE"
  | "ERR_OUTGOING_CALL_IN_PROGRESS"
  | "ERR_INVALID_CALL_PARAMETERS"
  | "ERR_INTERNET_LOST"
  | "ERR_NOT_INITIALIZED"
  | "ERR_MEDIA_FAILED"
  | "ERR_CALL_NOT_ALLOWED"
  | "ERR_NOT_SIGNED_IN"
  | "ERR_INVALID_TOKEN"
  | "ERR_UNKNOWN_CALL"
  | "ERR_CALL_STATE"
  | "ERR_INTERNAL"
  | "ERR_SESSION_REVOKED"
  | "ERR_INVALID_USER_TOKEN"
  | "ERR_SERVICE_UNAVAILABLE"
  | "ERR_WATCH_LIMIT"
  | "ERR_INVALID_PARAMETERS"
  | "ERR_FEEDBACK_DISABLED"
  | "ERR_DEVICE_UNAVAILABLE"
  | "ERR_NOT_SUPPORTED"
  | 404
  // Codes a newer server may add; compare against the names above.
  | (string & {});

/** What every rejection and `error` event carries. */
export interface DirectCallError {
  code: DirectCallErrorCode;
  message: string;
}

/** How a call() that was not answered ends (its promise rejects with one of these). */
export type UnansweredOutcome = "declined" | "missed" | "cancelled" | "busy";

/** The error codes, by name: `ERR.MIC_UNAVAILABLE === "ERR_MIC_UNAVAILABLE"`. */
export declare const ERR: Readonly<{
  MISSING_INITPARAMETERS: "ERR_MISSING_INITPARAMETERS";
  INVALID_INITPARAMETERS: "ERR_INVALID_INITPARAMETERS";
  MISSING_CT_ACCOUNTID: "ERR_MISSING_CT_ACCOUNTID";
  MISSING_CT_ID: "ERR_MISSING_CT_ID";
  INVALID_CREDENTIALS: "ERR_INVALID_CREDENTIALS";
  ALREADY_SIGNEDIN: "ERR_ALREADY_SIGNEDIN";
  MIC_UNAVAILABLE: "ERR_MIC_UNAVAILABLE";
  OUTGOING_CALL_IN_PROGRESS: "ERR_OUTGOING_CALL_IN_PROGRESS";
  INVALID_CALL_PARAMETERS: "ERR_INVALID_CALL_PARAMETERS";
  INTERNET_LOST: "ERR_INTERNET_LOST";
  RECEIVER_OFFLINE: 404;
  NOT_INITIALIZED: "ERR_NOT_INITIALIZED";
  MEDIA_FAILED: "ERR_MEDIA_FAILED";
  INTERNAL: "ERR_INTERNAL";
  ORIGIN_NOT_ALLOWED: "ERR_ORIGIN_NOT_ALLOWED";
  SESSION_REVOKED: "ERR_SESSION_REVOKED";
  INVALID_TOKEN: "ERR_INVALID_TOKEN";
  INVALID_PARAMETERS: "ERR_INVALID_PARAMETERS";
  UNKNOWN_CALL: "ERR_UNKNOWN_CALL";
  FEEDBACK_DISABLED: "ERR_FEEDBACK_DISABLED";
  DEVICE_UNAVAILABLE: "ERR_DEVICE_UNAVAILABLE";
  NOT_SUPPORTED: "ERR_NOT_SUPPORTED";
  RATE_LIMITED: "ERR_RATE_LIMITED";
  SERVICE_UNAVAILABLE: "ERR_SERVICE_UNAVAILABLE";
  INVALID_USER_TOKEN: "ERR_INVALID_USER_TOKEN";
  NOT_SIGNED_IN: "ERR_NOT_SIGNED_IN";
  CALL_NOT_ALLOWED: "ERR_CALL_NOT_ALLOWED";
  CALL_STATE: "ERR_CALL_STATE";
  WATCH_LIMIT: "ERR_WATCH_LIMIT";
}>;

/** The parts of a CleverTap Web SDK instance that are read (ids) and used (events). */
export interface CleverTapInstance {
  getAccountID?(): string | null | undefined;
  account?: ReadonlyArray<{ id?: string }>;
  getCleverTapID?(): string | null | undefined;
  event?: { push(name: string, properties?: Record<string, unknown>): unknown };
}

interface CommonInitOptions {
  /** 3–50 characters after trimming; shown to the other side. */
  name?: string;
  /** URL of the tone the callee hears while ringing (default: the SDK's). */
  ringtone?: string;
  /**
   * Where the host mounts `directcall.urls`. Default: `/directcall/` on the origin the SDK
   * module was served from; in the npm builds (no module URL), `/directcall/` on the page's
   * origin. Set it when Django answers on another origin.
   */
  serverUrl?: string;
  /**
   * A folder holding the SDK's tones (`ringtone.wav`, `ringback.wav`, `end.wav`; the npm
   * package ships them under `@directcall/web-sdk/audio/`). Default: the URLs the server's
   * screens advertise.
   */
  assetsUrl?: string;
  /** `false` to draw your own UI from the client's events. */
  showScreens?: boolean;
  /**
   * The call screens' language, a BCP 47 tag (`"es"`, `"hi"`, `"ar"`, `"es-MX"`). Default:
   * the page's `<html lang>`; the server answers its closest catalog (Arabic right to left).
   */
  language?: string;
}

/** Signing in with the account's API key (the original SDK's way). */
export interface KeyInitOptions extends CommonInitOptions {
  accountId: string;
  apikey: string;
  /** 5–50 letters, digits or `_`, not "number_number". */
  cuid: string;
  /** A CleverTap Web SDK instance, or `null` when the account does not require CleverTap. */
  clevertap: CleverTapInstance | null;
  /**
   * Accounts with verified identities: a user token (JWT) your server signs for this cuid
   * (docs/accounts.md#user-tokens), or a function giving one, called at every sign-in.
   */
  userToken?: string | (() => string | Promise<string>);
  sessionUrl?: undefined;
}

/** Signing in the host site's logged-in user: its server mints the session, no key in the page. */
export interface SessionInitOptions extends CommonInitOptions {
  sessionUrl: string;
  csrfToken?: string;
  clevertap?: CleverTapInstance | null;
}

export type InitOptions = KeyInitOptions | SessionInitOptions;

/** `receiver_image`/`initiator_image`: http(s) URLs shown on the outgoing and incoming screens. */
export interface CallOptions {
  receiver_image?: string | null;
  initiator_image?: string | null;
}

export type CallRole = "caller" | "callee";

export interface ActiveCall {
  callId: string | null;
  role: CallRole;
  status: string;
  peer: { cuid: string; name: string };
}

export interface IncomingDetail {
  callId: string;
  from: { cuid: string; name: string; image: string | null };
  context: string;
}

export interface StateChangeDetail {
  callId: string;
  role: CallRole;
  status: "ringing" | "answered" | (string & {});
}

export interface CallEndDetail {
  callId: string | null;
  role: CallRole;
  /** `answered_elsewhere`: it rang in several tabs of this browser and another tab answered. */
  status:
    | "over"
    | "declined"
    | "missed"
    | "cancelled"
    | "busy"
    | "failed"
    | "answered_elsewhere"
    | (string & {});
  reason: string | null;
  /** Seconds since the call was answered; null when it never was. */
  duration: number | null;
  /** What this side measured and reported to the server; null when it was never answered. */
  quality: QualitySummary | null;
}

/** The quality warnings, with Twilio Voice's documented thresholds (docs/js-api.md). */
export type QualityWarningName =
  | "high-rtt"
  | "high-jitter"
  | "high-packet-loss"
  | "high-packets-lost-fraction"
  | "low-mos"
  | "constant-audio-input-level";

/** ICE candidate types of the selected pair: `relay` means through the TURN server. */
export type CandidateType = "host" | "srflx" | "prflx" | "relay";

/** One second of a call's media (`quality` event); null where the browser did not say. */
export interface QualitySample {
  callId: string | null;
  /** Round-trip time, ms. */
  rtt: number | null;
  /** Jitter of the received audio, ms. */
  jitter: number | null;
  /** Packets lost in the last second, percent. */
  loss: number | null;
  /** Estimated MOS (E-model), 1 to about 4.5. */
  mos: number | null;
  /** The microphone's level, 0 to 1. */
  inputLevel: number | null;
  /** For a connection indicator: 5 (excellent) to 1 (degraded); 0 without a MOS. */
  bars: 0 | 1 | 2 | 3 | 4 | 5;
}

export interface QualityWarningDetail {
  callId: string | null;
  name: QualityWarningName;
  /** The value that crossed the threshold (ms, percent, MOS, or the level's deviation). */
  value: number;
  threshold: number;
}

/** What a party reports at the end of an answered call (stored with the call). */
export interface QualitySummary {
  /** Seconds sampled. */
  samples: number;
  mosAvg: number | null;
  mosMin: number | null;
  rttAvg: number | null;
  rttMax: number | null;
  jitterAvg: number | null;
  jitterMax: number | null;
  /** Packet loss over the whole call, percent. */
  lossAvg: number | null;
  /** The worst second's loss, percent. */
  lossMax: number | null;
  /** Whether media went through the TURN server; null when unknown. */
  relayed: boolean | null;
  localCandidate: CandidateType | null;
  remoteCandidate: CandidateType | null;
  /** e.g. `"opus"`. */
  codec: string | null;
  /** The warnings raised during the call. */
  warnings: QualityWarningName[];
}

export interface MediaDevice {
  deviceId: string;
  groupId: string;
  /** Empty until the page has used the microphone (a call, or preflight()). */
  label: string;
}

export interface DeviceList {
  microphones: MediaDevice[];
  /** Empty where a speaker cannot be chosen (see `speakerSelection`). */
  speakers: MediaDevice[];
  speakerSelection: boolean;
}

export interface DeviceChangeDetail {
  kind: "microphone" | "speaker";
  /** The device now in use; null for the default. */
  deviceId: string | null;
  label: string;
  /** `selected`: by setMicrophone()/setSpeaker(); `lost`: it went away and the default took over. */
  reason: "selected" | "lost";
}

/** Twilio Voice's postFeedback issues. */
export type FeedbackIssue =
  | "audio-latency"
  | "choppy-audio"
  | "dropped-call"
  | "echo"
  | "noisy-call"
  | "one-way-audio";

export type FeedbackScore = 1 | 2 | 3 | 4 | 5;

/** Twilio's preflight grades, by the average MOS of the media test. */
export type PreflightGrade = "excellent" | "great" | "good" | "fair" | "degraded";

export interface PreflightOptions {
  /** How long the media test measures, ms (1 000 to 30 000; default 5 000). */
  duration?: number;
  /** How long connecting may take, ms (default 10 000). */
  timeout?: number;
}

export interface PreflightReport {
  /** Every check passed. */
  ok: boolean;
  /** Null when the media test did not run. */
  grade: PreflightGrade | null;
  microphone: { ok: boolean; label: string | null; level: number | null; error: string | null };
  signaling: { ok: boolean; rtt: number | null; error: string | null };
  media: {
    ok: boolean;
    /** The account has a TURN server (the test was relay-only through it). */
    turn: boolean;
    relayed: boolean | null;
    rtt: { avg: number | null; max: number | null } | null;
    jitter: { avg: number | null; max: number | null } | null;
    loss: number | null;
    mos: { avg: number | null; min: number | null } | null;
    codec: string | null;
    samples: number;
    error: string | null;
  };
  warnings: QualityWarningName[];
  /** How long the whole check took, ms. */
  duration: number;
}

/** Whether a watched person can be called now (`client.watch()`). */
export type PresenceState = "online" | "offline" | "busy";

export interface PresenceDetail {
  cuid: string;
  state: PresenceState;
}

export interface DirectCallEventMap {
  /** A watched cuid is online (signed in, not in a call). */
  online: CustomEvent<PresenceDetail>;
  /** A watched cuid is offline, or one this user may not call (always offline). */
  offline: CustomEvent<PresenceDetail>;
  /** A watched cuid is in a call (ringing or answered): a call would get `"busy"`. */
  busy: CustomEvent<PresenceDetail>;
  /** Cancelable: `preventDefault()` keeps the SDK's incoming screen and ringtone away. */
  incoming: CustomEvent<IncomingDetail>;
  statechange: CustomEvent<StateChangeDetail>;
  callend: CustomEvent<CallEndDetail>;
  media: CustomEvent<{ callId: string; state: string }>;
  peer: CustomEvent<{ callId: string; connected: boolean }>;
  mute: CustomEvent<{ callId: string | null; muted: boolean }>;
  connection: CustomEvent<{ state: "down" | "up"; final?: boolean }>;
  error: CustomEvent<DirectCallError>;
  /**
   * Signed out. No reason when you called logout(); `"revoked"` (the host ended the session),
   * `"refused"` (the server closed the connection for good, `error` says why) or `"replaced"`
   * (an older server: this device signed in again elsewhere).
   */
  logout: CustomEvent<{ reason?: "revoked" | "refused" | "replaced" | (string & {}); error?: DirectCallError }>;
  /**
   * After a reload or a navigation to another page of the site during an answered call: this
   * page has taken the call back (the ongoing screen shows; audio comes back by itself). There
   * is no call() promise for it; its end is a `callend` event.
   */
  resumed: CustomEvent<{ callId: string; role: CallRole; peer: { cuid: string; name: string } }>;
  /**
   * The browser refused to play the call's sound before a user gesture (autoplay policy):
   * `"remote"` the other party's audio, `"ringtone"`/`"ringback"` a tone. The SDK's screens
   * show a "Tap to enable audio" button; your own UI calls `client.enableAudio()` from a click.
   */
  audioblocked: CustomEvent<{ callId: string | null; kind: "remote" | "ringtone" | "ringback" | (string & {}) }>;
  /** Each second of an answered call's media. */
  quality: CustomEvent<QualitySample>;
  /** A quality warning was raised (docs/js-api.md, "Call quality")... */
  warning: CustomEvent<QualityWarningDetail>;
  /** ...and cleared. */
  warningcleared: CustomEvent<{ callId: string | null; name: QualityWarningName }>;
  /** A microphone or speaker was chosen, or the chosen one went away. */
  devicechange: CustomEvent<DeviceChangeDetail>;
}

/** The signed-in client that initDirectCall resolves. */
export declare class DirectCallClient extends EventTarget {
  /** Made by initDirectCall only. */
  private constructor(config: never);
  /** The signed-in cuid (in session mode, the one the server chose). */
  readonly cuid: string;
  /** The current call, or null. */
  readonly activeCall: ActiveCall | null;
  /**
   * Call `receiver` (a cuid). Resolves `"over"` when the answered call ends. Rejects with an
   * {@link UnansweredOutcome} string or a {@link DirectCallError}
   * (ERR_INVALID_CALL_PARAMETERS, ERR_OUTGOING_CALL_IN_PROGRESS, ERR_MIC_UNAVAILABLE, 404,
   * ERR_INTERNET_LOST, ERR_NOT_INITIALIZED).
   */
  call(receiver: string, context: string, callOptions?: CallOptions | null): Promise<"over">;
  /** Hang up an answered call, cancel a ringing outgoing one, decline an incoming one. */
  hangup(): void;
  /** End any call, close the connection, remove the screens. */
  logout(): void;
  /** Answer the ringing incoming call (asks for the microphone). */
  answer(): Promise<void>;
  /** Decline the ringing incoming call. */
  decline(): void;
  /** Play the call's sound the browser held back (`audioblocked`); call it from a click. */
  enableAudio(): Promise<boolean>;
  /**
   * Refuse calls from `cuid` from now on: its `call()` to this user rejects with
   * ERR_CALL_NOT_ALLOWED. Resolves once the server has recorded it; rejects with a
   * {@link DirectCallError} (ERR_INVALID_CALL_PARAMETERS for an invalid or one's own cuid,
   * ERR_NOT_INITIALIZED, ERR_INTERNET_LOST).
   */
  block(cuid: string): Promise<void>;
  /**
   * Follow who of `cuids` is online: resolves each one's {@link PresenceState} (one request),
   * then `online`, `offline` and `busy` events as they change. A cuid this user may not call
   * is `"offline"` for good. Rejects ERR_INVALID_CALL_PARAMETERS, ERR_WATCH_LIMIT (more than
   * the server's WATCH_MAX), ERR_RATE_LIMITED, ERR_NOT_INITIALIZED, ERR_INTERNET_LOST.
   */
  watch(cuids: readonly string[]): Promise<Record<string, PresenceState>>;
  /** Stop following `cuids` (every watched cuid without an argument). */
  unwatch(cuids?: readonly string[]): Promise<void>;
  mute(): void;
  unmute(): void;
  /** The microphones and speakers this page can use. */
  listDevices(): Promise<DeviceList>;
  /** Whether this browser can choose the speaker (HTMLMediaElement.setSinkId). */
  readonly speakerSelection: boolean;
  /**
   * Use this microphone (null: the default) now and for the next calls; during a call it
   * is switched without renegotiating. Rejects ERR_DEVICE_UNAVAILABLE.
   */
  setMicrophone(deviceId: string | null): Promise<void>;
  /** Play calls through this speaker (null: the default). Rejects ERR_NOT_SUPPORTED, ERR_DEVICE_UNAVAILABLE. */
  setSpeaker(deviceId: string | null): Promise<void>;
  /**
   * Rate an answered call that ended (default: this page's last one). Rejects
   * ERR_INVALID_PARAMETERS, ERR_UNKNOWN_CALL, ERR_FEEDBACK_DISABLED, ERR_CALL_STATE.
   */
  postFeedback(score: FeedbackScore, issues?: readonly FeedbackIssue[] | null, callId?: string): Promise<void>;
  /**
   * Check the microphone, the signaling round trip and a media path through the account's
   * TURN server. Resolves a report (failed checks are in it); rejects only
   * ERR_OUTGOING_CALL_IN_PROGRESS or ERR_NOT_INITIALIZED.
   */
  preflight(options?: PreflightOptions): Promise<PreflightReport>;

  addEventListener<K extends keyof DirectCallEventMap>(
    type: K,
    listener: (this: DirectCallClient, event: DirectCallEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof DirectCallEventMap>(
    type: K,
    listener: (this: DirectCallClient, event: DirectCallEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}

/**
 * Check the options, sign in and open the signaling connection. Resolves the client;
 * rejects with a {@link DirectCallError}.
 */
export declare function initDirectCall(options: InitOptions): Promise<DirectCallClient>;

/** `window.DirectCall`, set by every build when it loads. */
export interface DirectCallGlobal {
  readonly initDirectCall: typeof initDirectCall;
  readonly ERR: typeof ERR;
  readonly version: string;
  /** With `{% directcall_session %}` in the page: the auto-signed-in client, else null. */
  readonly client: Promise<DirectCallClient> | null;
}

declare global {
  interface Window {
    DirectCall: DirectCallGlobal;
  }
  interface WindowEventMap {
    "directcall:ready": Event;
    "directcall:client": CustomEvent<DirectCallClient>;
    "directcall:error": CustomEvent<DirectCallError>;
  }
}
