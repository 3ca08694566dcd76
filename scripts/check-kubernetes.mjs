// Validates every document in deploy/kubernetes/ against the Kubernetes OpenAPI schema as
// published in the npm package kubernetes-models (ajv-compiled validators of the upstream schema).
// Usage: node scripts/check-kubernetes.mjs NODE_MODULES_DIR MANIFEST_DIR
// Prints one line per document; exits 1 when any document fails (or no validator exists for it).
import fs from "node:fs";
import path from "node:path";

const [modules, dir] = process.argv.slice(2);
const yaml = (await import(path.join(modules, "js-yaml", "index.js"))).default;
let failures = 0;
let checked = 0;
for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
  for (const doc of yaml.loadAll(fs.readFileSync(path.join(dir, file), "utf8"))) {
    if (!doc) continue;
    const where = `${file}: ${doc.kind} ${doc.metadata?.name}`;
    const [group, version] = doc.apiVersion.includes("/") ? doc.apiVersion.split("/") : ["", doc.apiVersion];
    const module = path.join(modules, "kubernetes-models", group, version, `${doc.kind}.js`);
    if (!fs.existsSync(module)) {
      console.log(`FAILED ${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
      failures++;
      continue;
    }
    const Model = (await import(module))[doc.kind];
    try {
      new Model(doc).validate();
      console.log(`OK ${where}`);
      checked++;
    } catch (e) {
      console.log(`FAILED ${where}: ${e.message}`);
      failures++;
    }
  }
}
console.log(`check-kubernetes: ${checked} valid, ${failures} invalid`);
process.exit(failures || !checked ? 1 : 0);
