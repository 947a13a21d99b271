/**
 * Columns of ip fields, in one of two widths:
 *
 * - narrow: a plain Uint32Array of one word a row, each an IPv4 address;
 * - wide: a `WideIpColumn` of four words a row, any address (IPv4 as the
 *   IPv4-mapped form ::ffff:a.b.c.d, see ip.ts).
 *
 * Columns start narrow and are widened on the first IPv6 address written to
 * them, so a conntrack table of IPv4 connections takes 4 bytes per address
 * instead of 16. Both widths hold the same values: reading, hashing and
 * comparing go through the helpers below and give the same results for an
 * address whichever width holds it. The width travels with the array itself
 * (its class), so slices and copies of a column keep it.
 */
import { ipText, ipWords, v4Text } from "./ip.js";

/** An ip column of four words a row (see above). */
export class WideIpColumn extends Uint32Array {}

type Column = Uint32Array;

/** Elements per row in a typed column: four in a wide ip column, one in any other. */
export function lanesOf(col: ArrayBufferView): number {
  return col instanceof WideIpColumn ? 4 : 1;
}

/** A wide copy of a narrow column (same number of rows: its length). */
export function widen(col: Column): WideIpColumn {
  if (col instanceof WideIpColumn) return col;
  const out = new WideIpColumn(4 * col.length);
  for (let i = 0; i < col.length; i++) {
    out[4 * i + 2] = 0xffff;
    out[4 * i + 3] = col[i]!;
  }
  return out;
}

function isMapped(col: Column, at: number): boolean {
  return col[at] === 0 && col[at + 1] === 0 && col[at + 2] === 0xffff;
}

const q = new Uint32Array(4);

/**
 * Writes an address given as text into row i of column `cols[k]`, widening
 * that column in place in `cols` when it is narrow and the address is IPv6.
 * Returns false when the text is not an address.
 */
export function ipPut(cols: { [i: number]: unknown }[], k: number, i: number, text: string): boolean {
  const c = cols[k] as Column;
  if (c instanceof WideIpColumn) return ipWords(text, c, 4 * i);
  if (!ipWords(text, q, 0)) return false;
  if (isMapped(q, 0)) {
    c[i] = q[3]!;
    return true;
  }
  const w = widen(c);
  w.set(q, 4 * i);
  cols[k] = w;
  return true;
}

/** Copies row i of column `src` over row j of `dst[k]`, widening `dst[k]` in place when needed. */
export function ipCopy(dst: { [i: number]: unknown }[], k: number, j: number, src: Column, i: number): void {
  const d = dst[k] as Column;
  if (src instanceof WideIpColumn) {
    if (!(d instanceof WideIpColumn)) {
      if (isMapped(src, 4 * i)) {
        d[j] = src[4 * i + 3]!;
        return;
      }
      dst[k] = widen(d);
    }
    const w = dst[k] as Column;
    w[4 * j] = src[4 * i]!;
    w[4 * j + 1] = src[4 * i + 1]!;
    w[4 * j + 2] = src[4 * i + 2]!;
    w[4 * j + 3] = src[4 * i + 3]!;
  } else if (d instanceof WideIpColumn) {
    d[4 * j] = 0;
    d[4 * j + 1] = 0;
    d[4 * j + 2] = 0xffff;
    d[4 * j + 3] = src[i]!;
  } else {
    d[j] = src[i]!;
  }
}

/** The canonical text of the address in row i. */
export function ipAt(col: Column, i: number): string {
  return col instanceof WideIpColumn ? ipText(col, 4 * i) : v4Text(col[i]!);
}

/** The four words of the address in row i (IPv4 as mapped), into out[0..3]. */
export function ipLoad(col: Column, i: number, out: Uint32Array): void {
  if (col instanceof WideIpColumn) {
    out[0] = col[4 * i]!;
    out[1] = col[4 * i + 1]!;
    out[2] = col[4 * i + 2]!;
    out[3] = col[4 * i + 3]!;
  } else {
    out[0] = 0;
    out[1] = 0;
    out[2] = 0xffff;
    out[3] = col[i]!;
  }
}

/** The address in row i as its IPv4 word, or -1 when it is IPv6. */
export function ipV4At(col: Column, i: number): number {
  if (!(col instanceof WideIpColumn)) return col[i]!;
  return isMapped(col, 4 * i) ? col[4 * i + 3]! : -1;
}

/** True when row i of column a and row j of column b (maybe the same column) hold the same address, whatever their widths. */
export function ipSame(a: Column, i: number, b: Column, j: number): boolean {
  const wideA = a instanceof WideIpColumn;
  const wideB = b instanceof WideIpColumn;
  if (!wideA && !wideB) return a[i] === b[j];
  if (wideA && wideB) return a[4 * i] === b[4 * j] && a[4 * i + 1] === b[4 * j + 1] && a[4 * i + 2] === b[4 * j + 2] && a[4 * i + 3] === b[4 * j + 3];
  // A narrow row is IPv4: the wide one must be an IPv4 address with the same last word.
  const [w, wi, n, ni] = wideA ? [a, i, b, j] : [b, j, a, i];
  return isMapped(w, 4 * wi) && w[4 * wi + 3] === n[ni];
}

/** True when every one of the first n rows of a wide column is IPv4. */
export function allV4(col: Column, n: number): boolean {
  if (!(col instanceof WideIpColumn)) return true;
  for (let i = 0; i < n; i++) if (!isMapped(col, 4 * i)) return false;
  return true;
}

/** The first n rows of an ip column as a narrow column (every row must be IPv4: see `allV4`). */
export function narrow(col: Column, n: number): Uint32Array {
  if (!(col instanceof WideIpColumn)) return col.length === n ? col : col.subarray(0, n);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = col[4 * i + 3]!;
  return out;
}

/**
 * Copies the first n rows of ip column `src` into `dst` from row `at`;
 * returns the column to use from now on: `dst`, or a wide copy of it when
 * `src` holds an IPv6 address and `dst` is narrow.
 */
export function ipCopyRows(dst: Column, at: number, src: Column, n: number): Column {
  const sw = src instanceof WideIpColumn;
  const dw = dst instanceof WideIpColumn;
  if (sw === dw) {
    const l = sw ? 4 : 1;
    dst.set(src.length === n * l ? src : src.subarray(0, n * l), at * l);
    return dst;
  }
  if (dw) {
    for (let i = 0; i < n; i++) {
      dst[4 * (at + i) + 2] = 0xffff;
      dst[4 * (at + i) + 3] = src[i]!;
      dst[4 * (at + i)] = 0;
      dst[4 * (at + i) + 1] = 0;
    }
    return dst;
  }
  if (allV4(src, n)) {
    for (let i = 0; i < n; i++) dst[at + i] = src[4 * i + 3]!;
    return dst;
  }
  return ipCopyRows(widen(dst), at, src, n);
}
