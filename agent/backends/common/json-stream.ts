/**
 * Splits a byte stream of concatenated JSON texts (OVSDB and OVS unixctl
 * JSON-RPC send objects back to back, without delimiters) into values.
 */
export class JsonStreamSplitter {
  private buf = "";
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** Index in `buf` where scanning resumes. */
  private scanned = 0;

  /** @param maxBytes cap on one message (default 256 MiB). */
  constructor(private readonly maxBytes = 256 * 1024 * 1024) {}

  /** Feeds a chunk; returns the complete values it finished. */
  push(chunk: string): unknown[] {
    const s = this.buf + chunk;
    const values: unknown[] = [];
    let start = 0; // start of the current (unfinished) value in s
    for (let i = this.scanned; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 92 /* \ */) this.escaped = true;
        else if (c === 34 /* " */) this.inString = false;
        continue;
      }
      if (c === 34) this.inString = true;
      else if (c === 123 /* { */ || c === 91 /* [ */) {
        if (this.depth === 0) start = i;
        this.depth++;
      } else if (c === 125 /* } */ || c === 93 /* ] */) {
        this.depth--;
        if (this.depth === 0) {
          values.push(JSON.parse(s.slice(start, i + 1)));
          start = i + 1;
        }
      } else if (this.depth === 0) {
        start = i + 1; // whitespace between values
      }
    }
    this.buf = s.slice(start);
    this.scanned = this.buf.length;
    if (this.buf.length > this.maxBytes) throw new Error(`JSON message exceeds ${this.maxBytes} bytes`);
    return values;
  }
}
