import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_COORDINATOR, defaultHostId, loadHookConfig } from "../../cli/hook/config.js";

function withFile(text: string, fn: (path: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "netmig-hookconf-"));
  try {
    const path = join(dir, "hook.conf");
    writeFileSync(path, text);
    fn(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("hook config - no file: defaults (fail-closed, 5 s, short hostname, /var/log/netmig/hook.log)", () => {
  const c = loadHookConfig({ NETMIG_HOOK_CONFIG: "" });
  assert.equal(c.coordinator, DEFAULT_COORDINATOR);
  assert.equal(c.policy, "fail-closed");
  assert.equal(c.timeoutMs, 5000);
  assert.equal(c.hostId, defaultHostId());
  assert.equal(c.logFile, "/var/log/netmig/hook.log");
  assert.equal(c.completeOn, "stopped");
});

test("hook config - key = value lines with comments and quotes; the environment overrides the file", () => {
  withFile(`# comment\n; another\n\ncoordinator = 10.0.0.5:50051\npolicy=fail-open\n  host_id = "hv-7"  \ntimeout_ms = 2500\nlog_file = '/tmp/x.log'\ncomplete_on = release\ntls_ca = /etc/netmig/ca.pem\n`, (path) => {
    const c = loadHookConfig({ NETMIG_HOOK_CONFIG: path });
    assert.deepEqual(c.problems, []);
    assert.equal(c.path, path);
    assert.deepEqual([c.coordinator, c.policy, c.hostId, c.timeoutMs, c.logFile, c.completeOn, c.tlsCa], ["10.0.0.5:50051", "fail-open", "hv-7", 2500, "/tmp/x.log", "release", "/etc/netmig/ca.pem"]);
    const o = loadHookConfig({ NETMIG_HOOK_CONFIG: path, NETMIG_COORDINATOR: "127.0.0.1:9", NETMIG_HOOK_POLICY: "fail-closed", NETMIG_HOST_ID: "host-b", NETMIG_HOOK_TIMEOUT_MS: "900", NETMIG_HOOK_LOG: "-" });
    assert.deepEqual([o.coordinator, o.policy, o.hostId, o.timeoutMs, o.logFile], ["127.0.0.1:9", "fail-closed", "host-b", 900, "-"]);
  });
});

test("hook config - bad lines and values are reported and leave the defaults", () => {
  withFile(`policy = fail-sideways\ntimeout_ms = 5s\nhost_id = a.b\nno equals sign\nflavour = strawberry\n`, (path) => {
    const c = loadHookConfig({ NETMIG_HOOK_CONFIG: path });
    assert.equal(c.policy, "fail-closed");
    assert.equal(c.timeoutMs, 5000);
    assert.equal(c.hostId, defaultHostId());
    assert.equal(c.problems.length, 5, c.problems.join("\n"));
    assert.match(c.problems.join("\n"), /hook\.conf:4: expected "key = value"/);
    assert.match(c.problems.join("\n"), /unknown key "flavour"/);
  });
  const missing = loadHookConfig({ NETMIG_HOOK_CONFIG: "/nonexistent/netmig/hook.conf" });
  assert.match(missing.problems[0] ?? "", /ENOENT/, "a config path that was asked for and is missing is a problem");
});

test("hook config - __proto__ and constructor keys cannot pollute prototypes", () => {
  withFile(`__proto__ = polluted\nconstructor = x\nprototype = y\n__proto__.policy = fail-open\n`, (path) => {
    const c = loadHookConfig({ NETMIG_HOOK_CONFIG: path });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal((Object.prototype as Record<string, unknown>).policy, undefined);
    assert.equal(c.policy, "fail-closed");
    assert.equal(c.problems.length, 4);
  });
});

test("hook config - migration_timeout_ms: 1 h by default, from the file or NETMIG_HOOK_MIGRATION_TIMEOUT_MS, bounded", () => {
  assert.equal(loadHookConfig({ NETMIG_HOOK_CONFIG: "" }).migrationTimeoutMs, 3_600_000);
  withFile("migration_timeout_ms = 7200000\n", (path) => {
    assert.equal(loadHookConfig({ NETMIG_HOOK_CONFIG: path }).migrationTimeoutMs, 7_200_000);
    assert.equal(loadHookConfig({ NETMIG_HOOK_CONFIG: path, NETMIG_HOOK_MIGRATION_TIMEOUT_MS: "60000" }).migrationTimeoutMs, 60_000);
    const bad = loadHookConfig({ NETMIG_HOOK_CONFIG: path, NETMIG_HOOK_MIGRATION_TIMEOUT_MS: "5" });
    assert.equal(bad.migrationTimeoutMs, 3_600_000);
    assert.match(bad.problems.join("\n"), /migration_timeout_ms "5" \(NETMIG_HOOK_MIGRATION_TIMEOUT_MS\) must be an integer from 1000 to 86400000/);
  });
});
