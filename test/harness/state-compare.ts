/**
 * Compares VM states field by field: portable fields must be identical;
 * host-local fields (ports' name/ofport/ctZone, conntrack zone) must be
 * consistently remapped: each conntrack entry's zone is the zone of the
 * port it belonged to on the other side.
 */
import assert from "node:assert/strict";
import { keyOf, TABLE_NAMES, TABLES, type TableName } from "../../protocol/state/tables.js";

type Row = Record<string, unknown>;
type TablesLike = Partial<Record<string, Row[]>>;

function portable(table: TableName, row: Row): Row {
  const out: Row = {};
  for (const f of TABLES[table].fields) if (!f.local) out[f.name] = row[f.name];
  return out;
}

function byKey(table: TableName, rows: Row[]): Map<string, Row> {
  return new Map(rows.map((r) => [keyOf(table, r), r]));
}

export function assertSameState(expected: TablesLike, actual: TablesLike, where: string): void {
  for (const t of TABLE_NAMES) {
    const e = byKey(t, expected[t] ?? []);
    const a = byKey(t, actual[t] ?? []);
    assert.equal(a.size, e.size, `${where}: ${t} has ${a.size} rows, expected ${e.size}`);
    for (const [k, row] of e) {
      const got = a.get(k);
      assert.ok(got, `${where}: ${t} row ${k} is missing`);
      assert.deepEqual(portable(t, got), portable(t, row), `${where}: ${t} row ${k} differs`);
    }
  }
  // Zones: remapped per port, consistently.
  const zoneOf = (tables: TablesLike) => new Map((tables.ports ?? []).map((p) => [p.ctZone as number, p.ifaceId as string]));
  const eZones = zoneOf(expected);
  const aZoneByIface = new Map((actual.ports ?? []).map((p) => [p.ifaceId as string, p.ctZone as number]));
  const aCt = byKey("conntrack", actual.conntrack ?? []);
  for (const row of expected.conntrack ?? []) {
    const iface = eZones.get(row.zone as number);
    const want = iface !== undefined ? aZoneByIface.get(iface) : row.zone;
    assert.equal(aCt.get(keyOf("conntrack", row))?.zone, want, `${where}: conntrack zone not remapped to the port's zone`);
  }
}
