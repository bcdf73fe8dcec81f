// Builds the npm package's browser SDK with esbuild, from the same ES modules that Django
// serves as static files (directcall/static/directcall/js):
//
//   npm/dist/directcall.mjs     ES module: import { initDirectCall } from "@directcall/web-sdk"
//   npm/dist/directcall.js      classic script: sets window.DirectCall
//   npm/dist/directcall.min.js  the same, minified
//   npm/dist/audio/*.wav        the SDK's tones, for the `assetsUrl` option
//
// `import.meta.url` is defined as undefined: a bundle has no URL of its own that the SDK's
// server or tones could be found next to (the SDK then uses the page's origin and the tone
// URLs the server advertises; see docs/js-api.md). Run with `npm run build` (or `npm pack`).

import { copyFile, mkdir, readFile, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const sdk = join(root, "directcall", "static", "directcall");
const out = join(root, "npm", "dist");
const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8"));

const common = {
  entryPoints: [join(sdk, "js", "directcall.js")],
  bundle: true,
  platform: "browser",
  // Browsers with WebRTC's unified plan and ES2020: Chrome/Edge 80+, Firefox 80+, Safari 14+.
  target: ["es2020"],
  define: { "import.meta.url": "undefined" },
  banner: { js: `/*! ${pkg.name} ${pkg.version} | ${pkg.license} */` },
  legalComments: "none",
  logLevel: "silent",
  write: true,
};

const builds = [
  { ...common, format: "esm", outfile: join(out, "directcall.mjs") },
  // No globalName: the entry module sets window.DirectCall itself (with `client`, `version`).
  { ...common, format: "iife", outfile: join(out, "directcall.js") },
  { ...common, format: "iife", minify: true, outfile: join(out, "directcall.min.js") },
];

await rm(out, { recursive: true, force: true });
await mkdir(join(out, "audio"), { recursive: true });
let problems = 0;
for (const options of builds) {
  const result = await esbuild.build(options);
  // A warning (e.g. import.meta left in an IIFE) is a broken bundle: fail the build.
  for (const message of [...result.errors, ...result.warnings]) {
    problems += 1;
    const where = message.location ? `${message.location.file}:${message.location.line}: ` : "";
    console.error(`${options.outfile}: ${where}${message.text}`);
  }
}
for (const tone of ["ringtone.wav", "ringback.wav", "end.wav"]) {
  await copyFile(join(sdk, "audio", tone), join(out, "audio", tone));
}
for (const file of ["directcall.mjs", "directcall.js", "directcall.min.js"]) {
  const text = await readFile(join(out, file), "utf8");
  if (text.includes("import.meta")) {
    problems += 1;
    console.error(`${file}: still uses import.meta`);
  }
}
if (problems) process.exit(1);
console.log(`built ${pkg.name} ${pkg.version} into npm/dist/`);
