/**
 * Options of the `ovs` backend (`netmig agent --backend ovs`).
 */
import { join } from "node:path";
import { BadRequestError } from "../../../protocol/errors.js";
import type { KernelConntrackOptions } from "../conntrack/kernel-table.js";

/** How VMs and their ports are recognised on the integration bridge. */
export interface VmRecognition {
  /** Interface external_ids key holding the VM id (libvirt: the domain UUID). Default "vm-id". */
  vmIdKey?: string;
  /** Interface external_ids key holding the portable port id. Default "iface-id". */
  ifaceIdKey?: string;
  /** Interface external_ids key holding the VM's MAC. Default "attached-mac". */
  macKey?: string;
  /**
   * Interface external_ids key holding the port's conntrack zone (host-local:
   * never copied, set by netmig on the destination). Default "ct-zone".
   */
  zoneKey?: string;
  /**
   * Interface external_ids key that overrides the VM's flow cookie (hex).
   * Without it the cookie is the FNV-1a hash of the VM id in the bits of
   * `cookieMask`. Default "netmig-cookie".
   */
  cookieKey?: string;
}

export interface OvsBackendOptions {
  /** ovsdb-server's unix socket. Default "/var/run/openvswitch/db.sock". */
  ovsdbSocket?: string;
  /** The integration bridge. Default "br-int". */
  bridge?: string;
  /**
   * ovs-ofctl target for the bridge. Default: `unix:<OVS_RUNDIR>/<bridge>.mgmt`
   * where OVS_RUNDIR is `runDir`.
   */
  ofctlTarget?: string;
  /**
   * ovs-vswitchd's unixctl socket (what `ovs-appctl -t` names). Default: the
   * pid file `<runDir>/ovs-vswitchd.pid` resolved to `<runDir>/ovs-vswitchd.<pid>.ctl`.
   */
  vswitchdCtl?: string;
  /** OVS run directory. Default "/var/run/openvswitch". */
  runDir?: string;
  /** Where staging areas and per-VM footprints are persisted. Required. */
  stateDir: string;
  /** Network namespace the OVS tools and conntrack run in (tests; default: the agent's own). */
  netns?: string;
  /** VM recognition keys. */
  recognition?: VmRecognition;
  /** Bits of the OpenFlow cookie that identify a VM. Default 0xffffffff00000000. */
  cookieMask?: bigint;
  /** Move the VM's kernel conntrack entries (selected by its ports' zones). Default true. */
  conntrack?: boolean;
  /**
   * Only move (and release) the VM's entries that carry this mark, under
   * `markMask` (default 0xffffffff), within its ports' zones. Default: every
   * entry in the zones.
   */
  conntrackMark?: { mark: number; markMask?: number };
  /** Options for the conntrack part. */
  conntrackOptions?: KernelConntrackOptions;
  /** Zones netmig may allocate for ports that arrive without one. Default [4096, 65000]. */
  zoneRange?: [number, number];
  /**
   * How long fdb entries copied from the source stay static on the
   * destination after activation before normal learning takes over.
   * Default 10000 ms; 0 releases them right after activation.
   */
  fdbHoldMs?: number;
  /** How long activation waits for the VM's (non-tunnel) ports to be plugged. Default 10000 ms. */
  portWaitMs?: number;
  /** Delete the VM's Port rows on release (tunnel ports always). Default true. */
  removePorts?: boolean;
  /** ovs-ofctl binary. Default "ovs-ofctl". */
  ofctlBin?: string;
  /** Deadline for one OVSDB/unixctl/ovs-ofctl call. Default 30000 ms. */
  timeoutMs?: number;
}

export interface ResolvedOvsOptions {
  ovsdbSocket: string;
  bridge: string;
  ofctlTarget: string;
  vswitchdCtl: string | null;
  runDir: string;
  stateDir: string;
  netns: string | null;
  recognition: Required<VmRecognition>;
  cookieMask: bigint;
  conntrack: boolean;
  conntrackMark: { mark: number; markMask?: number } | null;
  conntrackOptions: KernelConntrackOptions;
  zoneRange: [number, number];
  fdbHoldMs: number;
  portWaitMs: number;
  removePorts: boolean;
  ofctlBin: string;
  timeoutMs: number;
}

export function resolveOvsOptions(o: OvsBackendOptions): ResolvedOvsOptions {
  if (!o || typeof o.stateDir !== "string" || o.stateDir === "") throw new BadRequestError("ovs backend: stateDir is required");
  const runDir = o.runDir ?? "/var/run/openvswitch";
  const bridge = o.bridge ?? "br-int";
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) throw new BadRequestError(`ovs backend: bad bridge name ${JSON.stringify(bridge)}`);
  const zoneRange = o.zoneRange ?? [4096, 65000];
  if (!(zoneRange[0] >= 1 && zoneRange[1] <= 65535 && zoneRange[0] <= zoneRange[1])) {
    throw new BadRequestError("ovs backend: zoneRange must be [min, max] within 1..65535");
  }
  const cm = o.conntrackMark;
  if (cm && !(isU32(cm.mark) && (cm.markMask === undefined || isU32(cm.markMask)))) {
    throw new BadRequestError("ovs backend: conntrackMark needs a 32-bit mark (and mask)");
  }
  const cookieMask = o.cookieMask ?? 0xffffffff00000000n;
  if (cookieMask <= 0n || cookieMask > 0xffffffffffffffffn) throw new BadRequestError("ovs backend: cookieMask must be a non-zero 64-bit value");
  return {
    ovsdbSocket: o.ovsdbSocket ?? join(runDir, "db.sock"),
    bridge,
    ofctlTarget: o.ofctlTarget ?? `unix:${join(runDir, `${bridge}.mgmt`)}`,
    vswitchdCtl: o.vswitchdCtl ?? null,
    runDir,
    stateDir: o.stateDir,
    netns: o.netns ?? null,
    recognition: {
      vmIdKey: o.recognition?.vmIdKey ?? "vm-id",
      ifaceIdKey: o.recognition?.ifaceIdKey ?? "iface-id",
      macKey: o.recognition?.macKey ?? "attached-mac",
      zoneKey: o.recognition?.zoneKey ?? "ct-zone",
      cookieKey: o.recognition?.cookieKey ?? "netmig-cookie",
    },
    cookieMask,
    conntrack: o.conntrack ?? true,
    conntrackMark: o.conntrackMark ?? null,
    conntrackOptions: o.conntrackOptions ?? {},
    zoneRange,
    fdbHoldMs: o.fdbHoldMs ?? 10_000,
    portWaitMs: o.portWaitMs ?? 10_000,
    removePorts: o.removePorts ?? true,
    ofctlBin: o.ofctlBin ?? "ovs-ofctl",
    timeoutMs: o.timeoutMs ?? 30_000,
  };
}

function isU32(n: unknown): boolean {
  return Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 0xffffffff;
}
