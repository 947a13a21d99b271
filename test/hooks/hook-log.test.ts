import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../harness/free-port.js";
import { domainXml, runHook } from "./hook-harness.js";

/** A fake logger(1) first on PATH: records its arguments, one run per line, and exits with `exitCode`. */
function fakeLogger(dir: string, exitCode: number): { env: Record<string, string>; runs: () => string[] } {
  const record = join(dir, `logger-${exitCode}.runs`);
  writeFileSync(join(dir, "logger"), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${record}'\nexit ${exitCode}\n`);
  chmodSync(join(dir, "logger"), 0o755);
  return {
    env: { PATH: `${dir}:${process.env.PATH ?? ""}`, NETMIG_HOOK_LOG: "syslog" },
    runs: () => (existsSync(record) ? readFileSync(record, "utf8").split("\n").filter(Boolean) : []),
  };
}

test("hook log - log_file = syslog: every line goes through logger(1) with tag netmig-hook and a daemon priority", async () => {
  const dir = mkdtempSync(join(tmpdir(), "netmig-hook-syslog-"));
  try {
    const uuid = randomUUID();
    const xml = domainXml({ uuid, name: "sys-1", ovsInterfaceId: `${uuid}-if0`, ovsMac: "52:54:00:00:00:02" });
    const logger = fakeLogger(dir, 0);
    const r = await runHook(["sys-1", "migrate", "begin", "-"], xml, {
      ...logger.env, NETMIG_HOOK_CONFIG: join(dir, "none.conf"), NETMIG_COORDINATOR: `127.0.0.1:${await freePort()}`, NETMIG_HOST_ID: "host-b", NETMIG_HOOK_TIMEOUT_MS: "500",
    });
    assert.equal(r.code, 1, "fail-closed by default");
    const runs = logger.runs();
    const failure = runs.find((l) => /FAIL-CLOSED/.test(l));
    assert.ok(failure, `a syslog line says the migration was cancelled: ${runs.join("\n")}`);
    assert.match(failure!, /^-t netmig-hook --id=[0-9]+ -p daemon\.err -- \{/);
    assert.ok(failure!.includes(`"vm_id":"${uuid}"`));
    assert.match(r.stderr, /see syslog \(journalctl -t netmig-hook\)/, "libvirt's error says where to look");
    assert.doesNotMatch(r.stderr, /"level":/, "log lines went to syslog, not stderr");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("hook log - when logger(1) fails, the lines go to stderr and the hook still answers", async () => {
  const dir = mkdtempSync(join(tmpdir(), "netmig-hook-syslog-"));
  try {
    const uuid = randomUUID();
    const xml = domainXml({ uuid, name: "sys-2", ovsInterfaceId: `${uuid}-if0`, ovsMac: "52:54:00:00:00:03" });
    const logger = fakeLogger(dir, 1);
    const r = await runHook(["sys-2", "migrate", "begin", "-"], xml, {
      ...logger.env, NETMIG_HOOK_CONFIG: join(dir, "none.conf"), NETMIG_COORDINATOR: `127.0.0.1:${await freePort()}`, NETMIG_HOST_ID: "host-b",
      NETMIG_HOOK_TIMEOUT_MS: "500", NETMIG_HOOK_POLICY: "fail-open",
    });
    assert.equal(r.code, 0);
    assert.equal(r.stdout.toString("utf8"), xml);
    assert.equal(logger.runs().length, 1, "syslog is tried once, then given up for this run");
    assert.match(r.stderr, /cannot log to syslog/);
    assert.match(r.stderr, /"level":"error".*FAIL-OPEN/, "the loud line reaches stderr");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
