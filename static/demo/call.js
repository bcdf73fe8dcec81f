// The demo call page: pick a demo user, then call another one (no inline script; CSP-friendly).
import { initDirectCall } from "/static/directcall/js/directcall.js";

const config = JSON.parse(document.getElementById("demo-config").textContent);
const $ = (id) => document.getElementById(id);
let client = null;

function log(text) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()} — ${text}`;
  $("log").prepend(item);
}

function button(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

async function signIn(user) {
  try {
    client = await initDirectCall({
      accountId: config.accountId,
      apikey: config.apikey,
      cuid: user.cuid,
      name: user.name,
      clevertap: null, // the demo account does not require CleverTap
    });
  } catch (error) {
    log(`sign-in failed: ${error.code} ${error.message}`);
    return;
  }
  window.demoClient = client;
  log(`signed in as ${user.name}`);
  $("me").textContent = user.name;
  $("signin").hidden = true;
  $("callees").hidden = false;
  const people = $("people");
  people.replaceChildren(
    ...config.users
      .filter((u) => u.cuid !== user.cuid)
      .map((u) => button(`Call ${u.name}`, () => call(u))),
  );
  for (const type of ["incoming", "statechange", "callend", "error", "connection"]) {
    client.addEventListener(type, (e) => log(`${type}: ${JSON.stringify(e.detail)}`));
  }
}

async function call(user) {
  log(`calling ${user.name}…`);
  try {
    const result = await client.call(user.cuid, $("context").value);
    log(`call result: ${result}`);
  } catch (error) {
    log(`call ended: ${typeof error === "string" ? error : `${error.code} ${error.message}`}`);
  }
}

$("users").replaceChildren(...config.users.map((u) => button(u.name, () => signIn(u))));
$("logout").addEventListener("click", () => {
  client.logout();
  client = null;
  $("signin").hidden = false;
  $("callees").hidden = true;
  log("signed out");
});
if (!config.apikey) log("No demo key found: start the demo with ./scripts/demo.sh");
