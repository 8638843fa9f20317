// Writes the static pages (SPEC §14.2: readable without JavaScript) into dist/pages/: the SPA
// shell with the page's HTML inside #root. The SPA renders over it once its script runs.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

const dist = resolve("dist");
const shell = readFileSync(resolve(dist, "index.html"), "utf8");
if (!shell.includes("<!--page-->")) throw new Error("dist/index.html has no <!--page--> slot");
const { render, PAGES } = await import(pathToFileURL(resolve("build-ssr", "prerender.js")).href);
mkdirSync(resolve(dist, "pages"), { recursive: true });
for (const [path, file] of Object.entries(PAGES)) {
  const { html, title } = render(path);
  const page = shell.replace("<!--page-->", html).replace(/<title>[^<]*<\/title>/, `<title>${title}</title>`);
  writeFileSync(resolve(dist, "pages", file), page);
}
rmSync(resolve("build-ssr"), { recursive: true, force: true });
console.log(`prerendered ${Object.keys(PAGES).length} pages`);
