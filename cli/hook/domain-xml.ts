/**
 * Reads what the libvirt hook needs from a domain XML — the VM's UUID and
 * name, and its interfaces (type, MAC, source, target device, Open vSwitch
 * virtualport and its interfaceid) — with a small tokenizer instead of an XML
 * library. It only reads: the hook prints the XML it received byte for byte.
 *
 * Elements are selected by their path (/domain/uuid, /domain/devices/interface),
 * so look-alikes inside <metadata> or elsewhere are not picked up. Comments,
 * CDATA, processing instructions, DOCTYPE, both quote styles and the five
 * predefined entities plus numeric character references are handled.
 */

/** Largest domain XML accepted, bytes of UTF-16 text. */
export const MAX_DOMAIN_XML_CHARS = 16 * 1024 * 1024;

export interface DomainVirtualPort {
  /** `type` of <virtualport>, e.g. "openvswitch"; "" when absent. */
  type: string;
  /** `interfaceid` of <virtualport><parameters>; the OVS `iface-id` external id. */
  interfaceId: string | null;
}

export interface DomainInterface {
  /** `type` of <interface>: "bridge", "network", "direct", … */
  type: string;
  /** <mac address>, lower case. */
  mac: string | null;
  /** <source bridge|network|dev>, whichever is set. */
  source: string | null;
  /** <target dev>, e.g. "vnet3". */
  targetDev: string | null;
  virtualPort: DomainVirtualPort | null;
}

export interface DomainInfo {
  uuid: string | null;
  name: string | null;
  interfaces: DomainInterface[];
}

/** The domain XML could not be read. */
export class DomainXmlError extends Error {
  override readonly name = "DomainXmlError";
  readonly code = "BAD_DOMAIN_XML";
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function decodeEntities(s: string): string {
  if (!s.includes("&")) return s;
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);/g, (whole, ref: string) => {
    if (ref.startsWith("#x")) return codePoint(parseInt(ref.slice(2), 16), whole);
    if (ref.startsWith("#")) return codePoint(parseInt(ref.slice(1), 10), whole);
    return Object.prototype.hasOwnProperty.call(ENTITIES, ref) ? ENTITIES[ref]! : whole;
  });
}

function codePoint(n: number, fallback: string): string {
  return Number.isInteger(n) && n > 0 && n <= 0x10ffff ? String.fromCodePoint(n) : fallback;
}

const NAME_END = /[\s/>]/;

/** Parses the attributes of a start tag's inside (after the name). */
function parseAttributes(src: string, where: number): Map<string, string> {
  const attrs = new Map<string, string>();
  const re = /\s*([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/gy;
  let i = 0;
  for (;;) {
    while (i < src.length && /\s/.test(src[i]!)) i++;
    if (i >= src.length) break;
    re.lastIndex = i;
    const m = re.exec(src);
    if (!m) throw new DomainXmlError(`malformed attribute near offset ${where + i}`);
    attrs.set(m[1]!, decodeEntities(m[2] ?? m[3] ?? ""));
    i = re.lastIndex;
  }
  return attrs;
}

/** Index of the `>` that ends a tag starting at `from`, skipping quoted values. */
function tagEnd(xml: string, from: number): number {
  let quote: string | null = null;
  for (let i = from; i < xml.length; i++) {
    const ch = xml[i]!;
    if (quote) {
      if (ch === quote) quote = null;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
    } else if (ch === ">") {
      return i;
    }
  }
  throw new DomainXmlError(`unterminated tag at offset ${from}`);
}

interface Visitor {
  open(path: readonly string[], attrs: Map<string, string>): void;
  text(path: readonly string[], text: string): void;
}

function walk(xml: string, v: Visitor): void {
  const path: string[] = [];
  let i = 0;
  while (i < xml.length) {
    const lt = xml.indexOf("<", i);
    const textEnd = lt === -1 ? xml.length : lt;
    if (textEnd > i && path.length > 0) v.text(path, decodeEntities(xml.slice(i, textEnd)));
    if (lt === -1) break;
    if (xml.startsWith("<!--", lt)) {
      const end = xml.indexOf("-->", lt + 4);
      if (end === -1) throw new DomainXmlError(`unterminated comment at offset ${lt}`);
      i = end + 3;
    } else if (xml.startsWith("<![CDATA[", lt)) {
      const end = xml.indexOf("]]>", lt + 9);
      if (end === -1) throw new DomainXmlError(`unterminated CDATA at offset ${lt}`);
      if (path.length > 0) v.text(path, xml.slice(lt + 9, end));
      i = end + 3;
    } else if (xml.startsWith("<?", lt)) {
      const end = xml.indexOf("?>", lt + 2);
      if (end === -1) throw new DomainXmlError(`unterminated processing instruction at offset ${lt}`);
      i = end + 2;
    } else if (xml.startsWith("<!", lt)) {
      i = tagEnd(xml, lt + 2) + 1;
    } else if (xml.startsWith("</", lt)) {
      const end = xml.indexOf(">", lt + 2);
      if (end === -1) throw new DomainXmlError(`unterminated end tag at offset ${lt}`);
      const name = xml.slice(lt + 2, end).trim();
      if (path[path.length - 1] !== name) throw new DomainXmlError(`end tag </${name}> at offset ${lt} does not match <${path[path.length - 1] ?? ""}>`);
      path.pop();
      i = end + 1;
    } else {
      const end = tagEnd(xml, lt + 1);
      const selfClosing = xml[end - 1] === "/";
      const inner = xml.slice(lt + 1, selfClosing ? end - 1 : end);
      const nameLen = inner.search(NAME_END);
      const name = nameLen === -1 ? inner : inner.slice(0, nameLen);
      if (!name) throw new DomainXmlError(`empty tag name at offset ${lt}`);
      path.push(name);
      v.open(path, parseAttributes(nameLen === -1 ? "" : inner.slice(nameLen), lt + 1 + name.length));
      if (selfClosing) path.pop();
      i = end + 1;
    }
  }
  if (path.length > 0) throw new DomainXmlError(`document ends inside <${path.join("><")}>`);
}

const is = (path: readonly string[], ...want: string[]) => path.length === want.length && want.every((w, k) => path[k] === w);

/** Extracts UUID, name and interfaces from a libvirt domain XML. Throws {@link DomainXmlError}. */
export function parseDomainXml(xml: string): DomainInfo {
  if (xml.length > MAX_DOMAIN_XML_CHARS) throw new DomainXmlError(`domain XML is larger than ${MAX_DOMAIN_XML_CHARS} characters`);
  let uuid = "";
  let name = "";
  let sawDomain = false;
  const interfaces: DomainInterface[] = [];
  walk(xml, {
    open(path, attrs) {
      if (path.length === 1) {
        if (path[0] !== "domain") throw new DomainXmlError(`root element is <${path[0]}>, not <domain>`);
        sawDomain = true;
        return;
      }
      if (is(path, "domain", "devices", "interface")) {
        interfaces.push({ type: attrs.get("type") ?? "", mac: null, source: null, targetDev: null, virtualPort: null });
        return;
      }
      const cur = interfaces[interfaces.length - 1];
      if (!cur || path.length < 4 || path[2] !== "interface" || !is(path.slice(0, 2), "domain", "devices")) return;
      const child = path.slice(3).join("/");
      if (child === "mac") cur.mac = attrs.get("address")?.toLowerCase() ?? null;
      else if (child === "source") cur.source = attrs.get("bridge") ?? attrs.get("network") ?? attrs.get("dev") ?? null;
      else if (child === "target") cur.targetDev = attrs.get("dev") ?? null;
      else if (child === "virtualport") cur.virtualPort = { type: attrs.get("type") ?? "", interfaceId: cur.virtualPort?.interfaceId ?? null };
      else if (child === "virtualport/parameters") {
        const id = attrs.get("interfaceid");
        if (id !== undefined) cur.virtualPort = { type: cur.virtualPort?.type ?? "", interfaceId: id };
      }
    },
    text(path, text) {
      if (is(path, "domain", "uuid")) uuid += text;
      else if (is(path, "domain", "name")) name += text;
    },
  });
  if (!sawDomain) throw new DomainXmlError("no <domain> element");
  return { uuid: uuid.trim() || null, name: name.trim() || null, interfaces };
}

/** Interfaces plugged into Open vSwitch, whose state netmig moves. */
export function ovsInterfaces(d: DomainInfo): DomainInterface[] {
  return d.interfaces.filter((i) => i.virtualPort?.type === "openvswitch");
}
