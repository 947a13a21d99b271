/**
 * Signal handling, registered in one place: SIGINT/SIGTERM run the
 * registered shutdown steps once (in reverse order), then exit. A second
 * signal exits at once.
 */
const steps: (() => Promise<void>)[] = [];
let installed = false;
let stopping = false;

export function onShutdown(step: () => Promise<void>): void {
  steps.push(step);
  if (installed) return;
  installed = true;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      if (stopping) process.exit(130);
      stopping = true;
      void (async () => {
        for (const s of steps.reverse()) await s().catch(() => undefined);
        process.exit(0);
      })();
    });
  }
}
