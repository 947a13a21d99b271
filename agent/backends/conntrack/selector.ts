/**
 * Which kernel conntrack entries belong to a VM: the zones of its ports
 * and/or a mark. With both, an entry must be in one of the zones and carry
 * the mark; with zones only, any entry in those zones; with a mark only,
 * any entry with the mark (in any zone).
 */
export interface ConntrackSelector {
  /** Conntrack zone of each of the VM's ports, by ifaceId. Zone 0 (shared) is never selected by zone. */
  zones: Record<string, number>;
  /** Mark value the VM's entries carry (matched under `markMask`). */
  mark?: number;
  /** Mask for `mark`. Default 0xffffffff. */
  markMask?: number;
}

/** The distinct non-zero zones of a selector. */
export function selectorZones(sel: ConntrackSelector): number[] {
  return [...new Set(Object.values(sel.zones).filter((z) => z > 0))].sort((a, b) => a - b);
}

export function isEmptySelector(sel: ConntrackSelector): boolean {
  return selectorZones(sel).length === 0 && sel.mark === undefined;
}

/** `conntrack` filter arguments for one zone (or none) plus the mark. */
export function filterArgs(sel: ConntrackSelector, zone: number | null): string[] {
  const args: string[] = [];
  if (zone !== null) args.push("-w", String(zone));
  if (sel.mark !== undefined) args.push("-m", `${sel.mark >>> 0}/${(sel.markMask ?? 0xffffffff) >>> 0}`);
  return args;
}
