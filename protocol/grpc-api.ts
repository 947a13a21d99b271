/**
 * Loads the netmig.v1 gRPC API from proto/netmig/v1/netmig.proto with the
 * same options the generated types in proto/gen were made with.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fileURLToPath } from "node:url";
import type { ProtoGrpcType } from "../proto/gen/netmig.js";

/** Options shared by the loader and by proto-loader-gen-types (scripts/gen-proto.mjs). */
export const PROTO_OPTIONS: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/** The .proto file, found relative to this module in the source tree and in dist/. */
export const PROTO_PATH = fileURLToPath(new URL(import.meta.url.includes("/dist/") ? "../../proto/netmig/v1/netmig.proto" : "../proto/netmig/v1/netmig.proto", import.meta.url));

let cached: ProtoGrpcType | null = null;

export function loadApi(): ProtoGrpcType {
  cached ??= grpc.loadPackageDefinition(protoLoader.loadSync(PROTO_PATH, PROTO_OPTIONS)) as unknown as ProtoGrpcType;
  return cached;
}

/** Largest gRPC message, bytes (state documents can be large). */
export const MAX_GRPC_MESSAGE_BYTES = 256 * 1024 * 1024;
