/**
 * IP addresses as four 32-bit words, the form a wide `ip` column stores (see
 * ip-column.ts; a narrow one holds an IPv4 address's last word alone): word
 * 0 holds the address's first four bytes, big-endian, and so on. IPv4
 * addresses are held as IPv4-mapped IPv6 (::ffff:a.b.c.d) and come back in
 * dotted-quad form; IPv6 addresses come back in the canonical text
 * form of RFC 5952 (lowercase, the longest run of zero groups compressed).
 * A stored address therefore reads back canonical: "2001:DB8:0::1" as
 * "2001:db8::1", and "::ffff:198.18.0.1" as "198.18.0.1".
 */

/** Parses dotted-quad IPv4 text; returns the 32-bit value or -1. */
function parseV4(s: string, from: number, to: number): number {
  let value = 0;
  let parts = 0;
  let i = from;
  while (i < to) {
    let n = 0;
    let digits = 0;
    while (i < to) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      n = n * 10 + (c - 48);
      digits++;
      i++;
    }
    // No empty parts, no leading zeros (they mean octal to some parsers), no part over 255.
    if (digits === 0 || digits > 3 || n > 255 || (digits > 1 && s.charCodeAt(i - digits) === 48)) return -1;
    value = value * 256 + n;
    parts++;
    if (i === to) break;
    if (s.charCodeAt(i) !== 46 || parts === 4) return -1;
    i++;
    if (i === to) return -1;
  }
  return parts === 4 ? value : -1;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

const groups = new Uint16Array(8);

/** Parses IPv6 text into `groups`; returns false when it is not an IPv6 address. */
function parseV6(s: string): boolean {
  const n = s.length;
  if (n < 2 || n > 45) return false;
  const gap = s.indexOf("::");
  if (gap >= 0 && s.indexOf("::", gap + 1) >= 0) return false;
  const head: number[] = [];
  const tail: number[] = [];
  /** Parses groups in s[from, to) into out; the last may be dotted IPv4 (two groups) when `v4ok`. */
  const part = (from: number, to: number, out: number[], v4ok: boolean): boolean => {
    if (from === to) return true;
    let i = from;
    for (;;) {
      let j = i;
      while (j < to && s.charCodeAt(j) !== 58) j++;
      if (j === i) return false;
      if (j === to && v4ok && s.indexOf(".", i) >= 0 && s.indexOf(".", i) < to) {
        const v4 = parseV4(s, i, to);
        if (v4 < 0) return false;
        out.push(Math.floor(v4 / 65536), v4 % 65536);
        return true;
      }
      if (j - i > 4) return false;
      let g = 0;
      for (let k = i; k < j; k++) {
        const h = hexValue(s.charCodeAt(k));
        if (h < 0) return false;
        g = g * 16 + h;
      }
      out.push(g);
      if (j === to) return true;
      i = j + 1;
      if (i === to) return false; // a trailing single colon
    }
  };
  if (gap >= 0) {
    if (!part(0, gap, head, false) || !part(gap + 2, n, tail, true)) return false;
    if (head.length + tail.length > 7) return false;
  } else {
    if (!part(0, n, head, true) || head.length !== 8) return false;
  }
  groups.fill(0);
  for (let k = 0; k < head.length; k++) groups[k] = head[k]!;
  for (let k = 0; k < tail.length; k++) groups[8 - tail.length + k] = tail[k]!;
  return true;
}

/** Writes the four words of an address's text at out[at..at+3]; returns false when the text is not an IP address. */
export function ipWords(s: string, out: Uint32Array, at: number): boolean {
  if (typeof s !== "string") return false;
  if (s.indexOf(":") < 0) {
    const v4 = parseV4(s, 0, s.length);
    if (v4 < 0) return false;
    out[at] = 0;
    out[at + 1] = 0;
    out[at + 2] = 0xffff;
    out[at + 3] = v4;
    return true;
  }
  if (!parseV6(s)) return false;
  for (let w = 0; w < 4; w++) out[at + w] = groups[2 * w]! * 65536 + groups[2 * w + 1]!;
  return true;
}

/**
 * The canonical text of an address given as text (the text itself when it
 * is not an address). IPv4 text that parses is canonical already, so only
 * text with a colon is rebuilt.
 */
export function canonicalIp(s: string): string {
  if (typeof s !== "string" || s.indexOf(":") < 0) return s;
  return ipWords(s, canon, 0) ? ipText(canon, 0) : s;
}

const canon = new Uint32Array(4);

/** True when the text is an IPv4 or IPv6 address. */
export function isIp(s: unknown): boolean {
  return typeof s === "string" && ipWords(s, scratch, 0);
}

const scratch = new Uint32Array(4);

/** The dotted-quad text of an IPv4 address held as one 32-bit word. */
export function v4Text(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** The canonical text of the address held at words[at..at+3]. */
export function ipText(words: Uint32Array, at: number): string {
  const w0 = words[at]!;
  const w1 = words[at + 1]!;
  const w2 = words[at + 2]!;
  const w3 = words[at + 3]!;
  if (w0 === 0 && w1 === 0 && w2 === 0xffff) return v4Text(w3);
  const g = [w0 >>> 16, w0 & 0xffff, w1 >>> 16, w1 & 0xffff, w2 >>> 16, w2 & 0xffff, w3 >>> 16, w3 & 0xffff];
  // The longest run of at least two zero groups (the first of equals) becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) => g.slice(from, to).map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(0, 8);
  return `${hex(0, best)}::${hex(best + bestLen, 8)}`;
}
