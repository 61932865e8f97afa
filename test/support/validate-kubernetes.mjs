// Validates Kubernetes objects against the API's JSON schemas, offline, with the `kubernetes-models` package
// (generated from the Kubernetes OpenAPI spec; ESM only, hence this script, which the Jest tests spawn).
// Reads a JSON array of objects on stdin; prints a JSON array with one entry per object: its kind and name,
// and the validation error, if any.
import { text } from "node:stream/consumers";

const objects = JSON.parse(await text(process.stdin));
const results = [];
for (const object of objects) {
  const [group, version] = object.apiVersion.includes("/") ? object.apiVersion.split("/") : ["", object.apiVersion];
  const modulePath = group === "" ? `kubernetes-models/${version}` : `kubernetes-models/${group}/${version}`;
  const models = await import(modulePath);
  const Model = models[object.kind];
  let error = Model === undefined ? `no schema for ${object.apiVersion} ${object.kind}` : undefined;
  if (Model !== undefined) {
    try {
      new Model(object).validate();
    } catch (failure) {
      error = failure instanceof Error ? failure.message : String(failure);
    }
  }
  results.push({ kind: object.kind, name: object.metadata?.name, ...(error === undefined ? {} : { error }) });
}
process.stdout.write(JSON.stringify(results));
