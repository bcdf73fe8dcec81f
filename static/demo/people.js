// The people page's log: shows what the template tags' buttons did. Optional — the
// calls work without it; it only listens to the SDK's events (no inline script; CSP-friendly).
const log = document.getElementById("log");

function write(text) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()} — ${text}`;
  log.prepend(item);
}

function describe(detail) {
  if ("result" in detail) return `call result: ${detail.result}`;
  const error = detail.error;
  if (typeof error === "string") return `call ended: ${error}`;
  return `call refused: ${error.code} ${error.message}`;
}

window.addEventListener("directcall:client", () => write("ready to call and be called"));
window.addEventListener("directcall:error", (event) =>
  write(`could not sign in: ${event.detail.code} ${event.detail.message}`),
);
document.addEventListener("directcall:result", (event) => {
  const name = event.target.closest("li")?.querySelector("span")?.firstChild?.textContent?.trim();
  write(`${name || event.target.dataset.directcallCall}: ${describe(event.detail)}`);
});
