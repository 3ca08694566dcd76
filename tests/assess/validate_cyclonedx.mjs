// Validates CycloneDX 1.5 JSON BOMs against the official schema (as published in the npm package
// @cyclonedx/cyclonedx-library, res/schema), with Ajv. Used by `make check-cyclonedx` through
// CycloneDxSchema.* in assess_test. Usage: node validate_cyclonedx.mjs NODE_MODULES BOM...
// Prints "valid: FILE" per valid BOM; exits 1 with the schema errors otherwise.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const [modules, ...boms] = process.argv.slice(2);
const require = createRequire(path.join(modules, 'noop.js'));
const Ajv = require('ajv').default;
const addFormats = require('ajv-formats').default;
const addFormats2019 = require('ajv-formats-draft2019');
const schemaDir = path.join(modules, '@cyclonedx/cyclonedx-library/res/schema');
const load = (name) => JSON.parse(readFileSync(path.join(schemaDir, name), 'utf8'));

const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: true });
addFormats(ajv);
addFormats2019(ajv);  // iri-reference, idn-email
// The 1.5 schema refers to its companions by their SNAPSHOT file names.
for (const name of ['spdx.SNAPSHOT.schema.json', 'jsf-0.82.SNAPSHOT.schema.json']) {
  const schema = load(name);
  schema.$id = 'http://cyclonedx.org/schema/' + name;
  ajv.addSchema(schema);
}
const validate = ajv.compile(load('bom-1.5.SNAPSHOT.schema.json'));
let failed = false;
for (const file of boms) {
  const bom = JSON.parse(readFileSync(file, 'utf8'));
  if (validate(bom)) {
    console.log('valid: ' + file);
  } else {
    failed = true;
    console.log('INVALID: ' + file + '\n' + JSON.stringify(validate.errors, null, 2));
  }
}
process.exit(failed ? 1 : 0);
