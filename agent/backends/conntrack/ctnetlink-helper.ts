/**
 * Batch writes to the kernel's conntrack table over ctnetlink.
 *
 * Node has no netlink sockets, and `conntrack -D` on a tuple walks the whole
 * table once per entry (about 0.2 s per delete at 100k entries; measured), so
 * creates and deletes go through this small Python program instead: one
 * process per batch, messages sent back to back in 60 kB writes, only errors
 * acknowledged. python3 is on every OVS host (Debian's openvswitch-common
 * depends on it).
 *
 * Input, one entry per line, tab-separated:
 *   op fam proto zone mark timeout status state src dst sport dport rsrc rdst rsport rdport itype icode iid
 * op: A create (fails if it exists), R replace (delete then create), D delete
 * (a missing entry is not an error).
 * Output: {"created": n, "deleted": n, "failed": n, "errors": [...first 20]}.
 * NAT is recreated from the reply tuple (CTA_NAT_SRC / CTA_NAT_DST), so the
 * kernel sets up the same translation; TCP and SCTP states are set.
 */
import type { ConntrackRow } from "../../../protocol/state/tables.js";
import { BackendError } from "../../../protocol/errors.js";
import type { HostExec } from "../common/command.js";

export const CTNL_PY = String.raw`import os, socket, struct, sys, json, errno
# ctnetlink batch writer: reads tab-separated ops on stdin, writes a JSON summary on stdout.
# op fam proto zone mark timeout status state src dst sport dport rsrc rdst rsport rdport itype icode iid
NFNL_SUBSYS_CTNETLINK = 1
MSG_NEW, MSG_DELETE = 0, 2
F_REQUEST, F_ACK, F_EXCL, F_CREATE = 1, 4, 0x200, 0x400
NESTED = 0x8000
TCP_STATES = {"NONE":0,"SYN_SENT":1,"SYN_RECV":2,"ESTABLISHED":3,"FIN_WAIT":4,"CLOSE_WAIT":5,"LAST_ACK":6,"TIME_WAIT":7,"CLOSE":8,"SYN_SENT2":9}
SCTP_STATES = {"NONE":0,"CLOSED":1,"COOKIE_WAIT":2,"COOKIE_ECHOED":3,"ESTABLISHED":4,"SHUTDOWN_SENT":5,"SHUTDOWN_RECD":6,"SHUTDOWN_ACK_SENT":7,"HEARTBEAT_SENT":8}
ICMP_REPLY = {8:0, 13:14, 15:16, 17:18, 10:9}
ICMP6_REPLY = {128:129, 130:131}

def attr(t, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, t) + payload + b"\0" * ((4 - n % 4) % 4)

def nest(t, *parts):
    return attr(t | NESTED, b"".join(parts))

def ip(fam, s):
    return socket.inet_pton(socket.AF_INET6 if fam == 10 else socket.AF_INET, s)

def tuple_(t, fam, proto, src, dst, sport, dport, itype, icode, iid):
    a = 3 if fam == 10 else 1
    ipn = nest(1, attr(a, ip(fam, src)), attr(a + 1, ip(fam, dst)))
    p = [attr(1, struct.pack("B", proto))]
    if proto == 1:
        p += [attr(4, struct.pack("!H", iid)), attr(5, struct.pack("B", itype)), attr(6, struct.pack("B", icode))]
    elif proto == 58:
        p += [attr(7, struct.pack("!H", iid)), attr(8, struct.pack("B", itype)), attr(9, struct.pack("B", icode))]
    else:
        p += [attr(2, struct.pack("!H", sport)), attr(3, struct.pack("!H", dport))]
    return nest(t, ipn, nest(2, *p))

def nat(t, fam, proto, addr, port):
    a = 4 if fam == 10 else 1
    parts = [attr(a, ip(fam, addr)), attr(a + 1, ip(fam, addr))]
    if proto not in (1, 58):
        parts.append(nest(3, attr(1, struct.pack("!H", port)), attr(2, struct.pack("!H", port))))
    return nest(t, *parts)

def build(f, seq):
    op, fam, proto, zone, mark, timeout, status = f[0], int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5]), int(f[6])
    state, src, dst, sport, dport = f[7], f[8], f[9], int(f[10]), int(f[11])
    rsrc, rdst, rsport, rdport, itype, icode, iid = f[12], f[13], int(f[14]), int(f[15]), int(f[16]), int(f[17]), int(f[18])
    orig = tuple_(1, fam, proto, src, dst, sport, dport, itype, icode, iid)
    z = attr(18, struct.pack("!H", zone))
    if op == "D":
        body = orig + z
        return hdr(MSG_DELETE, F_REQUEST, seq, fam, body)
    rtype = (ICMP6_REPLY if proto == 58 else ICMP_REPLY).get(itype, itype)
    parts = [orig, tuple_(2, fam, proto, dst, src, dport, sport, rtype, icode, iid), z,
             attr(7, struct.pack("!I", timeout)), attr(3, struct.pack("!I", (status & 0x6) | 8)), attr(8, struct.pack("!I", mark))]
    if proto == 6 and state:
        parts.append(nest(4, nest(1, attr(1, struct.pack("B", TCP_STATES[state])))))
    elif proto == 132 and state:
        parts.append(nest(4, nest(3, attr(1, struct.pack("B", SCTP_STATES[state])))))
    if proto in (1, 58):
        dnat = rsrc != dst
        snat = rdst != src
    else:
        dnat = rsrc != dst or rsport != dport
        snat = rdst != src or rdport != sport
    if dnat:
        parts.append(nat(13, fam, proto, rsrc, rsport))
    if snat:
        parts.append(nat(6, fam, proto, rdst, rdport))
    return hdr(MSG_NEW, F_REQUEST | F_CREATE | F_EXCL, seq, fam, b"".join(parts))

def hdr(msg, flags, seq, fam, body):
    n = 16 + 4 + len(body)
    return struct.pack("=IHHII", n, (NFNL_SUBSYS_CTNETLINK << 8) | msg, flags, seq, 0) + struct.pack("=BBH", fam, 0, 0) + body

def main():
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    s.bind((0, 0))
    s.setblocking(False)
    ops = {}          # seq -> (line, op)
    errors = []
    counts = {"A": 0, "D": 0, "R": 0}
    failed = {"A": 0, "D": 0}
    def drain():
        while True:
            try:
                data = s.recv(1 << 20)
            except BlockingIOError:
                return
            off = 0
            while off + 16 <= len(data):
                ln, typ, fl, seq, pid = struct.unpack_from("=IHHII", data, off)
                if typ == 2:  # NLMSG_ERROR
                    code = -struct.unpack_from("=i", data, off + 16)[0]
                    line, op = ops.get(seq, (-1, "?"))
                    if code and not (op in ("X", "D") and code == errno.ENOENT):
                        k = "D" if op in ("D", "X") else "A"
                        failed[k] += 1
                        if len(errors) < 20:
                            errors.append({"line": line, "op": op, "errno": code, "error": os.strerror(code)})
                off += (ln + 3) & ~3
    buf = []
    size = 0
    seq = 0
    for lineno, raw in enumerate(sys.stdin):
        f = raw.rstrip("\n").split("\t")
        if len(f) < 19:
            continue
        counts[f[0]] = counts.get(f[0], 0) + 1
        if f[0] == "R":  # replace: delete (missing is fine), then create
            seq += 1; ops[seq] = (lineno, "X"); f[0] = "D"; m = build(f, seq); buf.append(m); size += len(m)
            f[0] = "A"
        seq += 1
        ops[seq] = (lineno, f[0])
        m = build(f, seq)
        buf.append(m); size += len(m)
        if size > 60000:
            s.send(b"".join(buf)); buf = []; size = 0
            drain()
    if buf:
        s.send(b"".join(buf))
    drain()
    json.dump({"created": counts.get("A", 0) + counts.get("R", 0) - failed["A"], "deleted": counts.get("D", 0) - failed["D"],
               "failed": failed["A"] + failed["D"], "errors": errors}, sys.stdout)

main()
`;

export type CtOp = "A" | "R" | "D";

export interface CtnlResult {
  created: number;
  deleted: number;
  failed: number;
  errors: { line: number; op: string; errno: number; error: string }[];
}

/** One helper input line for a row (its `zone` already the target zone). */
export function ctnlLine(op: CtOp, r: ConntrackRow): string {
  const fam = r.origSrc.includes(":") ? 10 : 2;
  return `${op}\t${fam}\t${r.proto}\t${r.zone}\t${r.mark >>> 0}\t${r.timeoutSec}\t${r.status}\t${r.state}\t${r.origSrc}\t${r.origDst}\t${r.origSport}\t${r.origDport}\t${r.replySrc}\t${r.replyDst}\t${r.replySport}\t${r.replyDport}\t${r.icmpType}\t${r.icmpCode}\t${r.icmpId}`;
}

/**
 * Runs the helper over `lines`, split across `parallelism` processes (each
 * has its own netlink socket; the kernel table takes concurrent writers).
 */
export async function runCtnl(exec: HostExec, lines: string[], opts: { python?: string; parallelism?: number; timeoutMs?: number } = {}): Promise<CtnlResult> {
  const total: CtnlResult = { created: 0, deleted: 0, failed: 0, errors: [] };
  if (lines.length === 0) return total;
  const n = Math.max(1, Math.min(opts.parallelism ?? 1, Math.ceil(lines.length / 5000)));
  const per = Math.ceil(lines.length / n);
  const parts: string[][] = [];
  for (let i = 0; i < lines.length; i += per) parts.push(lines.slice(i, i + per));
  const results = await Promise.all(
    parts.map((p) => exec.run([opts.python ?? "python3", "-c", CTNL_PY], { input: p.join("\n") + "\n", timeoutMs: opts.timeoutMs ?? 120_000 })),
  );
  results.forEach((res, idx) => {
    let r: CtnlResult;
    try {
      r = JSON.parse(res.stdout) as CtnlResult;
    } catch {
      throw new BackendError(`ctnetlink helper printed no summary: ${res.stderr.slice(0, 500)}`);
    }
    total.created += r.created;
    total.deleted += r.deleted;
    total.failed += r.failed;
    for (const e of r.errors) if (total.errors.length < 20) total.errors.push({ ...e, line: e.line + idx * per });
  });
  return total;
}
