/**
 * ctnetlink messages built in Node: IPCTNL_MSG_CT_NEW (create, exclusive)
 * and IPCTNL_MSG_CT_DELETE for conntrack rows, packed back to back into
 * chunks the sender writes to a netlink socket as they are.
 *
 * Only errors are acknowledged (no NLM_F_ACK), so a chunk of a few hundred
 * creates costs one sendmsg. NAT is recreated from the reply tuple
 * (CTA_NAT_SRC / CTA_NAT_DST), so the kernel sets up the same translation;
 * TCP and SCTP states are set; the timeout and mark are kept.
 */
import { BadRequestError } from "../../../protocol/errors.js";
import type { ConntrackRow } from "../../../protocol/state/tables.js";

/** A create (fails if the entry exists), a replace (delete, then create) or a delete. */
export type CtOp = "A" | "R" | "D";

/** What one netlink message does (a replace becomes "X" (its delete) and "A"). */
export type WireOp = "A" | "D" | "X";

const NFNL_SUBSYS_CTNETLINK = 1;
const MSG_NEW = 0;
const MSG_DELETE = 2;
const F_REQUEST = 1;
const F_EXCL = 0x200;
const F_CREATE = 0x400;
const NESTED = 0x8000;

// enum ctattr_type / ctattr_tuple / ctattr_ip / ctattr_l4proto / ctattr_protoinfo / ctattr_nat
const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_STATUS = 3;
const CTA_PROTOINFO = 4;
const CTA_NAT_SRC = 6;
const CTA_TIMEOUT = 7;
const CTA_MARK = 8;
const CTA_NAT_DST = 13;
const CTA_ZONE = 18;
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;

const TCP_STATES: Record<string, number> = {
  NONE: 0, SYN_SENT: 1, SYN_RECV: 2, ESTABLISHED: 3, FIN_WAIT: 4, CLOSE_WAIT: 5, LAST_ACK: 6, TIME_WAIT: 7, CLOSE: 8, SYN_SENT2: 9,
};
const SCTP_STATES: Record<string, number> = {
  NONE: 0, CLOSED: 1, COOKIE_WAIT: 2, COOKIE_ECHOED: 3, ESTABLISHED: 4, SHUTDOWN_SENT: 5, SHUTDOWN_RECD: 6, SHUTDOWN_ACK_SENT: 7, HEARTBEAT_SENT: 8,
};
const ICMP_REPLY: Record<number, number> = { 8: 0, 13: 14, 15: 16, 17: 18, 10: 9 };
const ICMP6_REPLY: Record<number, number> = { 128: 129, 130: 131 };

/** Largest chunk handed to one sendmsg. */
export const CHUNK_BYTES = 60_000;

/** IPv4 or IPv6 text to bytes. */
export function ipBytes(s: string): Uint8Array {
  if (!s.includes(":")) {
    const p = s.split(".");
    const out = new Uint8Array(4);
    if (p.length !== 4) throw new BadRequestError(`bad IPv4 address ${JSON.stringify(s)}`);
    for (let i = 0; i < 4; i++) {
      const n = Number(p[i]);
      if (!/^\d{1,3}$/.test(p[i]!) || n > 255) throw new BadRequestError(`bad IPv4 address ${JSON.stringify(s)}`);
      out[i] = n;
    }
    return out;
  }
  let text = s;
  const v4 = /:(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = ipBytes(v4[1]!);
    text = `${text.slice(0, v4.index + 1)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) throw new BadRequestError(`bad IPv6 address ${JSON.stringify(s)}`);
  const parse = (h: string) => (h === "" ? [] : h.split(":").map((g) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new BadRequestError(`bad IPv6 address ${JSON.stringify(s)}`);
    return Number.parseInt(g, 16);
  }));
  const head = parse(halves[0]!);
  const rest = halves.length === 2 ? parse(halves[1]!) : [];
  const groups = halves.length === 2 ? [...head, ...new Array<number>(Math.max(0, 8 - head.length - rest.length)).fill(0), ...rest] : head;
  if (groups.length !== 8 || (halves.length === 2 && head.length + rest.length > 7)) throw new BadRequestError(`bad IPv6 address ${JSON.stringify(s)}`);
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 255;
  });
  return out;
}

/** Appends netlink attributes to a growing buffer. */
class Writer {
  buf = Buffer.allocUnsafe(CHUNK_BYTES + 4096);
  len = 0;

  /**
   * Hands out the bytes before `at` (no copy: a view of this buffer) and
   * continues in a fresh buffer that starts with the bytes from `at` on.
   */
  cut(at: number): Buffer {
    const done = this.buf.subarray(0, at);
    const next = Buffer.allocUnsafe(Math.max(CHUNK_BYTES + 4096, 2 * (this.len - at)));
    this.buf.copy(next, 0, at, this.len);
    this.buf = next;
    this.len -= at;
    return done;
  }

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
  /** Reserves `n` zeroed bytes; returns their offset. */
  reserve(n: number): number {
    this.room(n);
    const at = this.len;
    const b = this.buf;
    for (let i = 0; i < n; i++) b[at + i] = 0; // Buffer.fill is slow for a few bytes
    this.len += n;
    return at;
  }
  /** Starts an attribute; returns its offset for `end`. */
  begin(type: number): number {
    this.room(4);
    const at = this.len;
    const b = this.buf;
    b[at + 2] = type & 255;
    b[at + 3] = type >>> 8;
    this.len += 4;
    return at;
  }
  end(at: number): void {
    const n = this.len - at;
    this.buf[at] = n & 255;
    this.buf[at + 1] = n >>> 8;
    const pad = (4 - (n % 4)) % 4;
    if (pad === 0) return;
    this.room(pad);
    const b = this.buf;
    for (let i = 0; i < pad; i++) b[this.len + i] = 0;
    this.len += pad;
  }
  u8(type: number, v: number): void {
    const a = this.begin(type);
    this.room(1);
    this.buf[this.len++] = v & 255;
    this.end(a);
  }
  be16(type: number, v: number): void {
    const a = this.begin(type);
    this.room(2);
    const b = this.buf;
    b[this.len] = (v >>> 8) & 255;
    b[this.len + 1] = v & 255;
    this.len += 2;
    this.end(a);
  }
  be32(type: number, v: number): void {
    const a = this.begin(type);
    this.room(4);
    this.buf.writeUInt32BE(v >>> 0, this.len);
    this.len += 4;
    this.end(a);
  }
  /** An address attribute; IPv4 text is parsed straight into the buffer. */
  ip(type: number, addr: string, fam6: boolean): void {
    if (fam6) return this.bytes(type, ipBytes(addr));
    this.room(8);
    const b = this.buf;
    const at = this.len;
    b[at] = 8;
    b[at + 1] = 0;
    b[at + 2] = type & 255;
    b[at + 3] = type >>> 8;
    let part = 0;
    let n = 0;
    let digits = 0;
    for (let i = 0; i < addr.length; i++) {
      const c = addr.charCodeAt(i);
      if (c === 46 && digits > 0 && part < 3) {
        if (n > 255) break;
        b[at + 4 + part++] = n;
        n = 0;
        digits = 0;
      } else if (c >= 48 && c <= 57 && digits < 3) {
        n = n * 10 + (c - 48);
        digits++;
      } else {
        part = -1;
        break;
      }
    }
    if (part !== 3 || digits === 0 || n > 255) throw new BadRequestError(`bad IPv4 address ${JSON.stringify(addr)}`);
    b[at + 7] = n;
    this.len += 8;
  }
  bytes(type: number, v: Uint8Array): void {
    const a = this.begin(type);
    this.room(v.length);
    this.buf.set(v, this.len);
    this.len += v.length;
    this.end(a);
  }
}

function tuple(w: Writer, type: number, fam6: boolean, proto: number, src: string, dst: string, sport: number, dport: number, itype: number, icode: number, iid: number): void {
  const t = w.begin(type | NESTED);
  const ip = w.begin(CTA_TUPLE_IP | NESTED);
  const a = fam6 ? 3 : 1; // CTA_IP_V6_SRC : CTA_IP_V4_SRC
  w.ip(a, src, fam6);
  w.ip(a + 1, dst, fam6);
  w.end(ip);
  const p = w.begin(CTA_TUPLE_PROTO | NESTED);
  w.u8(1, proto); // CTA_PROTO_NUM
  if (proto === 1) {
    w.be16(4, iid);
    w.u8(5, itype);
    w.u8(6, icode);
  } else if (proto === 58) {
    w.be16(7, iid);
    w.u8(8, itype);
    w.u8(9, icode);
  } else {
    w.be16(2, sport);
    w.be16(3, dport);
  }
  w.end(p);
  w.end(t);
}

function nat(w: Writer, type: number, fam6: boolean, proto: number, addr: string, port: number): void {
  const n = w.begin(type | NESTED);
  const a = fam6 ? 4 : 1; // CTA_NAT_V6_MINIP : CTA_NAT_V4_MINIP
  w.ip(a, addr, fam6);
  w.ip(a + 1, addr, fam6);
  if (proto !== 1 && proto !== 58) {
    const p = w.begin(3 | NESTED); // CTA_NAT_PROTO
    w.be16(1, port);
    w.be16(2, port);
    w.end(p);
  }
  w.end(n);
}

function message(w: Writer, op: "A" | "D", r: ConntrackRow, seq: number): void {
  const fam6 = r.origSrc.includes(":");
  const start = w.reserve(20); // nlmsghdr (16 bytes) + nfgenmsg (4), filled in below
  const src = r.origSrc;
  const dst = r.origDst;
  tuple(w, CTA_TUPLE_ORIG, fam6, r.proto, src, dst, r.origSport, r.origDport, r.icmpType, r.icmpCode, r.icmpId);
  w.be16(CTA_ZONE, r.zone);
  if (op === "A") {
    const rtype = (r.proto === 58 ? ICMP6_REPLY : ICMP_REPLY)[r.icmpType] ?? r.icmpType;
    tuple(w, CTA_TUPLE_REPLY, fam6, r.proto, dst, src, r.origDport, r.origSport, rtype, r.icmpCode, r.icmpId);
    w.be32(CTA_TIMEOUT, r.timeoutSec);
    // Only SEEN_REPLY and ASSURED may be set from userspace; CONFIRMED is implied.
    w.be32(CTA_STATUS, (r.status & 0x6) | 8);
    w.be32(CTA_MARK, r.mark);
    if (r.proto === 6 && r.state) {
      const s = TCP_STATES[r.state];
      if (s === undefined) throw new BadRequestError(`unknown TCP state ${JSON.stringify(r.state)}`);
      const pi = w.begin(CTA_PROTOINFO | NESTED);
      const t = w.begin(1 | NESTED); // CTA_PROTOINFO_TCP
      w.u8(1, s); // CTA_PROTOINFO_TCP_STATE
      w.end(t);
      w.end(pi);
    } else if (r.proto === 132 && r.state) {
      const s = SCTP_STATES[r.state];
      if (s === undefined) throw new BadRequestError(`unknown SCTP state ${JSON.stringify(r.state)}`);
      const pi = w.begin(CTA_PROTOINFO | NESTED);
      const t = w.begin(3 | NESTED); // CTA_PROTOINFO_SCTP
      w.u8(1, s);
      w.end(t);
      w.end(pi);
    }
    const icmp = r.proto === 1 || r.proto === 58;
    const dnat = r.replySrc !== r.origDst || (!icmp && r.replySport !== r.origDport);
    const snat = r.replyDst !== r.origSrc || (!icmp && r.replyDport !== r.origSport);
    if (dnat) nat(w, CTA_NAT_DST, fam6, r.proto, r.replySrc, r.replySport);
    if (snat) nat(w, CTA_NAT_SRC, fam6, r.proto, r.replyDst, r.replyDport);
  }
  const len = w.len - start;
  const b = w.buf;
  b.writeUInt32LE(len, start);
  b.writeUInt16LE((NFNL_SUBSYS_CTNETLINK << 8) | (op === "A" ? MSG_NEW : MSG_DELETE), start + 4);
  b.writeUInt16LE(op === "A" ? F_REQUEST | F_CREATE | F_EXCL : F_REQUEST, start + 6);
  b.writeUInt32LE(seq, start + 8);
  b.writeUInt32LE(0, start + 12);
  b.writeUInt8(fam6 ? 10 : 2, start + 16);
  b.writeUInt8(0, start + 17);
  b.writeUInt16BE(0, start + 18);
}

export interface EncodedOps {
  /** Chunks of whole messages, each at most CHUNK_BYTES (unless one message is bigger). */
  chunks: Buffer[];
  /** What the message with sequence number `firstSeq + i` does. */
  wireOps: WireOp[];
  /** The index in the input of the message with sequence number `firstSeq + i`. */
  inputIndex: number[];
  firstSeq: number;
}

/** Encodes ops (rows with their target zone) as ctnetlink messages, seq from `firstSeq`. */
export function encodeCtOps(ops: readonly (readonly [CtOp, ConntrackRow])[], firstSeq = 1): EncodedOps {
  const w = new Writer();
  const chunks: Buffer[] = [];
  const wireOps: WireOp[] = [];
  const inputIndex: number[] = [];
  let seq = firstSeq;
  const add = (op: "A" | "D", wire: WireOp, r: ConntrackRow, idx: number) => {
    const before = w.len;
    message(w, op, r, seq++);
    wireOps.push(wire);
    inputIndex.push(idx);
    // This message overflowed the chunk: the chunk ends before it.
    if (w.len > CHUNK_BYTES && before > 0) chunks.push(w.cut(before));
  };
  ops.forEach(([op, r], idx) => {
    if (op === "R") {
      add("D", "X", r, idx);
      add("A", "A", r, idx);
    } else add(op, op, r, idx);
  });
  if (w.len > 0) chunks.push(w.buf.subarray(0, w.len));
  return { chunks, wireOps, inputIndex, firstSeq };
}
