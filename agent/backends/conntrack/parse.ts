/**
 * Parses `conntrack -L -o extended` output into ConntrackRows.
 *
 *   ipv4 2 tcp 6 299 ESTABLISHED src=A dst=B sport=1 dport=2 [UNREPLIED] src=B dst=C sport=2 dport=3 [ASSURED] mark=7 zone=11 use=1
 *
 * The first src/dst/sport/dport (type/code/id for ICMP) belong to the
 * original direction, the second to the reply direction. `status` keeps the
 * bits netmig can both read and write: SEEN_REPLY, ASSURED, and SRC_NAT /
 * DST_NAT derived from the tuples.
 */
import type { ConntrackRow } from "../../../protocol/state/tables.js";

export const IPS_SEEN_REPLY = 0x2;
export const IPS_ASSURED = 0x4;
export const IPS_SRC_NAT = 0x10;
export const IPS_DST_NAT = 0x20;

/** Protocols netmig can recreate on a destination. */
export const SUPPORTED_PROTOS = new Set([1, 6, 17, 58, 132, 136]);

export interface ParseStats {
  /** Lines with a protocol netmig does not move (GRE, DCCP ...). */
  unsupported: number;
  /** Lines that did not parse. */
  malformed: number;
}

/** NAT bits implied by the tuples. */
export function natBits(r: Pick<ConntrackRow, "proto" | "origSrc" | "origDst" | "origSport" | "origDport" | "replySrc" | "replyDst" | "replySport" | "replyDport">): number {
  const icmp = r.proto === 1 || r.proto === 58;
  const dnat = r.replySrc !== r.origDst || (!icmp && r.replySport !== r.origDport);
  const snat = r.replyDst !== r.origSrc || (!icmp && r.replyDport !== r.origSport);
  return (snat ? IPS_SRC_NAT : 0) | (dnat ? IPS_DST_NAT : 0);
}

/** Parses one line; null for lines that are not entries (or not movable, counted in `stats`). */
export function parseExtendedLine(line: string, stats: ParseStats): ConntrackRow | null {
  const tok = line.split(" ").filter((s) => s.length > 0);
  if (tok.length < 6) return null;
  const proto = Number(tok[3]);
  const timeoutSec = Number(tok[4]);
  if (!Number.isInteger(proto) || !Number.isInteger(timeoutSec)) {
    stats.malformed++;
    return null;
  }
  if (!SUPPORTED_PROTOS.has(proto)) {
    stats.unsupported++;
    return null;
  }
  const row: ConntrackRow = {
    proto, origSrc: "", origDst: "", origSport: 0, origDport: 0, replySrc: "", replyDst: "", replySport: 0, replyDport: 0,
    icmpType: 0, icmpCode: 0, icmpId: 0, state: "", status: 0, mark: 0, labels: "", timeoutSec, zone: 0,
  };
  let i = 5;
  if (tok[5] !== undefined && !tok[5].includes("=") && !tok[5].startsWith("[")) {
    row.state = tok[5];
    i = 6;
  }
  let seenSrc = 0;
  let unreplied = false;
  for (; i < tok.length; i++) {
    const t = tok[i]!;
    if (t.startsWith("[")) {
      if (t === "[UNREPLIED]") unreplied = true;
      else if (t === "[ASSURED]") row.status |= IPS_ASSURED;
      continue;
    }
    const eq = t.indexOf("=");
    if (eq < 0) continue;
    const k = t.slice(0, eq);
    const v = t.slice(eq + 1);
    const reply = seenSrc > 1;
    switch (k) {
      case "src":
        seenSrc++;
        if (seenSrc === 1) row.origSrc = v;
        else row.replySrc = v;
        break;
      case "dst":
        if (seenSrc > 1) row.replyDst = v;
        else row.origDst = v;
        break;
      case "sport":
        if (reply) row.replySport = Number(v);
        else row.origSport = Number(v);
        break;
      case "dport":
        if (reply) row.replyDport = Number(v);
        else row.origDport = Number(v);
        break;
      case "type":
        if (!reply) row.icmpType = Number(v);
        break;
      case "code":
        if (!reply) row.icmpCode = Number(v);
        break;
      case "id":
        if (!reply && (proto === 1 || proto === 58)) row.icmpId = Number(v);
        break;
      case "mark":
        row.mark = Number(v) >>> 0;
        break;
      case "zone":
        row.zone = Number(v);
        break;
      case "labels":
        row.labels = v.replace(/^0x/, "").padStart(32, "0");
        if (/^0+$/.test(row.labels)) row.labels = "";
        break;
    }
  }
  if (!row.origSrc || !row.replySrc) {
    stats.malformed++;
    return null;
  }
  if (!unreplied) row.status |= IPS_SEEN_REPLY;
  row.status |= natBits(row);
  return row;
}

export function parseExtended(text: string, stats: ParseStats = { unsupported: 0, malformed: 0 }): ConntrackRow[] {
  const out: ConntrackRow[] = [];
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    if (end > start) {
      const row = parseExtendedLine(text.slice(start, end), stats);
      if (row) out.push(row);
    }
    start = end + 1;
  }
  return out;
}
