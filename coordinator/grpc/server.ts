/**
 * The gRPC server of netmig.v1.MigrationService: thin handlers that turn
 * messages into coordinator calls and errors into gRPC statuses.
 */
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { BadRequestError } from "../../protocol/errors.js";
import { loadApi, MAX_GRPC_MESSAGE_BYTES } from "../../protocol/grpc-api.js";
import type { Logger } from "../../protocol/log.js";
import type { MigrationServiceHandlers } from "../../proto/gen/netmig/v1/MigrationService.js";
import type { VmStateSummary } from "../../proto/gen/netmig/v1/VmStateSummary.js";
import type { Coordinator, VmSummaryOut } from "../service.js";
import { migrationToProto, optionsFromProto } from "./convert.js";
import { toServiceError } from "./status.js";

export interface GrpcTlsOptions {
  /** PEM files. With `caFile`, clients must present a certificate signed by it (mTLS). */
  certFile: string;
  keyFile: string;
  caFile?: string;
}

function unary<Req, Res>(log: Logger, name: string, fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request).then(
      (res) => callback(null, res),
      (err) => {
        const se = toServiceError(err);
        log.info({ rpc: name, code: se.code }, `gRPC ${name} failed: ${se.details}`);
        callback(se as grpc.ServiceError);
      },
    );
  };
}

/**
 * Ends a server stream with an error status the client receives, as the
 * callback of a unary call would (grpc-js: `emit("error")`; `destroy` would
 * drop the stream without a status and leave the client waiting).
 */
function failStream(log: Logger, name: string, call: grpc.ServerWritableStream<unknown, unknown>, err: unknown): void {
  const se = toServiceError(err);
  log.info({ rpc: name, code: se.code }, `gRPC ${name} failed: ${se.details}`);
  call.emit("error", se);
}

function summaryToProto(s: VmSummaryOut): VmStateSummary {
  return {
    vm_id: s.vmId, owner_host: s.owner, epoch: String(s.epoch), digest: s.digest, migration_id: s.migrationId, gen: String(s.gen), status: s.status,
    counts: Object.fromEntries(Object.entries(s.counts).map(([k, v]) => [k, String(v)])),
  };
}

export function handlers(c: Coordinator, log: Logger): MigrationServiceHandlers {
  return {
    StartMigration: unary(log, "StartMigration", async (req) => {
      const r = await c.startMigration({ vmId: req.vm_id, dst: req.dst_host, ...(req.src_host ? { src: req.src_host } : {}), options: optionsFromProto(req.options) });
      return migrationToProto(req.wait ? await c.waitForEnd(r.id) : r);
    }),
    GetMigration: unary(log, "GetMigration", async (req) => migrationToProto(await c.getMigration(req.migration_id))),
    ListMigrations: unary(log, "ListMigrations", async (req) => ({
      migrations: (await c.listMigrations({ ...(req.vm_id ? { vmId: req.vm_id } : {}), activeOnly: req.active_only, ...(req.limit ? { limit: req.limit } : {}) })).map(migrationToProto),
    })),
    WatchMigration: (call) => {
      let unsubscribe: (() => void) | null = null;
      let ended = false;
      const finish = () => {
        if (ended) return;
        ended = true;
        unsubscribe?.();
        call.end();
      };
      call.on("cancelled", () => {
        ended = true;
        unsubscribe?.();
      });
      c.watch(call.request.migration_id, (e) => {
        if (ended) return;
        const m = migrationToProto(e.migration);
        call.write({ migration_id: e.migration.id, phase: e.migration.phase, progress: m.progress, message: e.message, at_ms: String(e.atMs), done: e.done, error: m.error ?? null });
        if (e.done) finish();
      }).then(
        (unsub) => {
          unsubscribe = unsub;
          if (ended) unsub();
        },
        (err) => failStream(log, "WatchMigration", call, err),
      );
    },
    CancelMigration: unary(log, "CancelMigration", async (req) => migrationToProto(await c.cancel(req.migration_id, req.reason))),
    PrepareMigration: unary(log, "PrepareMigration", async (req) =>
      migrationToProto(await c.prepare({ vmId: req.vm_id, dst: req.dst_host, ...(req.src_host ? { src: req.src_host } : {}), options: optionsFromProto(req.options) }))),
    Switchover: unary(log, "Switchover", async (req) => migrationToProto(await c.switchover(phaseTarget(req)))),
    CompleteMigration: unary(log, "CompleteMigration", async (req) => migrationToProto(await c.complete(phaseTarget(req)))),
    AbortMigration: unary(log, "AbortMigration", async (req) => migrationToProto(await c.abort(phaseTarget(req)))),
    EvacuateHost: (call) => {
      const started = performance.now();
      c.evacuate({ src: call.request.src_host, dsts: call.request.dst_hosts, concurrency: call.request.concurrency || 4, options: optionsFromProto(call.request.options) }, (p) => {
        call.write({ total: p.total, done: p.done, failed: p.failed, finished: p.finished, elapsed_ms: performance.now() - started, migration: p.migration ? migrationToProto(p.migration) : null });
      }).then(
        () => call.end(),
        (err) => failStream(log, "EvacuateHost", call, err),
      );
    },
    ListHosts: unary(log, "ListHosts", async () => ({
      hosts: c.listHosts().map((h) => ({ host_id: h.hostId, alive: h.alive, last_seen_ms: String(h.lastSeenMs), backend: h.backend, vms: h.vms.filter((v) => v.status === "active" || v.status === "frozen").map((v) => v.vmId) })),
    })),
    GetVmState: unary(log, "GetVmState", async (req) => summaryToProto(await c.vmState(req.vm_id))),
    ExportVmState: unary(log, "ExportVmState", async (req) => {
      const { hostId, document } = await c.exportVm(req.vm_id);
      return { vm_id: document.vmId, host_id: hostId, digest: document.digest, document: Buffer.from(JSON.stringify(document)) };
    }),
    ImportVmState: unary(log, "ImportVmState", async (req) => {
      if (!req.document || req.document.length === 0) throw new BadRequestError("document is required (a JSON state document)");
      return summaryToProto(await c.importVm(req.host_id, Buffer.from(req.document).toString("utf8")));
    }),
  };
}

function phaseTarget(req: { migration_id: string; vm_id: string; dst_host: string; reason: string }) {
  return { ...(req.migration_id ? { migrationId: req.migration_id } : {}), ...(req.vm_id ? { vmId: req.vm_id } : {}), ...(req.dst_host ? { dst: req.dst_host } : {}), reason: req.reason };
}

export interface GrpcServerHandle {
  /** The bound address, e.g. 127.0.0.1:50051. */
  address: string;
  /** Stops taking calls, waits up to `graceMs` for those in flight, then forces. Idempotent. */
  close(graceMs?: number): Promise<void>;
}

export async function startGrpcServer(c: Coordinator, log: Logger, address: string, tls?: GrpcTlsOptions): Promise<GrpcServerHandle> {
  const api = loadApi();
  const server = new grpc.Server({ "grpc.max_receive_message_length": MAX_GRPC_MESSAGE_BYTES, "grpc.max_send_message_length": MAX_GRPC_MESSAGE_BYTES });
  server.addService(api.netmig.v1.MigrationService.service, handlers(c, log));
  const creds = tls
    ? grpc.ServerCredentials.createSsl(tls.caFile ? readFileSync(tls.caFile) : null, [{ private_key: readFileSync(tls.keyFile), cert_chain: readFileSync(tls.certFile) }], !!tls.caFile)
    : grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(address, creds, (err, p) => (err ? reject(err) : resolve(p))));
  const host = address.slice(0, address.lastIndexOf(":"));
  let closing: Promise<void> | null = null;
  return {
    address: `${host}:${port}`,
    close(graceMs = 5000) {
      closing ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      return closing;
    },
  };
}
