/**
 * The layering of docs/architecture.md, enforced by `npm run lint`. Only runtime imports count:
 * `import type` lines cost nothing at run time and are exempt.
 */
const SRC = "^gateway/src/";
const runtime = { dependencyTypesNot: ["type-only"] };
const forbid = (name, comment, from, to) => ({
  name,
  comment,
  severity: "error",
  from: { path: from },
  to: { ...runtime, ...to },
});

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "A cycle of runtime imports: one side should depend on the other only.",
      severity: "error",
      from: {},
      to: { circular: true, viaOnly: runtime },
    },
    forbid(
      "api-layer",
      "api/ validates, calls a service and sends: it never sees a backend or the config",
      `${SRC}api/`,
      {
        path: `${SRC}(backends|config)/`,
      },
    ),
    forbid(
      "access-layer",
      "access/ may use only the config primitives (fields, errors), never api, services or backends",
      `${SRC}access/`,
      {
        path: [`${SRC}(api|services|backends)/`, `${SRC}config/(?!fields\\.ts|errors\\.ts)`],
      },
    ),
    forbid(
      "services-layer",
      "services/ never import api, access, middleware or config (and backends only as types)",
      `${SRC}services/`,
      {
        path: `${SRC}(api|access|middleware|config|backends)/`,
      },
    ),
    forbid(
      "backends-layer",
      "backends/ never import api, services, access, middleware, observability, or config beyond its primitives",
      `${SRC}backends/`,
      {
        path: [`${SRC}(api|services|access|middleware|observability)/`, `${SRC}config/(?!fields\\.ts|errors\\.ts)`],
      },
    ),
    forbid("config-layer", "config/ never imports api or middleware", `${SRC}config/`, {
      path: `${SRC}(api|middleware)/`,
    }),
    forbid(
      "middleware-layer",
      "middleware/ never imports api, services, access, backends or config",
      `${SRC}middleware/`,
      {
        path: `${SRC}(api|services|access|backends|config)/`,
      },
    ),
    forbid(
      "observability-layer",
      "observability/ never imports api, services, access, backends or middleware",
      `${SRC}observability/`,
      {
        path: `${SRC}(api|services|access|backends|middleware)/`,
      },
    ),
    forbid(
      "leaves",
      "errors/, schemas/ and utils/ are leaves: they import nothing else of the gateway",
      `${SRC}(errors|schemas|utils)/`,
      {
        path: `${SRC}(?!errors/|schemas/|utils/)`,
      },
    ),
    forbid(
      "balancing-leaf",
      "balancing/ (targets, breakers, the balancer, health checks) is shared by backends and services: it imports only leaves",
      `${SRC}balancing/`,
      {
        path: `${SRC}(?!errors/|schemas/|utils/|balancing/)`,
      },
    ),
    forbid("mock-remote-alone", "mock-remote is a separate server: it imports nothing from gateway/", "^mock-remote/", {
      path: "^gateway/",
    }),
    forbid("src-not-tests", "the gateway never imports tests, the bench or mock-remote", SRC, {
      path: "^(test|bench|mock-remote)/",
    }),
    forbid(
      "no-dev-deps-in-src",
      "production code uses production dependencies only (the image has no others)",
      "^(gateway|mock-remote)/src/",
      {
        dependencyTypes: ["npm-dev"],
      },
    ),
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    exclude: { path: "^(dist|node_modules|coverage)/" },
  },
};
