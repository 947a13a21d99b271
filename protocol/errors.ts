/**
 * netmig's error classes: one class per failure, each with a stable `code`
 * that travels over NATS and maps to a gRPC status at the gRPC boundary only.
 */

/** Stable error codes. They appear on the wire and in logs; never rename one. */
export const ErrorCode = {
  BadRequest: "BAD_REQUEST",
  PayloadTooLarge: "PAYLOAD_TOO_LARGE",
  UnsupportedVersion: "UNSUPPORTED_VERSION",
  InvalidState: "INVALID_STATE",
  UnknownVm: "UNKNOWN_VM",
  UnknownHost: "UNKNOWN_HOST",
  UnknownMigration: "UNKNOWN_MIGRATION",
  VmMigrating: "VM_MIGRATING",
  VmExists: "VM_EXISTS",
  StaleEpoch: "STALE_EPOCH",
  DigestMismatch: "DIGEST_MISMATCH",
  FreezeBudgetExceeded: "FREEZE_BUDGET_EXCEEDED",
  NotStaged: "NOT_STAGED",
  WrongPhase: "WRONG_PHASE",
  Timeout: "TIMEOUT",
  Unavailable: "UNAVAILABLE",
  Conflict: "CONFLICT",
  InDoubt: "IN_DOUBT",
  Backend: "BACKEND",
  Internal: "INTERNAL",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Context an operator needs to act on an error. */
export interface ErrorContext {
  vmId?: string;
  migrationId?: string;
  hostId?: string;
}

export class NetmigError extends Error {
  override readonly name: string = "NetmigError";
  readonly code: ErrorCode;
  readonly context: ErrorContext;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.context = context;
  }

  /** The form that travels in a NATS reply. */
  toWire(): WireError {
    return { code: this.code, message: this.message, ...this.context };
  }
}

export interface WireError extends ErrorContext {
  code: ErrorCode;
  message: string;
}

function subclass(code: ErrorCode, name: string) {
  return class extends NetmigError {
    override readonly name = name;
    constructor(message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
      super(code, message, context, options);
    }
  };
}

export const BadRequestError = subclass(ErrorCode.BadRequest, "BadRequestError");
export const PayloadTooLargeError = subclass(ErrorCode.PayloadTooLarge, "PayloadTooLargeError");
export const UnsupportedVersionError = subclass(ErrorCode.UnsupportedVersion, "UnsupportedVersionError");
export const InvalidStateError = subclass(ErrorCode.InvalidState, "InvalidStateError");
export const UnknownVmError = subclass(ErrorCode.UnknownVm, "UnknownVmError");
export const UnknownHostError = subclass(ErrorCode.UnknownHost, "UnknownHostError");
export const UnknownMigrationError = subclass(ErrorCode.UnknownMigration, "UnknownMigrationError");
export const VmMigratingError = subclass(ErrorCode.VmMigrating, "VmMigratingError");
export const VmExistsError = subclass(ErrorCode.VmExists, "VmExistsError");
export const StaleEpochError = subclass(ErrorCode.StaleEpoch, "StaleEpochError");
export const DigestMismatchError = subclass(ErrorCode.DigestMismatch, "DigestMismatchError");
export const FreezeBudgetExceededError = subclass(ErrorCode.FreezeBudgetExceeded, "FreezeBudgetExceededError");
export const NotStagedError = subclass(ErrorCode.NotStaged, "NotStagedError");
export const WrongPhaseError = subclass(ErrorCode.WrongPhase, "WrongPhaseError");
export const TimeoutError = subclass(ErrorCode.Timeout, "TimeoutError");
export const UnavailableError = subclass(ErrorCode.Unavailable, "UnavailableError");
export const ConflictError = subclass(ErrorCode.Conflict, "ConflictError");
export const InDoubtError = subclass(ErrorCode.InDoubt, "InDoubtError");
export const BackendError = subclass(ErrorCode.Backend, "BackendError");

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode));

/** Rebuilds an error received over the wire; unknown codes become INTERNAL. */
export function fromWire(e: WireError): NetmigError {
  const code = KNOWN_CODES.has(e.code) ? e.code : ErrorCode.Internal;
  const context: ErrorContext = {};
  if (typeof e.vmId === "string") context.vmId = e.vmId;
  if (typeof e.migrationId === "string") context.migrationId = e.migrationId;
  if (typeof e.hostId === "string") context.hostId = e.hostId;
  return new NetmigError(code, String(e.message), context);
}

/** Any thrown value as a NetmigError (non-netmig errors become INTERNAL). */
export function asNetmigError(err: unknown, context: ErrorContext = {}): NetmigError {
  if (err instanceof NetmigError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new NetmigError(ErrorCode.Internal, message, context, { cause: err });
}
