// What a TypeScript app writes with the package; `npm run typecheck` compiles it. Each
// expected error in refused() proves the types refuse what the SDK refuses.
import {
  type CallEndDetail,
  type DirectCallClient,
  type DirectCallError,
  ERR,
  type PreflightGrade,
  type PresenceState,
  type QualitySummary,
  initDirectCall,
} from "@directcall/web-sdk";

declare const clevertap: { getAccountID(): string; getCleverTapID(): string | null };

export async function original(): Promise<void> {
  // The original SDK's code, unchanged.
  let DirectCallClient: DirectCallClient | undefined;
  await initDirectCall({
    accountId: "acct",
    apikey: "prefix.secret",
    cuid: "student_sam",
    clevertap,
    name: "Sam",
    ringtone: "/sounds/ring.mp3",
  })
    .then((client) => {
      DirectCallClient = client;
    })
    .catch((err: DirectCallError) => console.log(err.code, err.message));
  if (!DirectCallClient) return;
  const callOptions = { receiver_image: "https://example.com/a.png", initiator_image: "" };
  DirectCallClient.call("tutor_jane", "Student is calling", callOptions)
    .then((response) => {
      const over: "over" = response;
      console.log(over);
    })
    .catch((error: unknown) => console.log(error));
  setTimeout(() => DirectCallClient?.hangup(), 20000);
  DirectCallClient.logout();
}

export async function ownUi(): Promise<void> {
  const client = await initDirectCall({
    sessionUrl: "/directcall/v1/session",
    csrfToken: "token",
    serverUrl: "https://api.example.com/directcall/",
    assetsUrl: "/static/directcall-audio/",
    showScreens: false,
    language: "ar",
  });
  client.addEventListener("incoming", (event) => {
    event.preventDefault();
    const name: string = event.detail.from.name;
    const context: string = event.detail.context;
    console.log(name, context);
    void client.answer();
    client.decline();
  });
  client.addEventListener("callend", (event) => {
    const detail: CallEndDetail = event.detail;
    const seconds: number | null = detail.duration;
    console.log(detail.status, detail.reason, seconds);
  });
  client.addEventListener("connection", (event) => console.log(event.detail.state === "down"));
  // A page that reloaded during an answered call gets it back (issue 12), tabs that did not answer stop.
  client.addEventListener("resumed", (event) => console.log(event.detail.callId, event.detail.role, event.detail.peer.name));
  client.addEventListener("callend", (event) => {
    if (event.detail.status === "answered_elsewhere") console.log("another tab answered");
  });
  client.addEventListener("audioblocked", (event) => {
    console.log(event.detail.kind);
    document.body.addEventListener("click", () => void client.enableAudio().then((on: boolean) => on), { once: true });
  });
  client.addEventListener("logout", (event) => {
    if (event.detail.reason === "revoked" && event.detail.error) console.log(event.detail.error.code === ERR.SESSION_REVOKED);
  });
  client.addEventListener("error", (event) => {
    if (event.detail.code === ERR.MIC_UNAVAILABLE) console.log(event.detail.message);
  });
  client.mute();
  client.unmute();
  // The callee's side refuses a caller from now on (issue 13).
  const blocked: Promise<void> = client.block("student_sam");
  blocked.catch((error: DirectCallError) => console.log(error.code === "ERR_INVALID_CALL_PARAMETERS"));
  // Who is online (issue 15): one request, then events as people come and go.
  const states: Record<string, PresenceState> = await client.watch(["tutor_jane", "tutor_joe"]);
  console.log(states.tutor_jane === "busy");
  client.addEventListener("online", (event) => console.log(event.detail.cuid, event.detail.state));
  client.addEventListener("busy", (event) => console.log(`${event.detail.cuid} is in a call`));
  await client.unwatch(["tutor_joe"]);
  await client.unwatch();
  const active = client.activeCall;
  if (active) console.log(active.callId, active.role, active.peer.cuid);
  const cuid: string = client.cuid;
  console.log(cuid, ERR.RECEIVER_OFFLINE === 404);
}

export async function qualityDevicesFeedbackPreflight(client: DirectCallClient): Promise<void> {
  // Call quality (issue 15): per-second samples, warnings with their thresholds, the summary.
  client.addEventListener("quality", (event) => {
    const bars: number = event.detail.bars;
    const mos: number | null = event.detail.mos;
    console.log(bars, mos, event.detail.rtt, event.detail.jitter, event.detail.loss);
  });
  client.addEventListener("warning", (event) => {
    if (event.detail.name === "high-packet-loss") console.log(event.detail.value > event.detail.threshold);
  });
  client.addEventListener("warningcleared", (event) => console.log(event.detail.name));
  client.addEventListener("callend", (event) => {
    const summary: QualitySummary | null = event.detail.quality;
    if (summary && summary.relayed) console.log(summary.mosAvg, summary.codec, summary.warnings.includes("low-mos"));
  });
  // Devices.
  const devices = await client.listDevices();
  const first = devices.microphones[0];
  if (first) await client.setMicrophone(first.deviceId);
  if (client.speakerSelection) await client.setSpeaker(null);
  client.addEventListener("devicechange", (event) => {
    if (event.detail.reason === "lost") console.log(event.detail.kind, event.detail.label);
  });
  // Feedback and preflight.
  await client.postFeedback(4, ["echo", "choppy-audio"]);
  await client.postFeedback(1, null, "3f8e0a52-6f0e-4c1e-9d2b-5c7a1e0b9f11");
  const report = await client.preflight({ duration: 3000 });
  const grade: PreflightGrade | null = report.grade;
  console.log(grade, report.ok, report.media.relayed, report.signaling.rtt, report.microphone.level);
  console.log(ERR.FEEDBACK_DISABLED === "ERR_FEEDBACK_DISABLED", ERR.NOT_SUPPORTED);
  // @ts-expect-error: a score is 1 to 5
  await client.postFeedback(6);
  // @ts-expect-error: issues are Twilio's names
  await client.postFeedback(3, ["too-quiet"]);
  client.addEventListener("warning", (event) => {
    // @ts-expect-error: not a warning name
    if (event.detail.name === "high-latency") console.log("never");
  });
  // @ts-expect-error: a device id is a string (or null)
  await client.setMicrophone(3);
}

export async function verified(): Promise<void> {
  // A verified account: the host's backend mints the user token, as a string or on demand.
  await initDirectCall({ accountId: "a", apikey: "k", cuid: "c_sam", clevertap: null, userToken: "h.p.s" });
  const fresh = async () => (await fetch("/my/directcall-token")).text();
  await initDirectCall({ accountId: "a", apikey: "k", cuid: "c_sam", clevertap: null, userToken: fresh });
}

export async function refused(client: DirectCallClient): Promise<void> {
  // @ts-expect-error: the key mode needs a cuid
  await initDirectCall({ accountId: "a", apikey: "k", clevertap: null });
  // @ts-expect-error: clevertap must be given (null when not required), as in the original
  await initDirectCall({ accountId: "a", apikey: "k", cuid: "student_sam" });
  // @ts-expect-error: a user token is a string or a function giving one
  await initDirectCall({ accountId: "a", apikey: "k", cuid: "c_sam", clevertap: null, userToken: 5 });
  // @ts-expect-error: options are required
  await initDirectCall();
  // @ts-expect-error: the receiver is a cuid string
  await client.call(42, "context");
  // @ts-expect-error: call options are an object
  await client.call("tutor_jane", "context", "options");
  // @ts-expect-error: watch() takes a list of cuids
  await client.watch("tutor_jane");
  // @ts-expect-error: presence states are online, offline and busy
  client.addEventListener("offline", (event) => console.log(event.detail.state === "away"));
  // @ts-expect-error: the detail of "incoming" has no status
  client.addEventListener("incoming", (event) => console.log(event.detail.status));
  // @ts-expect-error: the client is made by initDirectCall only
  new DirectCallClientClass({});
  // @ts-expect-error: ERR is read-only
  ERR.MIC_UNAVAILABLE = "x";
}

declare const DirectCallClientClass: typeof import("@directcall/web-sdk").DirectCallClient;
