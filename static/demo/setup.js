// "Test my setup": runs client.preflight() with the page's signed-in client and shows the
// report (no inline script; CSP-friendly). Every value is written as text.
const $ = (id) => document.getElementById(id);
const GRADES = {
  excellent: "Excellent",
  great: "Great",
  good: "Good",
  fair: "Fair — calls may break up",
  degraded: "Degraded — calls will be hard to follow",
};

function ms(value) {
  return value === null || value === undefined ? "—" : `${Math.round(value)} ms`;
}

function show(report) {
  const mic = report.microphone;
  $("microphone").textContent = mic.ok
    ? `OK — ${mic.label || "default microphone"}, picking up sound`
    : `Problem: ${mic.error}`;
  $("signaling").textContent = report.signaling.ok ? ms(report.signaling.rtt) : `Problem: ${report.signaling.error}`;
  const media = report.media;
  $("media").textContent = media.ok
    ? `${media.relayed ? "through TURN" : "direct"} · round trip ${ms(media.rtt.avg)} · jitter ${ms(media.jitter.avg)} · ` +
      `loss ${media.loss ?? "—"} % · MOS ${media.mos.avg ?? "—"} · ${media.codec || "?"}`
    : `Problem: ${media.error}`;
  $("warnings").textContent = report.warnings.length ? report.warnings.join(", ") : "none";
  $("grade").textContent = report.grade ? GRADES[report.grade] : "the audio test could not run";
  $("report").hidden = false;
  $("report").dataset.ok = String(report.ok);
}

async function main() {
  if (!window.DirectCall || !window.DirectCall.client) {
    $("status").textContent = "Log in to test your setup.";
    return;
  }
  let client;
  try {
    client = await window.DirectCall.client;
  } catch (error) {
    $("status").textContent = `Could not sign in: ${error.code} ${error.message}`;
    return;
  }
  $("status").textContent = "Ready.";
  $("run").disabled = false;
  $("run").addEventListener("click", async () => {
    $("run").disabled = true;
    $("report").hidden = true;
    $("status").textContent = "Testing… make a sound.";
    try {
      const report = await client.preflight();
      show(report);
      $("status").textContent = report.ok ? "Your setup is ready for calls." : "Something needs attention (see below).";
    } catch (error) {
      $("status").textContent = `The test could not run: ${error.code} ${error.message}`;
    } finally {
      $("run").disabled = false;
    }
  });
}

if (window.DirectCall) main();
else window.addEventListener("directcall:ready", main, { once: true });
