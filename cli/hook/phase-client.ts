/**
 * The phase calls the libvirt hook and the lifecycle watcher make to the
 * coordinator (PrepareMigration, Switchover, CompleteMigration,
 * AbortMigration, and ListMigrations to find the VM's migration), each with a
 * deadline that fits in one overall budget. A coordinator that cannot be
 * reached is retried with jittered backoff until the budget runs out; every
 * phase call is idempotent, so a retry is safe.
 */
import { status, type ServiceError } from "@grpc/grpc-js";
import { createClient, unaryCall } from "../client.js";
import type { MigrationServiceClient } from "../../proto/gen/netmig/v1/MigrationService.js";
import type { Migration__Output } from "../../proto/gen/netmig/v1/Migration.js";
import type { ListMigrationsResponse__Output } from "../../proto/gen/netmig/v1/ListMigrationsResponse.js";
import type { HookConfig } from "./config.js";

/** Why a phase call failed, as far as the hook's policy is concerned. */
export const CallFailure = {
  /** No answer: the coordinator is down, unreachable, or TLS failed. */
  Unreachable: "UNREACHABLE",
  /** The deadline passed before an answer (the coordinator may still act on the request). */
  Timeout: "TIMEOUT",
  /** The coordinator answered with an error (`netmigCode` says which). */
  Refused: "REFUSED",
  /** The call could not be made at all: TLS files unreadable, bad address. */
  Local: "LOCAL",
} as const;
export type CallFailure = (typeof CallFailure)[keyof typeof CallFailure];

export class PhaseCallError extends Error {
  override readonly name = "PhaseCallError";
  constructor(
    readonly code: CallFailure,
    readonly rpc: string,
    message: string,
    /** The netmig error code the coordinator sent (metadata `netmig-code`), if any. */
    readonly netmigCode: string | null,
    readonly grpcCode: number | null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Turns a gRPC error into a {@link PhaseCallError}. */
export function classify(rpc: string, err: unknown, stack?: Error): PhaseCallError {
  const se = err as Partial<ServiceError>;
  const netmigCode = se.metadata?.get("netmig-code")[0]?.toString() ?? null;
  const grpcCode = typeof se.code === "number" ? se.code : null;
  const details = (se.details || (err as Error)?.message || String(err)).replace(/\.?\s*Resolution note:\s*$/, "");
  let code: CallFailure = CallFailure.Refused;
  if (!netmigCode && grpcCode === status.UNAVAILABLE) code = CallFailure.Unreachable;
  else if (!netmigCode && grpcCode === status.DEADLINE_EXCEEDED) code = CallFailure.Timeout;
  else if (grpcCode === null) code = CallFailure.Local;
  const e = new PhaseCallError(code, rpc, `${rpc}: ${details}`, netmigCode, grpcCode, { cause: err });
  if (stack?.stack) e.stack = `${e.name}: ${e.message}\n${stack.stack.split("\n").slice(1).join("\n")}`;
  return e;
}

export interface PhaseClientOptions {
  config: HookConfig;
  /** Absolute time (Date.now() ms) by which every call must have ended. */
  deadlineAt: number;
  /** Called before each retry, for the log. */
  onRetry?: (rpc: string, attempt: number, err: PhaseCallError) => void;
}

export class PhaseClient {
  private client: MigrationServiceClient | null = null;
  private closed = false;

  constructor(private readonly o: PhaseClientOptions) {}

  private get grpc(): MigrationServiceClient {
    if (this.closed) throw new Error("PhaseClient is closed");
    const c = this.o.config;
    this.client ??= createClient({
      address: c.coordinator, ...(c.tlsCa ? { caFile: c.tlsCa } : {}), ...(c.tlsCert ? { certFile: c.tlsCert } : {}), ...(c.tlsKey ? { keyFile: c.tlsKey } : {}),
    });
    return this.client;
  }

  /** Milliseconds left in the budget. */
  remainingMs(): number {
    return this.o.deadlineAt - Date.now();
  }

  private async call<Req, Res>(rpc: keyof MigrationServiceClient & string, req: Req): Promise<Res> {
    const caller = new Error(); // the stack of whoever made the call, for timeouts
    let delayMs = 50;
    for (let attempt = 1; ; attempt++) {
      const left = this.remainingMs();
      if (left <= 0) throw classify(rpc, { code: status.DEADLINE_EXCEEDED, details: "no time left in the hook's budget" }, caller);
      try {
        return await unaryCall<Req, Res>(this.grpc, rpc, req, left);
      } catch (err) {
        const e = err instanceof PhaseCallError ? err : classify(rpc, err, caller);
        // Only a coordinator that did not answer is worth another try.
        const wait = delayMs / 2 + Math.random() * delayMs;
        if (e.code !== CallFailure.Unreachable || this.remainingMs() <= wait + 20) throw e;
        this.o.onRetry?.(rpc, attempt, e);
        await new Promise((r) => setTimeout(r, wait));
        delayMs = Math.min(delayMs * 2, 1000);
      }
    }
  }

  /** @param timeoutMs the migration's overall deadline (its options.timeout_ms), ms. */
  prepare(vmId: string, dstHost: string, timeoutMs: number): Promise<Migration__Output> {
    return this.call("PrepareMigration", { vm_id: vmId, dst_host: dstHost, options: { timeout_ms: timeoutMs } });
  }

  /** The VM's unfinished migration, if any. */
  async activeMigration(vmId: string): Promise<Migration__Output | null> {
    const res = await this.call<object, ListMigrationsResponse__Output>("ListMigrations", { vm_id: vmId, active_only: true, limit: 1 });
    return res.migrations[0] ?? null;
  }

  switchover(migrationId: string, reason: string): Promise<Migration__Output> {
    return this.call("Switchover", { migration_id: migrationId, reason });
  }

  complete(migrationId: string, reason: string): Promise<Migration__Output> {
    return this.call("CompleteMigration", { migration_id: migrationId, reason });
  }

  abort(target: { migrationId: string } | { vmId: string; dstHost: string }, reason: string): Promise<Migration__Output> {
    const req = "migrationId" in target ? { migration_id: target.migrationId } : { vm_id: target.vmId, dst_host: target.dstHost };
    return this.call("AbortMigration", { ...req, reason });
  }

  /** Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client?.close();
  }
}
