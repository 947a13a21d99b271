// Install step run before `npm run demo`, `npm test` and `npm run bench`.
// Plain Node, no dependencies: it runs before node_modules exists.
//
// 1. Runs `npm ci` (or `npm install` without a package-lock.json) when
//    node_modules is missing or older than package.json / package-lock.json.
// 2. Makes sure the Debian packages whose binaries netmig uses are present:
//    always nats-server; with NETMIG_SETUP_DATAPLANE=1 also Open vSwitch,
//    conntrack, iproute2, ping and docker-compose. Only when a binary is
//    missing does it run one `apt-get update` and one `apt-get install`
//    (as root, or through `sudo -n`).
//
// Idempotent, and only stats files when everything is there.
import { spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, statSync, utimesSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dataplane = ["1", "true", "yes"].includes((process.env.NETMIG_SETUP_DATAPLANE ?? "").toLowerCase());

/** Debian packages, the binaries that show each is installed, and whether a missing one is fatal. */
const PACKAGES = [
  { pkg: "nats-server", bins: ["nats-server"], required: true },
  ...(dataplane
    ? [
        { pkg: "openvswitch-switch", bins: ["ovs-vswitchd", "ovsdb-server", "ovs-vsctl"], required: false },
        { pkg: "conntrack", bins: ["conntrack"], required: false },
        { pkg: "iproute2", bins: ["ip"], required: false },
        { pkg: "iputils-ping", bins: ["ping"], required: false },
        // .ci/run checks docker-compose.yml with `docker-compose config -q` (no Docker engine needed).
        { pkg: "docker-compose", bins: ["docker-compose"], required: false, use: "the docker-compose.yml check in .ci/run" },
      ]
    : []),
];

const BIN_DIRS = [
  ...new Set([
    ...(process.env.PATH ?? "").split(delimiter).filter((d) => d !== ""),
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
  ]),
];

function say(line) {
  // stderr: `npm run bench -- --json` promises JSON alone on stdout.
  console.error(`netmig setup: ${line}`);
}

function findBin(name) {
  for (const dir of BIN_DIRS) {
    const path = join(dir, name);
    try {
      if (statSync(path).isFile()) {
        accessSync(path, constants.X_OK);
        return path;
      }
    } catch {
      // not here
    }
  }
  return null;
}

function mtimeMs(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return null;
  }
}

function run(cmd, args, env) {
  const res = spawnSync(cmd, args, { cwd: root, stdio: ["ignore", "inherit", "inherit"], env: env ?? process.env });
  if (res.error) {
    say(`could not run ${cmd}: ${res.error.message}`);
    return false;
  }
  return res.status === 0;
}

// --- 1. node_modules -------------------------------------------------------

function npmInstallReason() {
  const nodeModules = join(root, "node_modules");
  if (!existsSync(nodeModules)) return "node_modules is missing";
  // npm rewrites node_modules/.package-lock.json on every install.
  const marker = existsSync(join(nodeModules, ".package-lock.json")) ? join(nodeModules, ".package-lock.json") : nodeModules;
  const installedMs = mtimeMs(marker) ?? 0;
  for (const file of ["package-lock.json", "package.json"]) {
    const changedMs = mtimeMs(join(root, file));
    if (changedMs !== null && changedMs > installedMs) return `${file} is newer than node_modules`;
  }
  return null;
}

function npm(args) {
  const cli = process.env.npm_execpath;
  if (cli && /\.c?js$/.test(cli) && existsSync(cli)) return run(process.execPath, [cli, ...args]);
  return run(process.platform === "win32" ? "npm.cmd" : "npm", args);
}

function ensureNodeModules() {
  const reason = npmInstallReason();
  if (reason === null) return true;
  const common = ["--no-audit", "--no-fund"];
  let ok;
  if (existsSync(join(root, "package-lock.json"))) {
    say(`running npm ci (${reason})...`);
    ok = npm(["ci", ...common]);
    if (!ok) {
      say("npm ci failed (package-lock.json out of sync with package.json?); trying npm install...");
      ok = npm(["install", ...common]);
    }
  } else {
    say(`running npm install (${reason}; no package-lock.json)...`);
    ok = npm(["install", ...common]);
  }
  if (!ok) {
    say("npm failed to install the dependencies; see its output above.");
    return false;
  }
  // Mark the install as newer than the manifests, even if npm rewrote the lock file last.
  const now = new Date();
  const marker = join(root, "node_modules", ".package-lock.json");
  utimesSync(existsSync(marker) ? marker : join(root, "node_modules"), now, now);
  return true;
}

// --- 2. Debian packages ----------------------------------------------------

function missingPackages() {
  return PACKAGES.filter(({ bins }) => bins.some((b) => findBin(b) === null));
}

/** How to run apt-get here: a command prefix, or null when we may not. */
function aptPrefix() {
  if (findBin("apt-get") === null) return null;
  if (typeof process.getuid === "function" && process.getuid() === 0) return [];
  if (findBin("sudo") !== null && spawnSync("sudo", ["-n", "true"], { stdio: "ignore" }).status === 0) {
    return ["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive"];
  }
  return null;
}

function aptCommand(prefix, args) {
  const [cmd, ...rest] = [...prefix, "apt-get", ...args];
  return { cmd, args: rest };
}

function manualCommand(pkgs) {
  const sudo = typeof process.getuid === "function" && process.getuid() === 0 ? "" : "sudo ";
  return `${sudo}apt-get update && ${sudo}apt-get install -y --no-install-recommends ${pkgs.join(" ")}`;
}

function ensurePackages() {
  const missing = missingPackages();
  if (missing.length === 0) return { ok: true, installed: [], still: [] };
  const names = missing.map((m) => m.pkg);
  const prefix = aptPrefix();
  if (prefix !== null) {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    const lock = ["-o", "DPkg::Lock::Timeout=300"];
    say("running apt-get update...");
    const update = aptCommand(prefix, ["-q", ...lock, "update"]);
    if (!run(update.cmd, update.args, env)) say("apt-get update failed; trying the install anyway...");
    say(`installing ${names.join(", ")} (apt-get)...`);
    const install = aptCommand(prefix, ["-q", "-y", "--no-install-recommends", ...lock, "install", ...names]);
    // A package's post-install step (e.g. starting a service in a container)
    // may fail although its binaries are in place: judge by the binaries below.
    if (!run(install.cmd, install.args, env)) say("apt-get install reported an error; checking what was installed...");
    if (names.includes("openvswitch-switch")) {
      say("note: Debian may have started the system Open vSwitch service; netmig's tests run their own OVS instances.");
    }
  } else if (findBin("apt-get") === null) {
    say("apt-get is not available on this machine (not Debian/Ubuntu?).");
  } else {
    say("not running as root and `sudo -n` is not available, so packages cannot be installed automatically.");
  }

  const still = missingPackages();
  let ok = true;
  for (const m of still) {
    const bins = m.bins.filter((b) => findBin(b) === null).join(", ");
    if (m.required) {
      say(`ERROR: ${m.pkg} is required but missing (no ${bins}). Install it with:`);
      ok = false;
    } else {
      say(`warning: ${m.pkg} is missing (no ${bins}); ${m.use ?? "dataplane tests"} will not be able to use it. Install it with:`);
    }
    say(`  ${manualCommand([m.pkg])}`);
  }
  if (still.length > 1) say(`or all at once: ${manualCommand(still.map((m) => m.pkg))}`);
  const installed = names.filter((n) => !still.some((m) => m.pkg === n));
  return { ok, installed, still: still.map((m) => m.pkg) };
}

// ---------------------------------------------------------------------------

if (!ensureNodeModules()) process.exit(1);
const { ok, installed, still } = ensurePackages();
if (!ok) process.exit(1);
if (installed.length > 0) say(`installed ${installed.join(", ")}`);
if (installed.length === 0 && still.length === 0) {
  say(`ok (node_modules up to date; ${dataplane ? "nats-server and dataplane tools" : "nats-server"} present)`);
}
