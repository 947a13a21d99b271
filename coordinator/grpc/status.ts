/** netmig error codes → gRPC status codes. Used at the gRPC boundary only. */
import { status, type ServiceError, Metadata } from "@grpc/grpc-js";
import { asNetmigError, ErrorCode } from "../../protocol/errors.js";

const MAP: Record<ErrorCode, status> = {
  [ErrorCode.BadRequest]: status.INVALID_ARGUMENT,
  [ErrorCode.InvalidState]: status.INVALID_ARGUMENT,
  [ErrorCode.UnsupportedVersion]: status.INVALID_ARGUMENT,
  [ErrorCode.PayloadTooLarge]: status.RESOURCE_EXHAUSTED,
  [ErrorCode.UnknownVm]: status.NOT_FOUND,
  [ErrorCode.UnknownHost]: status.NOT_FOUND,
  [ErrorCode.UnknownMigration]: status.NOT_FOUND,
  [ErrorCode.VmMigrating]: status.ALREADY_EXISTS,
  [ErrorCode.VmExists]: status.ALREADY_EXISTS,
  [ErrorCode.StaleEpoch]: status.FAILED_PRECONDITION,
  [ErrorCode.WrongPhase]: status.FAILED_PRECONDITION,
  [ErrorCode.NotStaged]: status.FAILED_PRECONDITION,
  [ErrorCode.DigestMismatch]: status.DATA_LOSS,
  [ErrorCode.InDoubt]: status.DATA_LOSS,
  [ErrorCode.FreezeBudgetExceeded]: status.DEADLINE_EXCEEDED,
  [ErrorCode.Timeout]: status.DEADLINE_EXCEEDED,
  [ErrorCode.Unavailable]: status.UNAVAILABLE,
  [ErrorCode.Conflict]: status.ABORTED,
  [ErrorCode.Backend]: status.INTERNAL,
  [ErrorCode.Internal]: status.INTERNAL,
};

/** A gRPC error for any thrown value; the netmig code travels in metadata `netmig-code`. */
export function toServiceError(err: unknown): Partial<ServiceError> {
  const e = asNetmigError(err);
  const metadata = new Metadata();
  metadata.set("netmig-code", e.code);
  return { code: MAP[e.code] ?? status.INTERNAL, details: e.message, metadata };
}
