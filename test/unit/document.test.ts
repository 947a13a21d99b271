import { test } from "node:test";
import assert from "node:assert/strict";
import { checkVmId, parseDocument, toDocument } from "../../protocol/state/document.js";
import { StateDigest } from "../../protocol/state/digest.js";
import { generateVmState } from "../../protocol/state/generate.js";
import { BadRequestError, InvalidStateError, UnsupportedVersionError } from "../../protocol/errors.js";
import { TABLE_NAMES } from "../../protocol/state/tables.js";

const state = generateVmState("vm-doc-1", { conntrack: 1500, fdb: 200, acls: 60, ports: 3, seed: 21 });
const text = JSON.stringify(toDocument(state));

/** A fresh, mutable copy of the document. */
function doc(): Record<string, any> {
  return JSON.parse(text) as Record<string, any>;
}

function rejects(input: unknown, C: new (...a: never[]) => Error, re: RegExp, label = ""): void {
  assert.throws(() => parseDocument(input), (err: unknown) => {
    assert.ok(err instanceof C, `${label}: expected ${C.name}, got ${String(err)}`);
    assert.match((err as Error).message, re, label);
    return true;
  }, label);
}

test("document - a generated state roundtrips through JSON", () => {
  const parsed = parseDocument(text);
  assert.equal(parsed.vmId, "vm-doc-1");
  assert.equal(parsed.schemaVersion, 1);
  assert.deepEqual(parsed.tables, state.tables);
  assert.equal(StateDigest.of(parsed.tables).toString(), toDocument(state).digest);
  // Already-parsed JSON works the same.
  assert.deepEqual(parseDocument(JSON.parse(text)).tables, state.tables);
});

test("document - omitted tables are empty and omitted host-local fields are filled", () => {
  const d = doc();
  delete d.tables.acls;
  for (const p of d.tables.ports) {
    delete p.name;
    delete p.ofport;
    delete p.ctZone;
  }
  for (const c of d.tables.conntrack) delete c.zone;
  const parsed = parseDocument(d);
  assert.deepEqual(parsed.tables.acls, []);
  for (const p of parsed.tables.ports) {
    assert.equal(p.name, "");
    assert.equal(p.ofport, 0);
    assert.equal(p.ctZone, 0);
  }
  for (const c of parsed.tables.conntrack) assert.equal(c.zone, 0);
  // The portable state, and so the digest, is unchanged.
  assert.equal(StateDigest.of(parsed.tables).toString(), StateDigest.of({ ...state.tables, acls: [] }).toString());
  // A document with no tables at all is an empty VM.
  const empty = parseDocument({ schemaVersion: 1, vmId: "vm-empty" });
  for (const t of TABLE_NAMES) assert.deepEqual(empty.tables[t], []);
});

test("document - schemaVersion 2 is refused with UnsupportedVersionError", () => {
  const d = doc();
  d.schemaVersion = 2;
  rejects(d, UnsupportedVersionError, /schemaVersion 2 is not supported/);
  delete d.schemaVersion;
  rejects(d, UnsupportedVersionError, /schemaVersion undefined/);
  d.schemaVersion = "1";
  rejects(d, UnsupportedVersionError, /schemaVersion "1"/);
});

test("document - unknown top-level fields and tables are refused by name", () => {
  const d = doc();
  d.owner = "me";
  rejects(d, InvalidStateError, /unknown field "owner"/);
  const d2 = doc();
  d2.tables.routes = [];
  rejects(d2, InvalidStateError, /unknown table "routes"/);
  const d3 = doc();
  d3.tables.hasOwnProperty = [];
  rejects(d3, InvalidStateError, /unknown table "hasOwnProperty"/);
  rejects('{"schemaVersion":1,"vmId":"v","tables":{"toString":[]}}', InvalidStateError, /unknown table "toString"/);
  const d4 = doc();
  d4.tables.fdb = {};
  rejects(d4, InvalidStateError, /table "fdb" must be an array/);
  rejects('{"schemaVersion":1,"vmId":"v","tables":[]}', InvalidStateError, /tables must be an object/);
  rejects("[]", InvalidStateError, /must be a JSON object/);
  rejects("{nope", InvalidStateError, /not valid JSON/);
});

test("document - a row missing a field is refused naming the table, row and field", () => {
  const d = doc();
  delete d.tables.acls[7].match;
  rejects(d, InvalidStateError, /tables\.acls\[7\]: acls\.match is missing/);
  const d2 = doc();
  delete d2.tables.conntrack[1499].origDport;
  rejects(d2, InvalidStateError, /tables\.conntrack\[1499\]: conntrack\.origDport is missing/);
  const d3 = doc();
  d3.tables.fdb[0] = null;
  rejects(d3, InvalidStateError, /tables\.fdb\[0\]: a fdb row must be an object/);
  const d4 = doc();
  d4.tables.fdb[0] = [1, 2];
  rejects(d4, InvalidStateError, /tables\.fdb\[0\]: a fdb row must be an object/);
});

test("document - wrong types and out-of-range values are refused naming the field", () => {
  const cases: [string, (d: Record<string, any>) => void, RegExp][] = [
    ["string vlanTag", (d) => { d.tables.ports[1].vlanTag = "100"; }, /tables\.ports\[1\]: ports\.vlanTag must be an integer from 0 to 65535/],
    ["vlanTag 70000", (d) => { d.tables.ports[0].vlanTag = 70000; }, /tables\.ports\[0\]: ports\.vlanTag must be an integer from 0 to 65535/],
    ["negative u32", (d) => { d.tables.conntrack[3].timeoutSec = -1; }, /conntrack\.timeoutSec must be an integer from 0 to 4294967295/],
    ["fractional u8", (d) => { d.tables.conntrack[3].proto = 6.5; }, /conntrack\.proto must be an integer from 0 to 255/],
    ["u8 256", (d) => { d.tables.acls[0].table = 256; }, /acls\.table must be an integer from 0 to 255/],
    ["string bool", (d) => { d.tables.fdb[2].static = "true"; }, /tables\.fdb\[2\]: fdb\.static must be a boolean/],
    ["number str", (d) => { d.tables.neighbours[0].state = 1; }, /neighbours\.state must be a string/],
    ["long str", (d) => { d.tables.acls[0].match = "x".repeat(4097); }, /acls\.match must be a string of at most 4096 characters/],
    ["null f64", (d) => { d.tables.counters[0].rxBytes = null; }, /counters\.rxBytes must be a finite number/],
  ];
  for (const [what, mutate, re] of cases) {
    const d = doc();
    mutate(d);
    rejects(d, InvalidStateError, re, what);
  }
});

test("document - a duplicate conntrack key is refused", () => {
  const d = doc();
  const dup = { ...d.tables.conntrack[5], timeoutSec: 1, zone: 999 };
  d.tables.conntrack.push(dup);
  rejects(d, InvalidStateError, /tables\.conntrack\[1500\]: duplicate entry \(key \d+\|/);
  const d2 = doc();
  d2.tables.ports.push({ ...d2.tables.ports[0], name: "other" });
  rejects(d2, InvalidStateError, /tables\.ports\[3\]: duplicate entry \(key vm-doc-1-if0\)/);
});

test("document - an unknown field inside a row is refused by name", () => {
  const d = doc();
  d.tables.qos[1].burst = 5;
  rejects(d, InvalidStateError, /tables\.qos\[1\]: qos has no field "burst"/);
});

test("document - __proto__ keys are refused and Object.prototype stays clean", () => {
  const protoKeys = Object.keys(Object.prototype).length;
  const t = JSON.parse(text) as Record<string, any>;
  const row = JSON.stringify(t.tables.acls[0]).replace(/^\{/, '{"__proto__":{"polluted":true},');
  const withRow = text.replace(JSON.stringify(t.tables.acls[0]), row);
  assert.notEqual(withRow, text);
  // In a row.
  rejects(withRow, InvalidStateError, /tables\.acls\[0\]: acls has no field "__proto__"/);
  // Already parsed: JSON.parse makes __proto__ an own property.
  const parsed = JSON.parse(withRow) as Record<string, any>;
  assert.ok(Object.prototype.hasOwnProperty.call(parsed.tables.acls[0], "__proto__"));
  rejects(parsed, InvalidStateError, /has no field "__proto__"/);
  // As a table name, a top-level field and inside a json field.
  rejects('{"schemaVersion":1,"vmId":"v","tables":{"__proto__":[{"polluted":true}]}}', InvalidStateError, /unknown table "__proto__"/);
  rejects('{"__proto__":{"polluted":true},"schemaVersion":1,"vmId":"v"}', InvalidStateError, /unknown field "__proto__"/);
  const inJson = doc();
  inJson.tables.ports[0].externalIds = JSON.parse('{"__proto__":{"polluted":true}}');
  rejects(inJson, InvalidStateError, /tables\.ports\[0\]: ports\.externalIds must be plain JSON data/);
  const inArray = doc();
  inArray.tables.qos[0].queues = JSON.parse('[{"id":0,"constructor":{"prototype":{"polluted":true}}}]');
  rejects(inArray, InvalidStateError, /qos\.queues must be plain JSON data/);
  assert.equal((({}) as Record<string, unknown>).polluted, undefined);
  assert.equal(Object.keys(Object.prototype).length, protoKeys);
});

test("document - the vmId is checked", () => {
  const d = doc();
  d.vmId = "a b";
  assert.throws(() => parseDocument(d), (e: unknown) => e instanceof BadRequestError && /state document vmId must be 1-128 characters/.test((e as Error).message));
});

test("document - checkVmId accepts ids and rejects bad ones", () => {
  for (const ok of ["a", "vm-1", "VM_2.test", "0f8fad5b-d9cb-469f-a165-70867728950e", "x".repeat(128)]) assert.equal(checkVmId(ok), ok);
  for (const bad of ["", "a b", "a:b", "x".repeat(129), "x".repeat(200), "-lead", ".hidden", "a/b", "a\nb", "é", 5, null, undefined]) {
    assert.throws(() => checkVmId(bad), (e: unknown) => e instanceof BadRequestError && /vmId must be 1-128 characters/.test((e as Error).message), `rejects ${JSON.stringify(bad)}`);
  }
  assert.throws(() => checkVmId("a:b", "request.vmId"), /^BadRequestError: request\.vmId must be .*\(got "a:b"\)/);
});
