/**
 * The per-VM OpenFlow cookie: the VM's flows carry it in the bits of the
 * cookie mask, so `dump-flows cookie=V/M` and `del-flows cookie=V/M` touch
 * exactly that VM's flows. The value is the `cookieKey` external_id of one of
 * the VM's interfaces if present (hex), else the FNV-1a hash of the VM id
 * spread over the mask's bits.
 */
export function hashCookie(vmId: string, mask: bigint): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(vmId, "utf8")) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  let v = h & mask;
  if (v === 0n) v = mask & -mask; // never cookie 0 (the bridge's own flows)
  return v;
}

export function vmCookie(vmId: string, mask: bigint, override: string | undefined): bigint {
  if (override && /^(0x)?[0-9a-fA-F]{1,16}$/.test(override)) {
    const v = BigInt(override.startsWith("0x") ? override : `0x${override}`) & mask;
    if (v !== 0n) return v;
  }
  return hashCookie(vmId, mask);
}

export const hex = (v: bigint): string => `0x${v.toString(16)}`;
