/**
 * The CLI's gRPC client for the coordinator. Address from --coordinator or
 * NETMIG_COORDINATOR (default 127.0.0.1:50051); TLS from --tls-ca/--tls-cert/
 * --tls-key or NETMIG_TLS_CA/NETMIG_TLS_CERT/NETMIG_TLS_KEY. Every call has a
 * deadline.
 */
import * as grpc from "@grpc/grpc-js";
import { readFileSync } from "node:fs";
import { loadApi, MAX_GRPC_MESSAGE_BYTES } from "../protocol/grpc-api.js";
import type { MigrationServiceClient } from "../proto/gen/netmig/v1/MigrationService.js";

export const DEFAULT_COORDINATOR = "127.0.0.1:50051";

export interface ClientOptions {
  address?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export function createClient(o: ClientOptions = {}): MigrationServiceClient {
  const address = o.address ?? process.env.NETMIG_COORDINATOR ?? DEFAULT_COORDINATOR;
  const ca = o.caFile ?? process.env.NETMIG_TLS_CA;
  const cert = o.certFile ?? process.env.NETMIG_TLS_CERT;
  const key = o.keyFile ?? process.env.NETMIG_TLS_KEY;
  const creds = ca ? grpc.credentials.createSsl(readFileSync(ca), key ? readFileSync(key) : null, cert ? readFileSync(cert) : null) : grpc.credentials.createInsecure();
  const api = loadApi();
  return new api.netmig.v1.MigrationService(address, creds, { "grpc.max_receive_message_length": MAX_GRPC_MESSAGE_BYTES, "grpc.max_send_message_length": MAX_GRPC_MESSAGE_BYTES });
}

type UnaryMethod<Req, Res> = (req: Req, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;

/** Calls a unary method with a deadline (ms). */
export function unaryCall<Req, Res>(client: MigrationServiceClient, method: keyof MigrationServiceClient, req: Req, deadlineMs = 30_000): Promise<Res> {
  const fn = (client[method] as unknown as UnaryMethod<Req, Res>).bind(client);
  return new Promise((resolve, reject) => {
    fn(req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}
