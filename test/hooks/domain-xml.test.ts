import { test } from "node:test";
import assert from "node:assert/strict";
import { DomainXmlError, ovsInterfaces, parseDomainXml } from "../../cli/hook/domain-xml.js";
import { domainXml } from "./hook-harness.js";

const UUID = "6f1c2d9e-4b7a-4c3e-9a51-0d2f8e7b1a42";

test("domain xml - a realistic guest: UUID, name, both NICs, the OVS virtualport's interfaceid", () => {
  const d = parseDomainXml(domainXml({ uuid: UUID, name: "web-1", ovsInterfaceId: "port-7", ovsMac: "52:54:00:AB:CD:EF" }));
  assert.equal(d.uuid, UUID);
  assert.equal(d.name, "web-1", "<nova:name> in metadata is not the domain's name");
  assert.deepEqual(d.interfaces, [
    { type: "bridge", mac: "52:54:00:ab:cd:ef", source: "br-int", targetDev: "vnet12", virtualPort: { type: "openvswitch", interfaceId: "port-7" } },
    { type: "bridge", mac: "52:54:00:3c:9e:07", source: "br-mgmt", targetDev: "vnet13", virtualPort: null },
  ], "the commented-out interface is not one");
  assert.deepEqual(ovsInterfaces(d).map((i) => i.virtualPort?.interfaceId), ["port-7"]);
});

test("domain xml - entities, character references, CDATA and quotes inside attribute values", () => {
  const d = parseDomainXml(`<?xml version="1.0"?>
<!DOCTYPE domain>
<domain type="kvm">
  <name>a&amp;b&#x2d;&#99;</name>
  <uuid><![CDATA[0b5d1c9e-0000-4000-8000-000000000001]]></uuid>
  <devices>
    <interface type='network'>
      <mac address="52:54:00:00:00:01"/>
      <source network='ovs-net' portgroup='x>y "z"'/>
      <virtualport type="openvswitch"><parameters profileid='p' interfaceid="i&apos;d"/></virtualport>
    </interface>
  </devices>
</domain>`);
  assert.equal(d.name, "a&b-c");
  assert.equal(d.uuid, "0b5d1c9e-0000-4000-8000-000000000001");
  assert.deepEqual(d.interfaces[0], { type: "network", mac: "52:54:00:00:00:01", source: "ovs-net", targetDev: null, virtualPort: { type: "openvswitch", interfaceId: "i'd" } });
});

test("domain xml - <interface> and <uuid> outside their places are ignored", () => {
  const d = parseDomainXml(`<domain><uuid>u-1</uuid><metadata><x:m xmlns:x="urn:x"><uuid>nope</uuid><interface type="bridge"/></x:m></metadata>
    <devices><hostdev mode="subsystem"><interface/></hostdev></devices></domain>`);
  assert.equal(d.uuid, "u-1");
  assert.deepEqual(d.interfaces, []);
  assert.equal(d.name, null);
});

test("domain xml - malformed or foreign documents are refused with a reason", () => {
  for (const bad of ["", "<domain><name>x</name>", "<domain><name>x</domain>", "<network><uuid>u</uuid></network>", "<domain a=b/>", "<domain><!-- open", "<domain attr='x"]) {
    assert.throws(() => parseDomainXml(bad), DomainXmlError, JSON.stringify(bad));
  }
});

test("domain xml - attribute names cannot pollute prototypes", () => {
  const d = parseDomainXml(`<domain __proto__="x" constructor="y"><uuid>u</uuid><devices><interface type="bridge" __proto__="p"><mac __proto__="q" address="52:54:00:00:00:02"/></interface></devices></domain>`);
  assert.equal(d.interfaces[0]?.mac, "52:54:00:00:00:02");
  assert.equal(({} as Record<string, unknown>).x, undefined);
  assert.equal(Object.getPrototypeOf(d.interfaces[0]), Object.prototype);
});
