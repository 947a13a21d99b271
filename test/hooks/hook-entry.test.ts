import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../harness/free-port.js";
import { domainXml, ROOT } from "./hook-harness.js";

const ENTRIES = {
  "netmig hook": [`${ROOT}dist/cli/main.js`, "hook"],
  "dist/cli/hook/main.js": [`${ROOT}dist/cli/hook/main.js`],
} as const;

function run(entry: readonly string[], args: string[], stdin: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...entry, ...args], { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdin.on("error", () => undefined);
  child.stdin.end(stdin);
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  return new Promise((resolve) => child.once("close", (code) => {
    clearTimeout(timer);
    resolve({ code, stdout, stderr });
  }));
}

test("hook entry - `netmig hook` and dist/cli/hook/main.js take the same arguments and answer the same", async () => {
  const dir = mkdtempSync(join(tmpdir(), "netmig-hook-entry-"));
  try {
    const uuid = randomUUID();
    const xml = domainXml({ uuid, name: "entry-1", ovsInterfaceId: `${uuid}-if0`, ovsMac: "52:54:00:00:00:01" });
    const env = {
      NETMIG_HOOK_CONFIG: join(dir, "none.conf"), NETMIG_COORDINATOR: `127.0.0.1:${await freePort()}`, NETMIG_HOST_ID: "host-b",
      NETMIG_HOOK_TIMEOUT_MS: "500", NETMIG_HOOK_LOG: join(dir, "hook.log"),
    };
    for (const [name, entry] of Object.entries(ENTRIES)) {
      const open = await run(entry, ["libvirt", "entry-1", "migrate", "begin", "-"], xml, { ...env, NETMIG_HOOK_POLICY: "fail-open" });
      assert.equal(open.code, 0, `${name}: ${open.stderr}`);
      assert.equal(open.stdout, xml, `${name}: fail-open echoes the XML`);
      const closed = await run(entry, ["libvirt", "entry-1", "migrate", "begin", "-"], xml, { ...env, NETMIG_HOOK_POLICY: "fail-closed" });
      assert.equal(closed.code, 1, `${name}: fail-closed cancels`);
      assert.equal(closed.stdout, "");
      const ignored = await run(entry, ["libvirt", "entry-1", "start", "begin", "-"], xml, env);
      assert.deepEqual([ignored.code, ignored.stdout], [0, ""], name);
      const usage = await run(entry, ["frobnicate"], "", env);
      assert.equal(usage.code, 2, name);
      assert.match(usage.stderr, /hook libvirt <vm-name> <operation> <sub-operation> <extra>/, name);
    }
    const help = await run([`${ROOT}dist/cli/main.js`], ["help"], "", env);
    assert.match(help.stdout, /netmig hook libvirt/, "netmig help lists the hook");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
