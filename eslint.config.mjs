// `npm run lint` (with Prettier and dependency-cruiser): typed typescript-eslint rules over all TypeScript.
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "coverage/**", "test-results/**", "**/*.js", "**/*.mjs", "**/*.cjs"] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "@typescript-eslint/no-non-null-assertion": "error",
      "@typescript-eslint/ban-ts-comment": "error",
      // `_next` is how Express tells an error handler apart; `_` marks what a signature must take but not use.
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", ignoreRestSiblings: true },
      ],
      // A Backend's methods are async by contract; an in-process one (echo, the tests' fakes) has nothing to await.
      "@typescript-eslint/require-await": "off",
    },
  },
  { files: ["gateway/src/**/*.ts", "mock-remote/src/**/*.ts"], rules: { "no-console": "error" } },
  {
    // Tests read answers with `await response.json()` (typed `any` by the fetch API) and check them with expect.
    files: ["test/**/*.ts"],
    rules: {
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-return": "off",
    },
  },
);
