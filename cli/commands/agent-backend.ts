/**
 * `netmig agent` flags that choose and configure the dataplane backend:
 *
 *   --backend memory|ovs|conntrack      default memory
 *   --netns <name>                      network namespace whose conntrack table is used (default: the agent's own)
 *   --ct-zone-range <lo>-<hi>           zones allocated to incoming ports (default 4096-65000)
 *
 * ovs:
 *   --ovsdb <unix socket>               default <ovs-rundir>/db.sock ("unix:" prefix accepted)
 *   --ovs-rundir <dir>                  default /var/run/openvswitch (bridge .mgmt sockets, ovs-vswitchd.pid)
 *   --vswitchd-ctl <unix socket>        ovs-vswitchd's unixctl socket (default from the pid file)
 *   --bridge <name>                     default br-int
 *   --vm-id-key / --iface-id-key / --mac-key / --zone-key
 *                                       Interface external_ids keys (default vm-id, iface-id, attached-mac, ct-zone)
 *   --cookie-mask <hex>                 cookie bits that identify a VM's flows (default 0xffffffff00000000)
 *   --conntrack on|off                  move the VM's kernel conntrack entries too (default on)
 *   --ct-mark <mark>[/<mask>]           only entries carrying this mark (within the VM's zones)
 *   --fdb-hold-ms <ms>                  copied fdb entries stay static this long after activation (default 10000)
 *   --port-wait-ms <ms>                 activation waits this long for the VM's ports (default 10000)
 *   --keep-ports                        on release, leave the VM's (non-tunnel) Port rows to libvirt
 *
 * conntrack:
 *   --ct-zone <vm>:<iface>=<zone>       a VM's port and its zone (repeatable)
 *   --ct-mark <vm>=<mark>[/<mask>]      a VM's mark (repeatable)
 */
import { join } from "node:path";
import { BadRequestError } from "../../protocol/errors.js";
import { checkVmId } from "../../protocol/state/document.js";
import { BACKEND_KINDS, isBackendKind, type BackendConfig } from "../../agent/backends/index.js";
import type { MemoryBackendOptions } from "../../agent/backends/memory/backend.js";
import type { OvsBackendOptions } from "../../agent/backends/ovs/index.js";
import type { ConntrackBackendOptions, ConntrackSelector } from "../../agent/backends/conntrack/index.js";
import { int, optStr, type Flags } from "../args.js";

export const backendFlags = {
  backend: { type: "string" },
  netns: { type: "string" },
  "ct-zone-range": { type: "string" },
  ovsdb: { type: "string" },
  "ovs-rundir": { type: "string" },
  "vswitchd-ctl": { type: "string" },
  bridge: { type: "string" },
  "vm-id-key": { type: "string" },
  "iface-id-key": { type: "string" },
  "mac-key": { type: "string" },
  "zone-key": { type: "string" },
  "cookie-mask": { type: "string" },
  conntrack: { type: "string" },
  "ct-mark": { type: "string", multiple: true },
  "ct-zone": { type: "string", multiple: true },
  "fdb-hold-ms": { type: "string" },
  "port-wait-ms": { type: "string" },
  "keep-ports": { type: "boolean" },
} as const;

const OVS_ONLY = ["ovsdb", "ovs-rundir", "vswitchd-ctl", "bridge", "vm-id-key", "iface-id-key", "mac-key", "zone-key", "cookie-mask", "conntrack", "fdb-hold-ms", "port-wait-ms", "keep-ports"];
const CONNTRACK_ONLY = ["ct-zone"];
const DATAPLANE_ONLY = ["netns", "ct-zone-range", "ct-mark"];

function bad(flag: string, msg: string, got: unknown): never {
  throw new BadRequestError(`--${flag} ${msg} (got ${JSON.stringify(got)})`);
}

function list(flags: Flags, name: string): string[] {
  const v = (flags as Record<string, unknown>)[name];
  if (v === undefined) return [];
  return Array.isArray(v) ? v.map(String) : [String(v)];
}

/** A unix socket path from `/path` or `unix:/path`. */
function socketPath(flags: Flags, name: string): string | undefined {
  const v = optStr(flags, name);
  if (v === undefined) return undefined;
  const path = v.startsWith("unix:") ? v.slice("unix:".length) : v;
  if (!path.startsWith("/")) bad(name, "must be an absolute unix socket path (/path or unix:/path); tcp: and ssl: remotes are not supported", v);
  return path;
}

function key(flags: Flags, name: string): string | undefined {
  const v = optStr(flags, name);
  if (v !== undefined && !/^[A-Za-z0-9_.:-]{1,64}$/.test(v)) bad(name, "must be 1-64 characters of letters, digits, '_', '.', ':' or '-'", v);
  return v;
}

/** `<n>` or `0x<hex>` as an unsigned 32-bit value. */
function u32(flag: string, s: string, whole: string): number {
  const n = /^0x[0-9a-f]{1,8}$/i.test(s) ? Number.parseInt(s.slice(2), 16) : /^\d{1,10}$/.test(s) ? Number(s) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) bad(flag, "must hold a 32-bit mark (decimal or 0x hex), optionally /mask", whole);
  return n;
}

function mark(flag: string, s: string, whole: string): { mark: number; markMask?: number } {
  const [m, mask, extra] = s.split("/");
  if (m === undefined || m === "" || extra !== undefined) bad(flag, "must be <mark>[/<mask>]", whole);
  return { mark: u32(flag, m, whole), ...(mask !== undefined ? { markMask: u32(flag, mask, whole) } : {}) };
}

function zoneRange(flags: Flags): [number, number] | undefined {
  const v = optStr(flags, "ct-zone-range");
  if (v === undefined) return undefined;
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(v);
  const lo = Number(m?.[1]);
  const hi = Number(m?.[2]);
  if (!m || lo < 1 || hi > 65535 || lo > hi) bad("ct-zone-range", "must be <lo>-<hi> within 1-65535", v);
  return [lo, hi];
}

function onOff(flags: Flags, name: string): boolean | undefined {
  const v = optStr(flags, name);
  if (v === undefined) return undefined;
  if (["on", "yes", "true", "1"].includes(v)) return true;
  if (["off", "no", "false", "0"].includes(v)) return false;
  return bad(name, "must be on or off", v);
}

function netns(flags: Flags): string | undefined {
  const v = optStr(flags, "netns");
  if (v !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(v)) bad("netns", "must be a network namespace name (letters, digits, '_', '.', '-')", v);
  return v;
}

function optMs(flags: Flags, name: string, max: number): number | undefined {
  return flags[name] === undefined ? undefined : int(flags, name, undefined, 0, max);
}

function ovsOptions(flags: Flags, stateDir: string): OvsBackendOptions {
  const bridge = optStr(flags, "bridge");
  if (bridge !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) bad("bridge", "must be a bridge name of 1-15 letters, digits, '_', '.' or '-'", bridge);
  const rundir = optStr(flags, "ovs-rundir");
  if (rundir !== undefined && !rundir.startsWith("/")) bad("ovs-rundir", "must be an absolute directory", rundir);
  const maskText = optStr(flags, "cookie-mask");
  let cookieMask: bigint | undefined;
  if (maskText !== undefined) {
    if (!/^0x[0-9a-f]{1,16}$/i.test(maskText) || BigInt(maskText) === 0n) bad("cookie-mask", "must be a non-zero 64-bit hex value such as 0xffffffff00000000", maskText);
    cookieMask = BigInt(maskText);
  }
  const marks = list(flags, "ct-mark");
  if (marks.length > 1) bad("ct-mark", "is given once with --backend ovs (<mark>[/<mask>] for every VM)", marks);
  const ctMark = marks[0] !== undefined ? mark("ct-mark", marks[0], marks[0]) : undefined;
  const conntrack = onOff(flags, "conntrack");
  if (conntrack === false && ctMark) throw new BadRequestError("--ct-mark needs --conntrack on");
  const ovsdbSocket = socketPath(flags, "ovsdb");
  const vswitchdCtl = socketPath(flags, "vswitchd-ctl");
  const ns = netns(flags);
  const zr = zoneRange(flags);
  const fdbHoldMs = optMs(flags, "fdb-hold-ms", 3_600_000);
  const portWaitMs = optMs(flags, "port-wait-ms", 600_000);
  const recognition = {
    ...(key(flags, "vm-id-key") ? { vmIdKey: key(flags, "vm-id-key")! } : {}),
    ...(key(flags, "iface-id-key") ? { ifaceIdKey: key(flags, "iface-id-key")! } : {}),
    ...(key(flags, "mac-key") ? { macKey: key(flags, "mac-key")! } : {}),
    ...(key(flags, "zone-key") ? { zoneKey: key(flags, "zone-key")! } : {}),
  };
  return {
    stateDir,
    ...(ovsdbSocket ? { ovsdbSocket } : {}),
    ...(rundir ? { runDir: rundir } : {}),
    ...(vswitchdCtl ? { vswitchdCtl } : {}),
    ...(bridge ? { bridge } : {}),
    ...(Object.keys(recognition).length ? { recognition } : {}),
    ...(cookieMask !== undefined ? { cookieMask } : {}),
    ...(conntrack !== undefined ? { conntrack } : {}),
    ...(ctMark ? { conntrackMark: ctMark } : {}),
    ...(ns ? { netns: ns } : {}),
    ...(zr ? { zoneRange: zr } : {}),
    ...(fdbHoldMs !== undefined ? { fdbHoldMs } : {}),
    ...(portWaitMs !== undefined ? { portWaitMs } : {}),
    ...(flags["keep-ports"] === true ? { removePorts: false } : {}),
  };
}

function conntrackOptions(flags: Flags, stateDir: string): ConntrackBackendOptions {
  // Maps, not object literals: a VM or port named "__proto__" stays an ordinary key.
  const vms = new Map<string, { zones: Map<string, number>; mark?: { mark: number; markMask?: number } }>();
  const sel = (vmId: string, flag: string, whole: string) => {
    try {
      checkVmId(vmId);
    } catch {
      bad(flag, "must name a VM id (a letter or digit, then up to 127 letters, digits, '_', '.' or '-')", whole);
    }
    let s = vms.get(vmId);
    if (!s) vms.set(vmId, (s = { zones: new Map() }));
    return s;
  };
  for (const v of list(flags, "ct-zone")) {
    const m = /^([^:=]+):([A-Za-z0-9_.-]{1,128})=(\d{1,5})$/.exec(v);
    const zone = Number(m?.[3]);
    if (!m || zone < 1 || zone > 65535) bad("ct-zone", "must be <vm>:<iface>=<zone> with a zone from 1 to 65535", v);
    const s = sel(m[1]!, "ct-zone", v);
    const had = s.zones.get(m[2]!);
    if (had !== undefined && had !== zone) bad("ct-zone", `gives port ${m[2]} of VM ${m[1]} two zones`, v);
    s.zones.set(m[2]!, zone);
  }
  for (const v of list(flags, "ct-mark")) {
    const eq = v.indexOf("=");
    if (eq <= 0) bad("ct-mark", "must be <vm>=<mark>[/<mask>] with --backend conntrack", v);
    const s = sel(v.slice(0, eq), "ct-mark", v);
    if (s.mark !== undefined) bad("ct-mark", `gives VM ${v.slice(0, eq)} two marks`, v);
    s.mark = mark("ct-mark", v.slice(eq + 1), v);
  }
  const out: Record<string, ConntrackSelector> = Object.fromEntries(
    [...vms].map(([vmId, s]) => [vmId, { zones: Object.fromEntries(s.zones), ...(s.mark ?? {}) }]),
  );
  const ns = netns(flags);
  const zr = zoneRange(flags);
  return { stateDir, vms: out, ...(ns ? { netns: ns } : {}), ...(zr ? { zoneRange: zr } : {}) };
}

/**
 * The backend configuration `netmig agent` flags ask for. Throws a
 * BadRequestError naming the flag for a bad value, or for a flag of another
 * backend.
 */
export function backendConfigFromFlags(flags: Flags, stateDir: string, memory: MemoryBackendOptions): BackendConfig {
  const kind = optStr(flags, "backend") ?? "memory";
  if (!isBackendKind(kind)) bad("backend", `must be one of ${BACKEND_KINDS.join(", ")}`, kind);
  const given = (names: string[]) => names.filter((n) => flags[n] !== undefined);
  const foreign = kind === "ovs" ? given(CONNTRACK_ONLY) : kind === "conntrack" ? given(OVS_ONLY) : given([...OVS_ONLY, ...CONNTRACK_ONLY, ...DATAPLANE_ONLY]);
  if (foreign.length) throw new BadRequestError(`${foreign.map((f) => `--${f}`).join(", ")} ${foreign.length > 1 ? "do" : "does"} not apply to --backend ${kind}`);
  switch (kind) {
    case "memory":
      return { kind, memory };
    case "ovs":
      return { kind, ovs: ovsOptions(flags, join(stateDir, "ovs")) };
    case "conntrack":
      return { kind, conntrack: conntrackOptions(flags, join(stateDir, "conntrack")) };
  }
}
