/**
 * Batch writes to the kernel's conntrack table over ctnetlink.
 *
 * Node has no netlink sockets, and `conntrack -D` on a tuple walks the whole
 * table once per entry (about 0.2 s per delete at 100k entries; measured), so
 * Node builds the ctnetlink messages itself (ctnetlink-messages.ts) and a
 * small long-lived Python process only moves bytes to a netlink socket:
 * one process per backend (started on first use, in the backend's network
 * namespace), chunks of ~60 kB per sendmsg, only errors acknowledged.
 * python3 is on every OVS host (Debian's openvswitch-common depends on it);
 * starting it costs ~0.1-1 s, which is why it stays up between batches.
 *
 * stdin, per batch: u32le chunk count, then per chunk u32le length + bytes.
 * stdout, per batch: one JSON line {"errors": [[seq, errno], ...]} (ENOBUFS
 * as seq 0: errors were lost, the batch counts as failed).
 */
import { spawn, type ChildProcessByStdio } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { BackendError, TimeoutError } from "../../../protocol/errors.js";
import type { ConntrackRow } from "../../../protocol/state/tables.js";
import type { HostExec } from "../common/command.js";
import { encodeCtOps, type CtOp } from "./ctnetlink-messages.js";

export type { CtOp } from "./ctnetlink-messages.js";

export const CTNL_SENDER_PY = String.raw`import errno, json, select, socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
for opt, val in ((socket.SO_RCVBUF, 8 << 20), (socket.SO_SNDBUF, 8 << 20)):
    s.setsockopt(socket.SOL_SOCKET, opt, val)
try:
    s.setsockopt(270, 10, 1)  # SOL_NETLINK, NETLINK_CAP_ACK: errors without the request's payload
except OSError:
    pass
s.bind((0, 0))
s.setblocking(False)
inp = sys.stdin.buffer
out = sys.stdout

def readn(n):
    b = bytearray()
    while len(b) < n:
        c = inp.read(n - len(b))
        if not c:
            return None
        b += c
    return bytes(b)

def drain(errs):
    while True:
        try:
            data = s.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == errno.ENOBUFS:
                errs.append((0, errno.ENOBUFS))
                continue
            raise
        off = 0
        while off + 16 <= len(data):
            ln, typ = struct.unpack_from("=IH", data, off)
            if typ == 2:
                code = -struct.unpack_from("=i", data, off + 16)[0]
                if code:
                    errs.append((struct.unpack_from("=I", data, off + 8)[0], code))
            if ln < 16:
                break
            off += (ln + 3) & ~3

while True:
    h = readn(4)
    if h is None:
        break
    errs = []
    for _ in range(struct.unpack("<I", h)[0]):
        chunk = readn(struct.unpack("<I", readn(4))[0])
        while True:
            try:
                s.send(chunk)
                break
            except BlockingIOError:
                drain(errs)
                select.select([s], [s], [], 0.05)
        drain(errs)
    drain(errs)
    out.write(json.dumps({"errors": errs}) + "\n")
    out.flush()
`;

export interface CtnlResult {
  created: number;
  deleted: number;
  failed: number;
  errors: { index: number; op: string; errno: number; error: string }[];
}

const ERRNO: Record<number, string> = {
  1: "Operation not permitted", 2: "No such file or directory", 12: "Cannot allocate memory", 17: "File exists",
  22: "Invalid argument", 28: "No space left on device", 95: "Operation not supported", 105: "No buffer space available",
};

interface Pending {
  resolve: (line: string) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** One long-lived sender process. Batches are serialised. */
class Sender {
  private child: ChildProcessByStdio<Writable, Readable, Readable> | null = null;
  private out = "";
  private err = "";
  private pending: Pending | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly exec: HostExec, private readonly python: string) {}

  private start(): ChildProcessByStdio<Writable, Readable, Readable> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return this.child;
    const argv = this.exec.wrap([this.python, "-c", CTNL_SENDER_PY]);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...this.exec.env } });
    this.out = "";
    this.err = "";
    child.stdout.on("data", (d: Buffer) => {
      this.out += d.toString();
      const nl = this.out.indexOf("\n");
      if (nl >= 0 && this.pending) {
        const line = this.out.slice(0, nl);
        this.out = this.out.slice(nl + 1);
        const p = this.pending;
        this.pending = null;
        clearTimeout(p.timer);
        p.resolve(line);
      }
    });
    child.stderr.on("data", (d: Buffer) => {
      this.err = (this.err + d.toString()).slice(-4000);
    });
    const fail = (why: string) => {
      if (this.child === child) this.child = null;
      const p = this.pending;
      this.pending = null;
      if (p) {
        clearTimeout(p.timer);
        p.reject(new BackendError(`ctnetlink sender ${why}: ${this.err.trim().slice(0, 500)}`));
      }
    };
    child.on("exit", (code, sig) => fail(`exited (${sig ?? code})`));
    child.on("error", (e) => fail(`could not run ${this.python}: ${e.message}`));
    child.stdin.on("error", () => undefined); // reported through "exit"
    this.child = child;
    this.idle(child);
    return child;
  }

  /** An idle sender must not keep the process alive. */
  private idle(child: ChildProcessByStdio<Writable, Readable, Readable>): void {
    child.unref();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    (child.stderr as unknown as { unref?: () => void }).unref?.();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
  }

  private busy(child: ChildProcessByStdio<Writable, Readable, Readable>): void {
    child.ref();
    (child.stdout as unknown as { ref?: () => void }).ref?.();
  }

  /** Sends chunks; resolves with the errors [seq, errno]. */
  send(chunks: Buffer[], timeoutMs: number): Promise<[number, number][]> {
    const run = async (): Promise<[number, number][]> => {
      const child = this.start();
      // Created here so the stack shows the caller.
      const timeoutError = new TimeoutError(`ctnetlink sender: no answer within ${timeoutMs} ms`);
      this.busy(child);
      try {
        const line = await new Promise<string>((resolve, reject) => {
          const timer = setTimeout(() => {
            this.pending = null;
            child.kill("SIGKILL");
            reject(timeoutError);
          }, timeoutMs);
          this.pending = { resolve, reject, timer };
          // Corked writes go out as one writev: no copy of the batch into one buffer.
          const head = Buffer.alloc(4 + 4 * chunks.length);
          head.writeUInt32LE(chunks.length);
          const stdin = child.stdin;
          stdin.cork();
          stdin.write(head.subarray(0, 4));
          chunks.forEach((c, i) => {
            head.writeUInt32LE(c.length, 4 + 4 * i);
            stdin.write(head.subarray(4 + 4 * i, 8 + 4 * i));
            stdin.write(c);
          });
          stdin.uncork();
        });
        const parsed = JSON.parse(line) as { errors?: unknown };
        if (!Array.isArray(parsed.errors)) throw new BackendError(`ctnetlink sender answered ${line.slice(0, 200)}`);
        return parsed.errors as [number, number][];
      } finally {
        this.idle(child);
      }
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Starts the process now, so the first batch does not wait for python to start. */
  warm(): void {
    this.start();
  }

  close(): void {
    const c = this.child;
    this.child = null;
    if (c && c.exitCode === null && c.signalCode === null) {
      c.stdin.end();
      const t = setTimeout(() => c.kill("SIGKILL"), 1000);
      t.unref();
      c.once("exit", () => clearTimeout(t));
    }
  }
}

type Ops = readonly (readonly [CtOp, ConntrackRow])[];

/** What one pass over the kernel reported: errno per failed input index; `lost` when errors overflowed. */
interface Pass {
  failed: Map<number, number>;
  lost: number;
}

/**
 * Writes conntrack ops through `parallelism` long-lived senders (each with
 * its own netlink socket; the kernel table takes concurrent writers).
 *
 * A replace ("R") is sent as a plain create first: on a destination the entry
 * is almost never there, and one message per entry is half the kernel work
 * of delete + create. Entries that answer "exists" (or every replace of a
 * pass whose errors overflowed the socket) are then replaced for real.
 */
export class CtnlWriter {
  private readonly senders: Sender[];
  private seq = 1;

  constructor(exec: HostExec, opts: { python?: string; parallelism?: number } = {}) {
    const n = Math.max(1, Math.min(8, opts.parallelism ?? 1));
    this.senders = Array.from({ length: n }, () => new Sender(exec, opts.python ?? "python3"));
  }

  async write(ops: Ops, timeoutMs = 120_000): Promise<CtnlResult> {
    const total: CtnlResult = { created: 0, deleted: 0, failed: 0, errors: [] };
    if (ops.length === 0) return total;
    const first = await this.pass(ops.map(([op, r]) => [op === "R" ? "A" : op, r] as const), timeoutMs);
    // Replaces to redo as delete + create: those that found the entry there, or all if errors were lost.
    const redo: number[] = [];
    ops.forEach(([op], i) => {
      if (op === "R" && (first.lost > 0 || first.failed.get(i) === 17)) redo.push(i);
    });
    const failed = new Map(first.failed);
    for (const i of redo) failed.delete(i);
    let lost = first.lost > 0 ? ops.filter(([op]) => op !== "R").length : 0;
    if (redo.length) {
      const second = await this.pass(redo.map((i) => ops[i]!), timeoutMs);
      for (const [j, errno] of second.failed) failed.set(redo[j]!, errno);
      if (second.lost) lost += redo.length;
    }
    if (lost) {
      total.failed += lost;
      total.errors.push({ index: -1, op: "?", errno: 105, error: "netlink receive buffer overflowed; errors were lost" });
    }
    for (const [index, errno] of failed) {
      total.failed++;
      if (total.errors.length < 20) total.errors.push({ index, op: ops[index]![0], errno, error: ERRNO[errno] ?? `errno ${errno}` });
    }
    if (!lost) {
      ops.forEach(([op], i) => {
        if (failed.has(i)) return;
        if (op === "D") total.deleted++;
        else total.created++;
      });
    }
    return total;
  }

  /** One pass: the ops split over the senders; failures by input index. */
  private async pass(ops: Ops, timeoutMs: number): Promise<Pass> {
    const out: Pass = { failed: new Map(), lost: 0 };
    // Below ~5k ops a second process is not worth it.
    const n = Math.max(1, Math.min(this.senders.length, Math.ceil(ops.length / 5000)));
    const per = Math.ceil(ops.length / n);
    const parts: { from: number; ops: Ops }[] = [];
    for (let i = 0; i < ops.length; i += per) parts.push({ from: i, ops: ops.slice(i, i + per) });
    await Promise.all(
      parts.map(async (p, k) => {
        const firstSeq = this.seq;
        this.seq += p.ops.length * 2 + 1;
        if (this.seq > 0x7fffffff) this.seq = 1;
        const enc = encodeCtOps(p.ops, firstSeq);
        const errs = await this.senders[k]!.send(enc.chunks, timeoutMs);
        for (const [seq, errno] of errs) {
          if (seq === 0) {
            out.lost++;
            continue;
          }
          const i = seq - firstSeq;
          const wire = enc.wireOps[i];
          if (wire === undefined) continue;
          // A delete of a missing entry (also the delete half of a replace) is fine.
          if ((wire === "D" || wire === "X") && errno === 2) continue;
          const index = p.from + enc.inputIndex[i]!;
          if (!out.failed.has(index)) out.failed.set(index, errno);
        }
      }),
    );
    return out;
  }

  /** Starts the sender processes ahead of the first write. */
  warm(): void {
    for (const s of this.senders) s.warm();
  }

  close(): void {
    for (const s of this.senders) s.close();
  }
}
