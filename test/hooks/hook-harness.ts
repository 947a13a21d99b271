/**
 * Runs the libvirt hook the way libvirt does: the installed shell wrapper
 * (hooks/libvirt/netmig, with NETMIG_HOME pointing at this checkout) as a
 * child process, argv `<vm-name> <operation> <sub-operation> <extra>` and the
 * domain XML on stdin. Also builds realistic domain XML.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { fileURLToPath } from "node:url";

/** The repository root (dist/test/hooks → ../../..). */
export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const WRAPPER = `${ROOT}hooks/libvirt/netmig`;

export interface HookRun {
  code: number | null;
  stdout: Buffer;
  stderr: string;
  elapsedMs: number;
}

/** Runs the hook; kills it after `killAfterMs` (a hung hook is a failure the caller sees as code null). */
export function runHook(args: string[], stdin: Buffer | string, env: Record<string, string>, killAfterMs = 20_000): Promise<HookRun> {
  const started = performance.now();
  const child = spawn("bash", [WRAPPER, ...args], { env: { ...process.env, NETMIG_HOME: ROOT, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  const out: Buffer[] = [];
  let err = "";
  child.stdout.on("data", (d: Buffer) => out.push(d));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  child.stdin.on("error", () => undefined); // a hook with nothing to do may not read stdin
  child.stdin.end(stdin);
  const timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
  return new Promise((resolve) => {
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: err, elapsedMs: performance.now() - started });
    });
  });
}

/** The hook's log lines (JSON), or [] when there is no log yet. */
export function readHookLog(file: string): { level: string; msg: string; op?: string; vm_id?: string; migration_id?: string; [k: string]: unknown }[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

/**
 * A TCP listener that counts connections and answers nothing: a hook that
 * must not call the coordinator can be pointed at it.
 */
export async function connectionCounter(): Promise<{ address: string; count: () => number; close: () => Promise<void> }> {
  let n = 0;
  const sockets = new Set<Socket>();
  const srv: Server = createServer((s) => {
    n++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  return {
    address: `127.0.0.1:${port}`,
    count: () => n,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      srv.close(() => r());
    }),
  };
}

export interface DomainXmlOptions {
  uuid: string;
  name: string;
  /** interfaceid of the Open vSwitch port (the OVS iface-id). */
  ovsInterfaceId: string;
  /** MAC of the OVS port. */
  ovsMac: string;
}

/**
 * A domain XML as `virsh dumpxml` prints a running KVM guest: two NICs, one
 * on Open vSwitch (virtualport with interfaceid) and one on a Linux bridge;
 * libvirt's single quotes mixed with double quotes, a comment, metadata with
 * look-alike elements, entities, and non-ASCII text in the description.
 */
export function domainXml(o: DomainXmlOptions): string {
  return `<domain type='kvm' id='42' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>${o.name}</name>
  <uuid>${o.uuid}</uuid>
  <title>web tier &amp; cache</title>
  <description>Frontend — migrates with netmig</description>
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:name>${o.name}</nova:name>
      <nova:ports>
        <nova:port uuid="${o.ovsInterfaceId}"><nova:ip type="fixed" address="198.18.0.17" ipVersion="4"/></nova:port>
      </nova:ports>
    </nova:instance>
  </metadata>
  <memory unit='KiB'>4194304</memory>
  <currentMemory unit='KiB'>4194304</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <resource>
    <partition>/machine</partition>
  </resource>
  <os>
    <type arch='x86_64' machine='pc-q35-8.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'>
    <timer name='rtc' tickpolicy='catchup'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none' discard='unmap'/>
      <source protocol='rbd' name='vms/${o.uuid}_disk'>
        <host name='198.18.1.10' port='6789'/>
      </source>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <controller type='pci' index='0' model='pcie-root'>
      <alias name='pcie.0'/>
    </controller>
    <!-- <interface type='bridge'><mac address='de:ad:be:ef:00:00'/></interface> -->
    <interface type='bridge'>
      <mac address='${o.ovsMac}'/>
      <source bridge='br-int'/>
      <virtualport type='openvswitch'>
        <parameters interfaceid='${o.ovsInterfaceId}'/>
      </virtualport>
      <target dev='vnet12'/>
      <model type='virtio'/>
      <driver name='vhost' queues='2'/>
      <mtu size='1450'/>
      <alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
    <interface type="bridge">
      <mac address="52:54:00:3c:9e:07"/>
      <source bridge="br-mgmt"/>
      <target dev="vnet13"/>
      <model type="virtio"/>
      <alias name="net1"/>
      <address type="pci" domain="0x0000" bus="0x02" slot="0x00" function="0x0"/>
    </interface>
    <serial type='pty'>
      <source path='/dev/pts/3'/>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
      <alias name='serial0'/>
    </serial>
    <graphics type='vnc' port='5901' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <memballoon model='virtio'>
      <alias name='balloon0'/>
    </memballoon>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+64055:+108</label>
    <imagelabel>+64055:+108</imagelabel>
  </seclabel>
</domain>
`;
}
