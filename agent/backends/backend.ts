/**
 * The dataplane backend interface: how an agent reads and writes the network
 * state of the VMs on its host. Backends: `memory` (embedded default), `ovs`
 * (Open vSwitch) and `conntrack` (kernel connection tracking).
 *
 * The agent service owns the migration protocol (epochs, freeze, staging ids,
 * transfer); a backend owns the state itself:
 *
 *  - live state of active VMs, read as full snapshots or as deltas since a
 *    generation (dirty tracking: every change bumps the VM's generation);
 *  - staged state on a destination: installed but not steering traffic,
 *    with host-local identifiers (port names, OpenFlow ports, ct zones)
 *    already remapped to this host's, so activation is cheap;
 *  - removal of exactly one VM's state on release, nothing else.
 *
 * Backends keep an incremental StateDigest per VM and per staging area so a
 * digest never has to be computed in the freeze window.
 */
import type { SourceDelta, StateDelta } from "../../protocol/state/model.js";
import type { Change } from "../../protocol/state/table-set.js";
import type { TableName } from "../../protocol/state/tables.js";
import type { TableSizes } from "../../protocol/agent-api.js";

/**
 * A snapshot or delta read from a live VM, with the digest at that point. A
 * full read's upserts may be the live tables, read a slice at a time as the
 * sender encodes them (see `TableSet.liveRead`).
 */
export interface ReadResult extends SourceDelta, ReadDigest {}

/** A read whose upserts are blocks: every delta, and the full reads of backends that read a dataplane into a shadow. */
export interface BlockRead extends StateDelta, ReadDigest {}

interface ReadDigest {
  /**
   * Whole-VM digest of the live state at `gen`. "" for a full read of a VM
   * that may change while it is read (tracked, not frozen): its rows are
   * exact only once the next delta is applied.
   */
  digest: string;
  /** Per-table digests at `gen`. */
  tables: Record<TableName, string>;
}

/** Summary of a VM's live state. */
export interface VmSummary {
  vmId: string;
  gen: number;
  digest: string;
  tables: Record<TableName, string>;
  counts: Record<TableName, number>;
  frozen: boolean;
}

/** Summary of a staging area. */
export interface StagedSummary {
  vmId: string;
  stagingId: string;
  gen: number;
  digest: string;
  tables: Record<TableName, string>;
  counts: Record<TableName, number>;
  /** True once the final delta was applied and the area persisted. */
  sealed: boolean;
}

/**
 * How to remap the source's host-local identifiers: the source's conntrack
 * zone of each port (by ifaceId). The destination maps zone → ifaceId → its
 * own zone for that port.
 */
export interface RemapContext {
  srcPortZones: Record<string, number>;
}

/** Changes to apply: full rows to insert or replace, keys to delete. */
export type { Change };

export interface Backend {
  /** "memory", "ovs", "conntrack", ... */
  readonly kind: string;

  /** Loads persisted state, connects to the dataplane. */
  start(): Promise<void>;
  /** Idempotent; flushes what must survive a restart. */
  close(): Promise<void>;

  /**
   * VMs with live (active or frozen) state on this host. Heartbeats call it,
   * so a backend that must read a dataplane to summarise a VM may answer as
   * last observed; `describe` is the fresh view. With `brief` only who is
   * here matters (vmId, gen, frozen): a backend may leave `digest` "" and
   * `tables` and `counts` empty rather than compute them.
   */
  listVms(brief?: boolean): Promise<VmSummary[]>;
  /**
   * One live VM's summary, read now, or null if it has no state here. With
   * `fresh = false` only whether the VM is here and frozen is needed: a
   * backend may answer as last observed, as briefly as `listVms(true)`.
   */
  describe(vmId: string, fresh?: boolean): Promise<VmSummary | null>;

  /**
   * Reads a live VM: the full state when `sinceGen` is null, else what
   * changed after `sinceGen` (rows upserted, keys deleted). Throws a
   * BadRequestError when `sinceGen` is older than the backend can answer
   * (the caller then asks for a full snapshot). A full read with `track`
   * (default true) starts dirty tracking for a migration if it is not on
   * already (see `endTracking`); exports read with `track = false`, and
   * need an exact read. A tracked full read of a running VM may be inexact
   * (digest ""), as long as the next delta names every row it got wrong.
   */
  read(vmId: string, sinceGen: number | null, track?: boolean): Promise<ReadResult>;
  /** Stops keeping deletions for deltas (migration over). */
  endTracking(vmId: string): Promise<void>;
  /** The source's conntrack zone per ifaceId of a live VM (for RemapContext). */
  portZones(vmId: string): Promise<Record<string, number>>;

  /**
   * Applies a change to a live VM (config writes, imports). Creates the VM
   * when `create` is true and it does not exist. Throws VmMigratingError
   * while the VM is frozen. Returns the new generation.
   */
  write(vmId: string, change: Change, create: boolean): Promise<number>;
  /** Frozen VMs refuse writes (and a backend stops its own churn). */
  setFrozen(vmId: string, frozen: boolean): Promise<void>;

  /**
   * Destination: applies a chunk's upserts and deletes to a staging area,
   * creating it if needed, remapping host-local fields to this host's. It is
   * additive whatever `delta.baseGen` says: the agent empties an area with
   * `discard` before a full snapshot that follows other rounds (a
   * migration's first round finds the area its prepare opened). Staged state must not steer traffic
   * until `activate`.
   */
  stage(vmId: string, stagingId: string, delta: StateDelta, remap: RemapContext): Promise<void>;
  /**
   * Destination, optional: opens an empty staging area with room for a full
   * round of these sizes and touches that memory now, so that receiving the
   * round later allocates and faults in nothing (a stop-and-copy's round is
   * all inside the freeze window). `beforeTouch` is called with the bytes
   * reserved, before any of them is touched. Backends that stage into the
   * dataplane have no such memory and leave it out.
   */
  reserveStaging?(vmId: string, stagingId: string, sizes: TableSizes, beforeTouch?: (bytes: number) => void): Promise<void>;
  /** Marks the staging area complete and persists it (survives a restart). */
  seal(vmId: string, stagingId: string): Promise<void>;
  /** The staging area's summary, or null if there is none. */
  staged(vmId: string, stagingId: string): Promise<StagedSummary | null>;
  /** All staging areas on this host (after a restart: the sealed ones); `brief` as for `listVms`. */
  listStaged(brief?: boolean): Promise<StagedSummary[]>;
  /** Makes staged state live: the VM becomes active here. Idempotent. */
  activate(vmId: string, stagingId: string): Promise<VmSummary>;
  /** Drops a staging area. Idempotent. */
  discard(vmId: string, stagingId: string): Promise<void>;

  /** Deletes a live VM's state (release on the source). Idempotent. */
  remove(vmId: string): Promise<void>;
}
