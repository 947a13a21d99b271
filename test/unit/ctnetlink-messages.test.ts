import { test } from "node:test";
import assert from "node:assert/strict";
import { CHUNK_BYTES, encodeCtOps, ipBytes } from "../../agent/backends/conntrack/ctnetlink-messages.js";
import type { ConntrackRow } from "../../protocol/state/tables.js";

const row = (i: number, over: Partial<ConntrackRow> = {}): ConntrackRow => ({
  proto: 6, origSrc: `198.18.${i >> 8 & 255}.${i & 255}`, origDst: "198.19.0.1", origSport: 1000 + i, origDport: 443,
  replySrc: "198.19.0.1", replyDst: `198.18.${i >> 8 & 255}.${i & 255}`, replySport: 443, replyDport: 1000 + i,
  icmpType: 0, icmpCode: 0, icmpId: 0, state: "ESTABLISHED", status: 6, mark: 5, labels: "", timeoutSec: 300, zone: 7, ...over,
});

test("ctnetlink messages - addresses: IPv4, IPv6 with ::, embedded IPv4; bad ones refused", () => {
  assert.deepEqual([...ipBytes("198.18.0.10")], [198, 18, 0, 10]);
  assert.deepEqual([...ipBytes("2001:db8::1")], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual([...ipBytes("::")], new Array(16).fill(0));
  assert.deepEqual([...ipBytes("::ffff:198.18.0.1")], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1]);
  for (const bad of ["198.18.0", "198.18.0.256", "1::2::3", "1:2:3:4:5:6:7:8:9", "g::1"]) assert.throws(() => ipBytes(bad), /bad IPv/);
});

test("ctnetlink messages - one message per op (a replace is delete + create), whole messages per chunk, seq in order", () => {
  const ops = Array.from({ length: 2000 }, (_, i) => [i % 3 === 0 ? "R" : i % 3 === 1 ? "A" : "D", row(i)] as const);
  const enc = encodeCtOps(ops, 100);
  const expected = ops.reduce((n, [op]) => n + (op === "R" ? 2 : 1), 0);
  assert.equal(enc.wireOps.length, expected);
  assert.ok(enc.chunks.length > 1);
  let seq = 100;
  for (const c of enc.chunks) {
    assert.ok(c.length <= CHUNK_BYTES + 512);
    let off = 0;
    while (off < c.length) {
      const len = c.readUInt32LE(off);
      const type = c.readUInt16LE(off + 4);
      assert.equal(c.readUInt32LE(off + 8), seq);
      const wire = enc.wireOps[seq - 100];
      assert.equal(type, wire === "A" ? 0x100 : 0x102, `message ${seq} is a ${wire}`);
      assert.equal(c.readUInt8(off + 16), 2, "AF_INET");
      seq++;
      off += (len + 3) & ~3;
    }
    assert.equal(off, c.length);
  }
  assert.equal(seq - 100, expected);
  assert.equal(enc.inputIndex[0], 0);
  assert.equal(enc.inputIndex[1], 0, "both halves of a replace point at its op");
});

test("ctnetlink messages - NAT only when the reply tuple differs; unknown TCP state refused", () => {
  const plain = encodeCtOps([["A", row(1)]]).chunks[0]!;
  const snat = encodeCtOps([["A", row(1, { replyDst: "198.19.200.1", replyDport: 50000 })]]).chunks[0]!;
  assert.ok(snat.length > plain.length, "SNAT adds CTA_NAT_SRC");
  const v6 = encodeCtOps([["A", row(1, { origSrc: "2001:db8::1", origDst: "2001:db8::2", replySrc: "2001:db8::2", replyDst: "2001:db8::1" })]]).chunks[0]!;
  assert.equal(v6.readUInt8(16), 10, "AF_INET6");
  assert.throws(() => encodeCtOps([["A", row(1, { state: "BOGUS" })]]), /unknown TCP state/);
});
