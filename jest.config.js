/**
 * Four projects, each runnable alone (`npm run test:unit` and so on, or `--selectProjects`); plain `jest`
 * (what `make test` runs) runs them all.
 */
const shared = {
  testEnvironment: "node",
  transform: { "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json" }] },
  // Container tests build images and start containers; each sets its own longer timeouts.
  testTimeout: 20000,
};
const LOAD = "<rootDir>/test/integration/load.test.ts";

/** @type {import('jest').Config} */
module.exports = {
  projects: [
    {
      ...shared,
      displayName: "unit",
      roots: ["<rootDir>/test/unit", "<rootDir>/test/support"],
      testMatch: ["**/*.test.ts"],
    },
    {
      ...shared,
      displayName: "integration",
      roots: ["<rootDir>/test/integration"],
      testMatch: ["**/*.test.ts"],
      // The load test is the "load" project below (plain `jest`, hence `make test` and CI, runs it too).
      testPathIgnorePatterns: ["/node_modules/", LOAD],
      globalSetup: "<rootDir>/test/support/global-setup-build.ts",
    },
    { ...shared, displayName: "containers", roots: ["<rootDir>/test/containers"], testMatch: ["**/*.test.ts"] },
    {
      ...shared,
      displayName: "load",
      roots: ["<rootDir>/test/integration"],
      testMatch: [LOAD],
      globalSetup: "<rootDir>/test/support/global-setup-build.ts",
    },
  ],
};
