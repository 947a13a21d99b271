// Runs the compiled tests (dist/test/**/*.test.js) with node's test runner.
//
//   node scripts/test.mjs                                 all test files
//   node scripts/test.mjs ovs nats                        files whose path contains "ovs" or "nats"
//   node scripts/test.mjs --test-name-pattern="kill"      node options are passed on
//
// The runner writes straight to this process's stdout/stderr, so its closing
// summary reaches CI unchanged; its exit code becomes ours.
import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const testRoot = join(root, "dist", "test");

// Node options whose value may come as the next argument (`--opt value`).
const OPTIONS_WITH_VALUE = new Set([
  "--test-name-pattern",
  "--test-skip-pattern",
  "--test-reporter",
  "--test-reporter-destination",
  "--test-concurrency",
  "--test-timeout",
  "--test-shard",
  "--import",
  "--require",
  "-r",
]);

const nodeArgs = [];
const filters = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const arg = argv[i];
  if (arg === "--") continue;
  if (arg.startsWith("-")) {
    nodeArgs.push(arg);
    if (OPTIONS_WITH_VALUE.has(arg) && i + 1 < argv.length) nodeArgs.push(argv[++i]);
  } else {
    filters.push(arg);
  }
}

function findTests(dir) {
  if (!existsSync(dir)) return [];
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...findTests(path));
    else if (entry.isFile() && entry.name.endsWith(".test.js")) found.push(path);
  }
  return found;
}

const all = findTests(testRoot).sort();
if (all.length === 0) {
  console.error(`netmig test: no test files under ${relative(root, testRoot)}/ (run \`npm run build\` first)`);
  process.exit(1);
}
const display = (file) => relative(testRoot, file).split(sep).join("/");
const files = filters.length === 0 ? all : all.filter((f) => filters.some((s) => display(f).includes(s)));
if (files.length === 0) {
  console.error(`netmig test: no test file path contains ${filters.map((s) => JSON.stringify(s)).join(" or ")}`);
  console.error(`netmig test: test files are: ${all.map(display).join(", ")}`);
  process.exit(1);
}

// User options come last so that they override the defaults.
const args = ["--test", "--test-concurrency=2", "--test-timeout=300000", ...nodeArgs, ...files];
const child = spawn(process.execPath, args, { cwd: root, stdio: "inherit" });

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
  });
}

child.on("error", (err) => {
  console.error(`netmig test: could not start node: ${err.message}`);
  process.exit(1);
});
child.on("exit", (code, signal) => {
  if (signal !== null) {
    console.error(`netmig test: test runner ended by ${signal}`);
    process.exit(1);
  }
  process.exit(code ?? 1);
});
