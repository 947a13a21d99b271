/**
 * A VM's ACL flows: the OpenFlow flows carrying its cookie.
 *
 * Read: one `ovs-ofctl --names --no-stats dump-flows <br> cookie=V/M`.
 * Rows are portable: the VM's port names become `@<ifaceId>` and its ports'
 * conntrack zones (`ct_zone=N`, `ct(zone=N)`) become `@<ifaceId>` too; other
 * ports stay by name (uplinks are named alike on every host).
 * Write: one `ovs-ofctl --bundle add-flows` file that deletes the VM's
 * cookie and adds its flows, remapped to this host's names and zones, as
 * one atomic OpenFlow bundle.
 */
import { createHash } from "node:crypto";
import { BackendError } from "../../../protocol/errors.js";
import type { AclRow } from "../../../protocol/state/tables.js";
import type { HostExec } from "../common/command.js";
import { hex } from "./cookie.js";

export interface FlowPortMap {
  /** This host's port name per ifaceId. */
  nameOf: Map<string, string>;
  /** This host's conntrack zone per ifaceId. */
  zoneOf: Map<string, number>;
}

const PRIORITY_DEFAULT = 32768;
const NAME_CHARS = /^[A-Za-z0-9_.-]+$/;

export function aclId(table: number, priority: number, match: string): string {
  return createHash("sha1").update(`${table}|${priority}|${match}`).digest("hex").slice(0, 16);
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Builds the host → portable rewriter for a VM's ports. */
export function toPortable(ports: FlowPortMap): (s: string) => string {
  const byName = new Map<string, string>();
  for (const [ifaceId, name] of ports.nameOf) byName.set(name, ifaceId);
  const byZone = new Map<number, string>();
  for (const ifaceId of [...ports.zoneOf.keys()].sort()) {
    const z = ports.zoneOf.get(ifaceId)!;
    if (z > 0 && !byZone.has(z)) byZone.set(z, ifaceId);
  }
  const names = [...byName.keys()].sort((a, b) => b.length - a.length).map(escapeRe);
  const nameRe = names.length ? new RegExp(`(?<=[=:(,])("?)(${names.join("|")})\\1(?=[,):\\s]|$)`, "g") : null;
  return (s) => {
    let out = nameRe ? s.replace(nameRe, (_m, _q, name: string) => `@${byName.get(name)!}`) : s;
    out = out.replace(/\b((?:ct_)?zone=)(\d+)\b/g, (m, k: string, z: string) => {
      const ifaceId = byZone.get(Number(z));
      return ifaceId ? `${k}@${ifaceId}` : m;
    });
    return out;
  };
}

/** Builds the portable → host rewriter; throws on an ifaceId this host does not have. */
export function toHost(ports: FlowPortMap, vmId: string): (s: string) => string {
  return (s) =>
    s.replace(/(\b(?:ct_)?zone=)?@([A-Za-z0-9_.-]+)/g, (_m, zoneKey: string | undefined, ifaceId: string) => {
      if (zoneKey) {
        const z = ports.zoneOf.get(ifaceId);
        if (z === undefined || z === 0) throw new BackendError(`flow uses the conntrack zone of port ${ifaceId}, which has no zone on this host`, { vmId });
        return `${zoneKey}${z}`;
      }
      const name = ports.nameOf.get(ifaceId);
      if (name === undefined) throw new BackendError(`flow refers to port ${ifaceId}, which is not on this host`, { vmId });
      return NAME_CHARS.test(name) ? name : `"${name}"`;
    });
}

/** Parses `dump-flows --no-stats` lines into rows (already portable via `portable`). */
export function parseFlows(text: string, portable: (s: string) => string, vmIfaceIds: Set<string>): AclRow[] {
  const out: AclRow[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line.startsWith("cookie=") && !line.includes(" actions=")) continue;
    const a = line.indexOf(" actions=");
    if (a < 0) continue;
    let head = line.slice(0, a).trim();
    const actions = portable(line.slice(a + " actions=".length).trim());
    head = head.replace(/^cookie=0x[0-9a-f]+,\s*/, "");
    let table = 0;
    const tm = /^table=(\d+),\s*/.exec(head);
    if (tm) {
      table = Number(tm[1]);
      head = head.slice(tm[0].length);
    }
    let priority = PRIORITY_DEFAULT;
    const parts = head.split(/,\s*/).filter((p) => p.length > 0);
    const rest: string[] = [];
    for (const p of parts) {
      const pm = /^priority=(\d+)$/.exec(p);
      if (pm) priority = Number(pm[1]);
      else rest.push(p);
    }
    const match = portable(rest.join(","));
    const inPort = /(?:^|,)in_port=@([A-Za-z0-9_.-]+)/.exec(match);
    out.push({
      id: aclId(table, priority, match),
      direction: inPort && vmIfaceIds.has(inPort[1]!) ? "egress" : "ingress",
      priority,
      table,
      match,
      actions,
    });
  }
  return out;
}

export class FlowTable {
  constructor(
    private readonly exec: HostExec,
    private readonly target: string,
    private readonly ofctlBin: string,
    private readonly cookieMask: bigint,
    private readonly timeoutMs: number,
  ) {}

  /** Dumps a VM's flows (raw text). */
  async dump(cookie: bigint): Promise<string> {
    const res = await this.exec.run(
      [this.ofctlBin, "--names", "--no-stats", "dump-flows", this.target, `cookie=${hex(cookie)}/${hex(this.cookieMask)}`],
      { timeoutMs: this.timeoutMs },
    );
    return res.stdout;
  }

  /** The bundle file that replaces a VM's flows with `rows` (host form via `host`). */
  bundle(cookie: bigint, rows: readonly AclRow[], host: (s: string) => string, deleteFirst: boolean): string {
    const lines: string[] = [];
    if (deleteFirst) lines.push(`delete cookie=${hex(cookie)}/${hex(this.cookieMask)}`);
    for (const r of rows) {
      const match = host(r.match);
      lines.push(`add cookie=${hex(cookie)},table=${r.table},priority=${r.priority}${match ? `,${match}` : ""} actions=${host(r.actions)}`);
    }
    return lines.join("\n") + "\n";
  }

  /** Applies a bundle file atomically (OpenFlow 1.4 bundle). */
  async apply(file: string): Promise<void> {
    await this.exec.run([this.ofctlBin, "--bundle", "--names", "add-flows", this.target, "-"], { input: file, timeoutMs: this.timeoutMs });
  }

  /** Deletes exactly a VM's flows. */
  async deleteCookie(cookie: bigint): Promise<void> {
    await this.exec.run([this.ofctlBin, "del-flows", this.target, `cookie=${hex(cookie)}/${hex(this.cookieMask)}`], { timeoutMs: this.timeoutMs });
  }

  /** Deletes specific flows (strict match) and adds others, in one bundle. */
  async change(cookie: bigint, removed: readonly AclRow[], added: readonly AclRow[], host: (s: string) => string): Promise<void> {
    const lines: string[] = [];
    for (const r of removed) {
      const match = host(r.match);
      lines.push(`delete_strict cookie=${hex(cookie)}/${hex(this.cookieMask)},table=${r.table},priority=${r.priority}${match ? `,${match}` : ""}`);
    }
    const file = lines.join("\n") + (lines.length ? "\n" : "") + this.bundle(cookie, added, host, false);
    if (file.trim()) await this.apply(file);
  }
}
